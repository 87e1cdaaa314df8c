#include "larder/cluster/slot_map.hpp"

#include <algorithm>

namespace larder::cluster {

int SlotMap::slotsKnown() const {
  return static_cast<int>(kSlots - std::count(owner_.begin(), owner_.end(), kNone));
}

const std::vector<int>& SlotMap::firstSlots() const {
  if (!dirty_) return first_slots_;
  first_slots_.clear();
  std::vector<bool> seen;
  for (int slot = 0; slot < kSlots; ++slot) {
    const std::uint16_t n = owner_[static_cast<std::size_t>(slot)];
    if (n == kNone) continue;
    if (seen.size() <= n) seen.resize(n + 1u, false);
    if (seen[n]) continue;
    seen[n] = true;
    first_slots_.push_back(slot);
  }
  dirty_ = false;
  return first_slots_;
}

int SlotMap::nextFirstSlot(int slot) const {
  const std::vector<int>& firsts = firstSlots();
  auto it = std::upper_bound(firsts.begin(), firsts.end(), slot);
  return it == firsts.end() ? -1 : *it;
}

bool SlotMap::references(int node) const {
  return std::find(owner_.begin(), owner_.end(), static_cast<std::uint16_t>(node)) != owner_.end();
}

}  // namespace larder::cluster
