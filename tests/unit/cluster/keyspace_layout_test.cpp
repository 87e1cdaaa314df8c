#include "larder/cluster/keyspace_layout.hpp"

#include <catch2/catch.hpp>

#include "larder/redis/slot.hpp"

using namespace larder::cluster;

TEST_CASE("every slot has a short tag that hashes to it", "[cluster]") {
  std::size_t longest = 0;
  for (int slot = 0; slot < kSlots; ++slot) {
    const std::string_view tag = slotTag(slot);
    REQUIRE(!tag.empty());
    REQUIRE(keySlot(tag) == slot);
    REQUIRE(tag.find_first_of("{}") == std::string_view::npos);
    longest = std::max(longest, tag.size());
  }
  CHECK(longest <= 4);
  CHECK(slotTag(keySlot("0")) == "0");  // the shortest candidate wins: stable
}

TEST_CASE("internal keys share the slot of their key, braces and all", "[cluster]") {
  for (std::string_view key :
       {"user:42", "user:{42}", "{", "}", "}{", "{}", "a{}b", "x{y", "{a}{b}", "", "\xff\x00"}) {
    const std::string marker = taggedKey("__larder:pending:", key);
    CHECK(keySlot(marker) == keySlot(key));
    CHECK(marker.rfind("__larder:pending:{", 0) == 0);
    CHECK(marker.substr(marker.size() - key.size()) == key);
  }
}

TEST_CASE("queues: one per keyspace and slot group, in the group's first slot", "[cluster]") {
  CHECK_THROWS(QueueLayout(3));
  CHECK_THROWS(QueueLayout(0));
  const QueueLayout layout(64);
  CHECK(layout.groupOf(0) == 0);
  CHECK(layout.groupOf(255) == 0);
  CHECK(layout.groupOf(256) == 1);
  CHECK(layout.lastSlot(63) == 16383);
  for (int g : {0, 1, 17, 63}) {
    CHECK(keySlot(layout.queueKey("users", g)) == layout.firstSlot(g));
  }
  CHECK(layout.queueKeyFor("users", "user:42") ==
        layout.queueKey("users", layout.groupOf(keySlot("user:42"))));

  SlotMap map;
  for (int s = 0; s < kSlots; ++s) map.assign(s, s < 5461 ? 0 : s < 10923 ? 1 : 2);
  // 5461 is not a multiple of 256: group 21 (5376-5631) spans nodes 0 and 1.
  CHECK(layout.groupWhole(map, 0));
  CHECK_FALSE(layout.groupWhole(map, 21));
  const std::vector<int> mine = layout.groupsOwnedBy(map, 0);
  CHECK(mine.size() == 21);
  CHECK(mine.back() == 20);
  // Mid-reshard: one slot of group 3 already on node 1.
  map.assign(layout.firstSlot(3) + 5, 1);
  CHECK_FALSE(layout.groupWhole(map, 3));
  CHECK(layout.groupsOwnedBy(map, 0).size() == 20);
  SlotMap empty;
  CHECK_FALSE(layout.groupWhole(empty, 0));
}
