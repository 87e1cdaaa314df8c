#pragma once
// A growable read buffer: bytes are appended at the back (after a socket read)
// and consumed from the front (as requests or replies are parsed). Memory is
// released when the buffer drains, so an idle connection costs no buffer.
#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>

namespace larder {

class ByteBuffer {
 public:
  explicit ByteBuffer(std::size_t initial_capacity = 16 * 1024) : initial_(initial_capacity) {}

  std::string_view readable() const { return {data_.get() + begin_, end_ - begin_}; }
  std::size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  std::size_t capacity() const { return capacity_; }

  // Makes room for at least `n` more bytes at the back; returns where to write.
  char* prepare(std::size_t n) {
    if (capacity_ - end_ < n) grow(n);
    return data_.get() + end_;
  }
  std::size_t writable() const { return capacity_ - end_; }
  void commit(std::size_t n) { end_ += n; }

  void consume(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }

  // Frees the memory if nothing is buffered (idle connections hold none).
  void releaseIfEmpty() {
    if (begin_ == end_ && data_) {
      data_.reset();
      capacity_ = begin_ = end_ = 0;
    }
  }

 private:
  void grow(std::size_t n) {
    const std::size_t used = end_ - begin_;
    if (data_ && begin_ > 0 && capacity_ - used >= n) {  // compact in place
      std::memmove(data_.get(), data_.get() + begin_, used);
    } else {
      std::size_t cap = capacity_ ? capacity_ : initial_;
      while (cap - used < n) cap *= 2;
      auto fresh = std::make_unique_for_overwrite<char[]>(cap);
      if (used) std::memcpy(fresh.get(), data_.get() + begin_, used);
      data_ = std::move(fresh);
      capacity_ = cap;
    }
    begin_ = 0;
    end_ = used;
  }

  std::size_t initial_;
  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace larder
