#pragma once
// Keeps a client's replies in request order.
//
//   reserve() -> tag 7   reserve() -> tag 8   reserve() -> tag 9
//   complete(9, "c")  : held (7 and 8 are still outstanding)
//   complete(7, "a")  : "a" released to the output
//   complete(8, "b")  : "b" and then the held "c" released
//
// Replies that complete in order (the common case: one backend connection
// answers FIFO) go straight to the output without being copied into a slot.
// Slots live in a ring that grows to the most replies ever outstanding (the
// session bounds them: limits.max_inflight_per_client), so a request costs no
// allocation once the ring has grown.
// A slot reserved while the queue is silenced (CLIENT REPLY OFF / SKIP) keeps
// its place in the order but its reply is dropped.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace larder::proxy {

// Tag used for frames that belong to no reserved slot (pub/sub streams).
inline constexpr std::uint64_t kStreamTag = 0;

class ReplyQueue {
 public:
  // Which request a slot answers, for per-command latency.
  struct Stamp {
    std::uint16_t command = 0xFFFF;  // none
    std::chrono::steady_clock::time_point start{};
  };

  // Slots reserved from now on answer this request.
  void stamp(Stamp s) { stamp_ = s; }
  // Replies of slots reserved from now on are dropped (or no longer).
  void silence(bool on) { silent_ = on; }
  bool silenced() const { return silent_; }

  std::uint64_t reserve() {
    if (count_ == ring_.size()) grow();
    Slot& slot = ring_[(first_ + count_) & (ring_.size() - 1)];
    slot.done = false;
    slot.silent = silent_;
    slot.stamp = stamp_;
    ++count_;
    return head_ + count_ - 1;
  }

  // The stamp of slot `tag`, once: later calls (and unknown tags) get none.
  Stamp takeStamp(std::uint64_t tag) {
    if (tag < head_ || tag - head_ >= count_) return {};
    return std::exchange(at(tag - head_).stamp, Stamp{});
  }

  // Fills slot `tag`; appends every reply now in order to `out`. Returns the
  // number of replies released. Unknown tags (already released) are ignored.
  std::size_t complete(std::uint64_t tag, std::string_view reply, std::string& out) {
    if (tag < head_ || tag - head_ >= count_) return 0;
    Slot& slot = at(tag - head_);
    if (slot.silent) reply = {};
    if (tag != head_) {
      slot.bytes.assign(reply);
      slot.done = true;
      held_bytes_ += reply.size();
      return 0;
    }
    out.append(reply);
    pop();
    std::size_t released = 1;
    while (count_ > 0 && at(0).done) {
      Slot& next = at(0);
      out.append(next.bytes);
      held_bytes_ -= next.bytes.size();
      release(next);
      pop();
      ++released;
    }
    return released;
  }

  // The tag the next reserve() will return.
  std::uint64_t nextTag() const { return head_ + count_; }
  std::uint64_t headTag() const { return head_; }  // oldest slot still outstanding
  std::size_t outstanding() const { return count_; }
  bool empty() const { return count_ == 0; }
  std::size_t heldBytes() const { return held_bytes_; }

 private:
  struct Slot {
    std::string bytes;  // a reply that arrived before the ones ahead of it
    bool done = false;
    bool silent = false;  // CLIENT REPLY OFF / SKIP: the reply is dropped
    Stamp stamp;
  };

  Slot& at(std::size_t i) { return ring_[(first_ + i) & (ring_.size() - 1)]; }
  void pop() {
    first_ = (first_ + 1) & (ring_.size() - 1);
    --count_;
    ++head_;
  }
  // A big held reply does not keep its memory once it has left.
  static void release(Slot& slot) {
    if (slot.bytes.capacity() > 4096) {
      std::string().swap(slot.bytes);
    } else {
      slot.bytes.clear();
    }
  }
  void grow() {
    std::vector<Slot> bigger(ring_.empty() ? 16 : ring_.size() * 2);
    for (std::size_t i = 0; i < count_; ++i) bigger[i] = std::move(at(i));
    ring_.swap(bigger);
    first_ = 0;
  }

  std::vector<Slot> ring_;  // power-of-two size; slot i of the queue at (first_ + i)
  std::size_t first_ = 0;
  std::size_t count_ = 0;
  std::uint64_t head_ = 1;  // tag of the oldest slot; tag 0 is never reserved (kStreamTag)
  std::size_t held_bytes_ = 0;
  Stamp stamp_;
  bool silent_ = false;
};

}  // namespace larder::proxy
