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
