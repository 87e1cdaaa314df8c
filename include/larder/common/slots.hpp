#pragma once
// A fixed number of slots, each filled at most once and then never changed,
// readable from any thread without a lock while one thread fills them. It is
// how per-keyspace objects grow when a reload adds keyspaces: readers on
// other threads never see a container reallocate under them.
#include <array>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <memory>

namespace larder {

template <typename T, std::size_t N>
class Slots {
 public:
  static constexpr std::size_t capacity() { return N; }

  // nullptr while slot i is empty.
  T* get(std::size_t i) const { return published_[i].load(std::memory_order_acquire); }

  // Fills slot i; callers serialize fills among themselves.
  T* set(std::size_t i, std::unique_ptr<T> value) {
    assert(!owned_[i]);
    owned_[i] = std::move(value);
    published_[i].store(owned_[i].get(), std::memory_order_release);
    return owned_[i].get();
  }

 private:
  std::array<std::unique_ptr<T>, N> owned_{};
  std::array<std::atomic<T*>, N> published_{};
};

}  // namespace larder
