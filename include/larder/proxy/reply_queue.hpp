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
// A slot reserved while the queue is silenced (CLIENT REPLY OFF / SKIP) keeps
// its place in the order but its reply is dropped.
#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>

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
    slots_.emplace_back();
    slots_.back().stamp = stamp_;
    slots_.back().silent = silent_;
    return head_ + slots_.size() - 1;
  }

  // The stamp of slot `tag`, once: later calls (and unknown tags) get none.
  Stamp takeStamp(std::uint64_t tag) {
    if (tag < head_ || tag - head_ >= slots_.size()) return {};
    return std::exchange(slots_[tag - head_].stamp, Stamp{});
  }

  // Fills slot `tag`; appends every reply now in order to `out`. Returns the
  // number of replies released. Unknown tags (already released) are ignored.
  std::size_t complete(std::uint64_t tag, std::string_view reply, std::string& out) {
    if (tag < head_ || tag - head_ >= slots_.size()) return 0;
    Slot& slot = slots_[tag - head_];
    if (slot.silent) reply = {};
    if (tag != head_) {
      slot.bytes.assign(reply);
      slot.done = true;
      held_bytes_ += reply.size();
      return 0;
    }
    out.append(reply);
    slots_.pop_front();
    ++head_;
    std::size_t released = 1;
    while (!slots_.empty() && slots_.front().done) {
      out.append(slots_.front().bytes);
      held_bytes_ -= slots_.front().bytes.size();
      slots_.pop_front();
      ++head_;
      ++released;
    }
    return released;
  }

  // The tag the next reserve() will return.
  std::uint64_t nextTag() const { return head_ + slots_.size(); }
  std::uint64_t headTag() const { return head_; }  // oldest slot still outstanding
  std::size_t outstanding() const { return slots_.size(); }
  bool empty() const { return slots_.empty(); }
  std::size_t heldBytes() const { return held_bytes_; }

 private:
  struct Slot {
    std::string bytes;
    bool done = false;
    bool silent = false;
    Stamp stamp;
  };
  std::deque<Slot> slots_;  // slots_[0] has tag head_
  std::uint64_t head_ = 1;  // tag 0 is never reserved (see kStreamTag)
  std::size_t held_bytes_ = 0;
  Stamp stamp_;
  bool silent_ = false;
};

}  // namespace larder::proxy
