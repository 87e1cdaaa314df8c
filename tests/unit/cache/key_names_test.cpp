#include "larder/cache/key_names.hpp"

#include <catch2/catch.hpp>
#include <set>

#include "larder/cache/stampede.hpp"
#include "larder/cache/write_scripts.hpp"
#include "larder/redis/slot.hpp"

using namespace larder::cache;
using larder::cluster::keySlot;

namespace {
// The layout is process-wide: every test leaves it as one Redis.
struct LayoutScope {
  explicit LayoutScope(NameLayout layout) { setNameLayout(layout); }
  ~LayoutScope() { setNameLayout(NameLayout::OneRedis); }
};
}  // namespace

TEST_CASE("one Redis: internal names are the prefix and the key", "[cache][names]") {
  LayoutScope scope(NameLayout::OneRedis);
  CHECK(leaseKey("user:42") == "__larder:lease:user:42");
  CHECK(deltaKey("user:42") == "__larder:delta:user:42");
  CHECK(pendingMarker("user:{42}") == "__larder:pending:user:{42}");
}

TEST_CASE("cluster: every internal name of a key is in the key's slot", "[cache][names]") {
  LayoutScope scope(NameLayout::Cluster);
  for (std::string_view key : {"user:42", "user:{42}", "{", "}{", "a{}b", "{a}{b}", ""}) {
    for (const std::string& name : {leaseKey(key), deltaKey(key), pendingMarker(key)}) {
      CHECK(keySlot(name) == keySlot(key));
      CHECK(name.rfind(kReservedPrefix, 0) == 0);  // still reserved from clients
      CHECK(name.substr(name.size() - key.size()) == key);
    }
  }
  // Different keys, different names; the tag makes no two collide.
  CHECK(leaseKey("user:1") != leaseKey("user:2"));
  CHECK(leaseKey("user:1").rfind("__larder:lease:{", 0) == 0);
}

TEST_CASE("groupBySlot: one group on one Redis, one per slot on a cluster", "[cache][names]") {
  const std::vector<std::string_view> keys{"user:1", "user:2", "{t}a", "user:1", "{t}b", "user:3"};
  const auto one = groupBySlot(keys, false);
  REQUIRE(one.size() == 1);
  CHECK(one[0] == std::vector<std::size_t>{0, 1, 2, 3, 4, 5});
  CHECK(groupBySlot({}, false).empty());

  const auto groups = groupBySlot(keys, true);
  std::set<std::size_t> seen;
  std::set<int> slots;
  std::size_t last_first = 0;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    REQUIRE(!groups[g].empty());
    if (g > 0) CHECK(groups[g].front() > last_first);  // first-seen order
    last_first = groups[g].front();
    const int slot = keySlot(keys[groups[g].front()]);
    CHECK(slots.insert(slot).second);  // one group per slot
    for (std::size_t i : groups[g]) {
      CHECK(keySlot(keys[i]) == slot);
      CHECK(seen.insert(i).second);
    }
  }
  CHECK(seen.size() == keys.size());
  // Hash-tagged keys share a group; user:1 twice, too.
  CHECK(groups.size() == 4);
}

TEST_CASE("queue family: one per keyspace on one Redis, per keyspace and slot on a cluster",
          "[cache][names]") {
  // The write script derives the dead-keys name from the queue's; the C++
  // names must follow the same rule in both layouts.
  const std::string derive = "'__larder:deadkeys:' .. string.sub(queue, 12)";
  REQUIRE(writeScript().body.find(derive) != std::string::npos);
  const auto derived = [](const std::string& queue) {
    return "__larder:deadkeys:" + queue.substr(11);
  };
  {
    LayoutScope scope(NameLayout::OneRedis);
    CHECK(writeQueueKey("users", "user:42") == queueKey("users"));
    CHECK(queueFamilyKey(kDeadLetters, "users", "user:42") == deadLetterKey("users"));
    CHECK(queueFamilyKey(kDeadKeys, "users", "user:42") == deadKeysKey("users"));
    CHECK(derived(queueKey("users")) == deadKeysKey("users"));
  }
  LayoutScope scope(NameLayout::Cluster);
  for (std::string_view key : {"user:42", "user:{42}", "{", "a{}b", ""}) {
    const std::string queue = writeQueueKey("users", key);
    const std::string dead = queueFamilyKey(kDeadLetters, "users", key);
    const std::string dead_keys = queueFamilyKey(kDeadKeys, "users", key);
    for (const std::string& name : {queue, dead, dead_keys}) {
      CHECK(keySlot(name) == keySlot(key));
      CHECK(name.rfind(kReservedPrefix, 0) == 0);
      CHECK(name.substr(name.size() - 6) == ":users");
    }
    CHECK(queue.rfind("__larder:q:{", 0) == 0);
    CHECK(dead.rfind("__larder:dead:{", 0) == 0);
    CHECK(derived(queue) == dead_keys);
  }
  // One queue per slot, not per key.
  CHECK(writeQueueKey("users", "{t}a") == writeQueueKey("users", "{t}b"));
  CHECK(writeQueueKey("users", "user:1") != writeQueueKey("orders", "user:1"));
}

TEST_CASE("slot names: queue family by slot, the slot's instance id, a marker's key",
          "[cache][names]") {
  LayoutScope scope(NameLayout::Cluster);
  for (std::string_view key : {"user:42", "user:{42}", "}x{", ""}) {
    const int slot = keySlot(key);
    CHECK(slotQueueKey(kQueue, "users", slot) == writeQueueKey("users", key));
    CHECK(slotQueueKey(kDeadKeys, "users", slot) == queueFamilyKey(kDeadKeys, "users", key));
    CHECK(keySlot(slotInstanceKey(slot)) == slot);
    CHECK(slotInstanceKey(slot).rfind("__larder:id:{", 0) == 0);
    CHECK(keyOfMarker(pendingMarker(key)) == key);
  }
  CHECK(keyOfMarker("__larder:lease:{x}user:1").empty());
  CHECK(keyOfMarker("user:1").empty());
  {
    LayoutScope one(NameLayout::OneRedis);
    CHECK(keyOfMarker(pendingMarker("user:{42}")) == "user:{42}");
  }
}

TEST_CASE("queueKeyspace: the keyspace a write queue's key names", "[cache][names]") {
  {
    LayoutScope scope(NameLayout::OneRedis);
    CHECK(queueKeyspace(queueKey("users")) == "users");
    CHECK(queueKeyspace("__larder:q:a:b") == "a:b");
    CHECK(queueKeyspace("__larder:q:").empty());
    CHECK(queueKeyspace("__larder:dead:users").empty());
    CHECK(queueKeyspace("users").empty());
  }
  LayoutScope scope(NameLayout::Cluster);
  for (const int slot : {0, 1, 5461, 10923, 16383}) {
    CHECK(queueKeyspace(slotQueueKey(kQueue, "users", slot)) == "users");
    CHECK(queueKeyspace(slotQueueKey(kQueue, "my:notes", slot)) == "my:notes");
    // Other families of the same slot are not queues.
    CHECK(queueKeyspace(slotQueueKey(kDeadLetters, "users", slot)).empty());
    CHECK(queueKeyspace(slotQueueKey(kDeadKeys, "users", slot)).empty());
  }
  CHECK(queueKeyspace(writeQueueKey("users", "user:42")) == "users");
  // A one-Redis name, a missing or malformed tag, no keyspace: not a slot queue.
  CHECK(queueKeyspace("__larder:q:users").empty());
  CHECK(queueKeyspace("__larder:q:{}:users").empty());
  CHECK(queueKeyspace("__larder:q:{ikd}users").empty());
  CHECK(queueKeyspace("__larder:q:{ikd:users").empty());
  CHECK(queueKeyspace("__larder:q:{IKD}:users").empty());
  CHECK(queueKeyspace("__larder:q:{ikd}:").empty());
  CHECK(queueKeyspace("__larder:q:{i}:u") == "u");
}
