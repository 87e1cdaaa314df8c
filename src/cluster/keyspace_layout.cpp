#include "larder/cluster/keyspace_layout.hpp"

#include <stdexcept>

#include "larder/redis/slot.hpp"

namespace larder::cluster {

QueueLayout::QueueLayout(int groups) : groups_(groups), width_(groups > 0 ? kSlots / groups : 0) {
  if (groups <= 0 || groups > kSlots || kSlots % groups != 0) {
    throw std::invalid_argument("queue groups must divide 16384");
  }
}

std::string QueueLayout::queueKey(std::string_view keyspace, int group) const {
  std::string out = "__larder:q:{";
  out.append(slotTag(firstSlot(group)));
  out.append("}:");
  out.append(keyspace);
  return out;
}

std::string QueueLayout::queueKeyFor(std::string_view keyspace, std::string_view key) const {
  return queueKey(keyspace, groupOf(keySlot(key)));
}

bool QueueLayout::groupWhole(const SlotMap& map, int group) const {
  const int owner = map.owner(firstSlot(group));
  if (owner < 0) return false;
  for (int slot = firstSlot(group) + 1; slot <= lastSlot(group); ++slot) {
    if (map.owner(slot) != owner) return false;
  }
  return true;
}

std::vector<int> QueueLayout::groupsOwnedBy(const SlotMap& map, int node) const {
  std::vector<int> out;
  for (int g = 0; g < groups_; ++g) {
    if (map.owner(firstSlot(g)) == node && groupWhole(map, g)) out.push_back(g);
  }
  return out;
}

}  // namespace larder::cluster
