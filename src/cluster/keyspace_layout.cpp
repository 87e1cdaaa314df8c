#include "larder/cluster/keyspace_layout.hpp"

#include <array>
#include <stdexcept>

#include "larder/cluster/slot.hpp"

namespace larder::cluster {

namespace {

constexpr std::string_view kAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz";

// Tags by slot, found once by trying strings in order of length, then
// alphabet order: 36^4 candidates give every slot one (about 100 each).
struct TagTable {
  std::array<std::string, kSlots> tags;
  TagTable() {
    int found = 0;
    std::string s;
    for (std::size_t len = 1; len <= 4 && found < kSlots; ++len) {
      std::vector<std::size_t> digits(len, 0);
      for (;;) {
        s.clear();
        for (std::size_t d : digits) s.push_back(kAlphabet[d]);
        std::string& tag = tags[keySlot(s)];
        if (tag.empty()) {
          tag = s;
          ++found;
        }
        std::size_t i = len;
        while (i > 0 && ++digits[i - 1] == kAlphabet.size()) digits[--i] = 0;
        if (i == 0) break;
      }
    }
    if (found != kSlots) throw std::logic_error("slot tags do not cover every slot");
  }
};

const TagTable& table() {
  static const TagTable t;
  return t;
}

}  // namespace

std::string_view slotTag(int slot) { return table().tags[static_cast<std::size_t>(slot)]; }

std::string taggedKey(std::string_view prefix, std::string_view key) {
  std::string out;
  const std::string_view tag = slotTag(keySlot(key));
  out.reserve(prefix.size() + tag.size() + 2 + key.size());
  out.append(prefix);
  out.push_back('{');
  out.append(tag);
  out.push_back('}');
  out.append(key);
  return out;
}

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
