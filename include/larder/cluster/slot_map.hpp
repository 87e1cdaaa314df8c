#pragma once
// Which node owns each of the 16384 slots, as indexes into the router's node
// list, plus the order SCAN and fan-outs walk the shards in (by each owner's
// first slot). Pure; one per worker.
#include <array>
#include <cstdint>
#include <vector>

#include "larder/redis/slot.hpp"

namespace larder::cluster {

class SlotMap {
 public:
  static constexpr std::uint16_t kNone = 0xFFFF;

  SlotMap() { owner_.fill(kNone); }

  int owner(int slot) const {
    const std::uint16_t n = owner_[static_cast<std::size_t>(slot)];
    return n == kNone ? -1 : n;
  }
  void assign(int slot, int node) {
    owner_[static_cast<std::size_t>(slot)] = static_cast<std::uint16_t>(node);
    dirty_ = true;
  }
  void clear() {
    owner_.fill(kNone);
    dirty_ = true;
  }

  int slotsKnown() const;
  // The first slot of every owner, ascending: one entry per shard.
  const std::vector<int>& firstSlots() const;
  // The first slot of the shard after the one whose first slot is `slot`;
  // -1 after the last.
  int nextFirstSlot(int slot) const;
  bool references(int node) const;

 private:
  std::array<std::uint16_t, kSlots> owner_;
  mutable std::vector<int> first_slots_;
  mutable bool dirty_ = true;
};

}  // namespace larder::cluster
