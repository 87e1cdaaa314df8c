#include "larder/redis/slot.hpp"

#include <catch2/catch.hpp>

#include "larder/cluster/slot_map.hpp"

using namespace larder::cluster;

TEST_CASE("crc16 is CRC-16/XMODEM", "[cluster]") {
  CHECK(crc16("") == 0);
  CHECK(crc16("123456789") == 0x31C3);  // the check value of the XMODEM variant
}

TEST_CASE("key slots match redis-server's CLUSTER KEYSLOT", "[cluster]") {
  // Read off `redis-cli CLUSTER KEYSLOT` of redis-server 7.0.15.
  CHECK(keySlot("foo") == 12182);
  CHECK(keySlot("bar") == 5061);
  CHECK(keySlot("a") == 15495);
  CHECK(keySlot("") == 0);
  CHECK(keySlot(std::string_view("\0\xff", 2)) == keySlot(std::string_view("\0\xff", 2)));
}

TEST_CASE("hash tags: the first non-empty {...}", "[cluster]") {
  CHECK(hashTag("{user1000}.following") == "user1000");
  CHECK(keySlot("{user1000}.following") == keySlot("{user1000}.followers"));
  CHECK(hashTag("foo{}{bar}") == "foo{}{bar}");  // an empty first tag: the whole key
  CHECK(hashTag("foo{{bar}}zap") == "{bar");
  CHECK(hashTag("foo{bar}{zap}") == "bar");
  CHECK(hashTag("{") == "{");
  CHECK(hashTag("}{") == "}{");
  CHECK(hashTag("x{y") == "x{y");
  CHECK(keySlot("user:{42}:name") == keySlot("42"));
}

TEST_CASE("slot map: owners, shards by first slot, next shard", "[cluster]") {
  SlotMap map;
  CHECK(map.slotsKnown() == 0);
  CHECK(map.owner(0) == -1);
  CHECK(map.firstSlots().empty());
  for (int s = 0; s < 5000; ++s) map.assign(s, 2);
  for (int s = 5000; s < 10000; ++s) map.assign(s, 0);
  for (int s = 10000; s < kSlots; ++s) map.assign(s, 1);
  map.assign(12000, 2);  // node 2 also owns a slot far away: still one shard
  CHECK(map.slotsKnown() == kSlots);
  CHECK(map.firstSlots() == std::vector<int>{0, 5000, 10000});
  CHECK(map.nextFirstSlot(0) == 5000);
  CHECK(map.nextFirstSlot(5000) == 10000);
  CHECK(map.nextFirstSlot(10000) == -1);
  CHECK(map.nextFirstSlot(7) == 5000);
  CHECK(map.references(1));
  CHECK_FALSE(map.references(3));
  map.assign(5000, 1);                                         // MOVED: the first slots follow
  CHECK(map.firstSlots() == std::vector<int>{0, 5000, 5001});  // node 1 now starts at 5000
}
