#include "larder/cluster/request_plan.hpp"

#include <catch2/catch.hpp>

#include "larder/cluster/merge.hpp"
#include "larder/cluster/one_node.hpp"
#include "larder/cluster/scan.hpp"
#include "larder/redis/slot.hpp"

using namespace larder;
using namespace larder::cluster;

namespace {

using V = std::vector<std::string_view>;

Plan plan(V args) {
  const commands::Command* c = commands::Registry::get().resolve(args).command;
  std::vector<commands::KeyRef> keys;
  return planRequest(c, args, keys);
}

}  // namespace

TEST_CASE("plans: a slot from the keys, CROSSSLOT across slots", "[cluster]") {
  Plan p = plan({"GET", "foo"});
  CHECK(p.kind == Plan::Kind::Slot);
  CHECK(p.slot == 12182);
  CHECK(p.readonly);
  CHECK_FALSE(plan({"SET", "foo", "1"}).readonly);
  CHECK(plan({"RENAME", "{a}1", "{a}2"}).kind == Plan::Kind::Slot);
  CHECK(plan({"RENAME", "foo", "bar"}).kind == Plan::Kind::CrossSlot);
  CHECK(plan({"RENAME", "foo", "bar"}).first_slot == 12182);
  CHECK(plan({"MSETNX", "foo", "1", "bar", "2"}).kind == Plan::Kind::CrossSlot);
  CHECK(plan({"EVAL", "return 1", "2", "foo", "bar"}).kind == Plan::Kind::CrossSlot);
  CHECK(plan({"EVAL", "return 1", "0"}).kind == Plan::Kind::Keyless);
  CHECK(plan({"BLPOP", "foo", "bar", "0"}).kind == Plan::Kind::CrossSlot);
  CHECK(plan({"XREAD", "STREAMS", "foo", "{foo}x", "0", "0"}).kind == Plan::Kind::Slot);
  CHECK(plan({"TIME"}).kind == Plan::Kind::Keyless);
  CHECK(plan({"NOSUCHCOMMAND", "foo"}).kind == Plan::Kind::Keyless);
  CHECK(plan({"MGET", "foo", "foo"}).kind == Plan::Kind::Slot);  // one key twice
}

TEST_CASE("plans: split, fan-out, scan, shard channels, slot arguments", "[cluster]") {
  Plan p = plan({"MGET", "foo", "bar"});
  CHECK(p.kind == Plan::Kind::Split);
  CHECK(p.merge == Merge::MGet);
  CHECK(p.first_slot == 12182);
  CHECK(plan({"MSET", "foo", "1", "bar", "2"}).merge == Merge::AllOk);
  CHECK(plan({"MSET", "foo", "1", "bar"}).kind == Plan::Kind::Slot);  // the node's arity error
  for (auto name : {"DEL", "UNLINK", "EXISTS", "TOUCH"}) {
    Plan s = plan({name, "foo", "bar"});
    CHECK(s.kind == Plan::Kind::Split);
    CHECK(s.merge == Merge::Sum);
  }
  CHECK(plan({"KEYS", "*"}).merge == Merge::Concat);
  CHECK(plan({"DBSIZE"}).kind == Plan::Kind::AllPrimaries);
  CHECK(plan({"FLUSHALL"}).merge == Merge::AllOk);
  CHECK(plan({"SCRIPT", "LOAD", "return 1"}).merge == Merge::First);
  CHECK(plan({"SCRIPT", "EXISTS", "abc"}).merge == Merge::ScriptExists);
  CHECK(plan({"INFO"}).merge == Merge::Info);
  CHECK(plan({"INFO", "keyspace"}).kind == Plan::Kind::AllPrimaries);
  CHECK(plan({"INFO", "server"}).kind == Plan::Kind::Keyless);
  CHECK(plan({"SCAN", "0"}).kind == Plan::Kind::Scan);
  CHECK(plan({"SPUBLISH", "foo", "m"}).slot == 12182);
  CHECK(plan({"SSUBSCRIBE", "foo", "bar"}).kind == Plan::Kind::CrossSlot);
  CHECK(plan({"SSUBSCRIBE", "foo", "{foo}2"}).slot == 12182);
  CHECK(plan({"SUNSUBSCRIBE"}).kind == Plan::Kind::Keyless);
  CHECK(plan({"PUBLISH", "foo", "m"}).kind == Plan::Kind::Keyless);
  CHECK(plan({"CLUSTER", "COUNTKEYSINSLOT", "7"}).slot == 7);
  CHECK(plan({"CLUSTER", "GETKEYSINSLOT", "x", "1"}).kind == Plan::Kind::Keyless);
  CHECK(plan({"CLUSTER", "SLOTS"}).local == LocalAnswer::ClusterSlots);
  CHECK(plan({"cluster", "setslot", "1", "stable"}).local == LocalAnswer::ClusterRefused);
  CHECK(plan({"READONLY"}).local == LocalAnswer::Ok);
  CHECK(plan({"CLIENT", "TRACKING", "on"}).local == LocalAnswer::TrackingRefused);
}

TEST_CASE("split: one request per slot, keys in order, MSET values with their keys", "[cluster]") {
  const V mget{"MGET", "foo", "bar", "{foo}2", "a"};
  const std::vector<Part> parts = splitRequest(Merge::MGet, mget);
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].slot == 12182);
  CHECK(parts[0].positions == std::vector<std::uint32_t>{0, 2});
  CHECK(parts[0].request == "*3\r\n$4\r\nMGET\r\n$3\r\nfoo\r\n$6\r\n{foo}2\r\n");
  CHECK(parts[1].positions == std::vector<std::uint32_t>{1});
  CHECK(parts[2].positions == std::vector<std::uint32_t>{3});
  const std::vector<Part> mset = splitRequest(Merge::AllOk, V{"mset", "foo", "1", "bar", "2"});
  REQUIRE(mset.size() == 2);
  CHECK(mset[1].request == "*3\r\n$4\r\nmset\r\n$3\r\nbar\r\n$1\r\n2\r\n");
}

TEST_CASE("merge: as one Redis would answer", "[cluster]") {
  CHECK(mergeReplies(Merge::MGet, {"*2\r\n$1\r\n1\r\n$-1\r\n", "*1\r\n$1\r\n2\r\n"}, {{0, 2}, {1}},
                     3) == "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n");
  CHECK(mergeReplies(Merge::Sum, {":2\r\n", ":1\r\n"}, {}, 0) == ":3\r\n");
  CHECK(mergeReplies(Merge::AllOk, {"+OK\r\n", "+OK\r\n"}, {}, 0) == "+OK\r\n");
  CHECK(mergeReplies(Merge::Sum, {":2\r\n", "-CLUSTERDOWN The cluster is down\r\n"}, {}, 0) ==
        "-CLUSTERDOWN The cluster is down\r\n");
  CHECK(mergeReplies(Merge::Concat, {"*1\r\n$1\r\na\r\n", "*0\r\n", "*1\r\n$1\r\nb\r\n"}, {}, 0) ==
        "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
  CHECK(mergeReplies(Merge::ScriptExists, {"*2\r\n:1\r\n:1\r\n", "*2\r\n:0\r\n:1\r\n"}, {}, 0) ==
        "*2\r\n:0\r\n:1\r\n");
  CHECK(mergeReplies(Merge::First, {"$2\r\nab\r\n", "$2\r\nab\r\n"}, {}, 0) == "$2\r\nab\r\n");
  CHECK(mergeReplies(Merge::MGet, {"*1\r\n$1\r\n1\r\n"}, {{0, 1}}, 2).rfind("-ERR Larder:", 0) ==
        0);
  CHECK(mergeReplies(Merge::Sum, {"+OK\r\n"}, {}, 0).rfind("-ERR Larder:", 0) == 0);
}

TEST_CASE("merge: INFO keyspace added up over the nodes", "[cluster]") {
  const std::string a =
      "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=100\r\n";
  const std::string b =
      "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\n"
      "db0:keys=2,expires=3,avg_ttl=500\r\ndb2:keys=1,expires=0,avg_ttl=0\r\n"
      "\r\n# Other\r\nx:1\r\n";
  CHECK(mergeInfoText({a, b}) ==
        "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=5,expires=4,avg_ttl=400\r\n"
        "db2:keys=1,expires=0,avg_ttl=0\r\n");
  CHECK(mergeInfoText({b, a}).find("db0:keys=5,expires=4,avg_ttl=400\r\ndb2:keys=1,expires=0,"
                                   "avg_ttl=0\r\n\r\n# Other\r\nx:1\r\n") != std::string::npos);
  const std::string empty = "# Keyspace\r\n";
  CHECK(mergeInfoText({empty, empty}) == "# Keyspace\r\n");
  CHECK(mergeInfoText({"# Server\r\nx:1\r\n"}) == "# Server\r\nx:1\r\n");
}

TEST_CASE("scan cursors name the shard by its first slot", "[cluster]") {
  CHECK(decodeCursor("0")->slot == -1);
  CHECK_FALSE(decodeCursor("x"));
  CHECK_FALSE(decodeCursor("-1"));
  CHECK_FALSE(decodeCursor(""));
  const std::uint64_t c = *encodeCursor(42, 5461);
  CHECK(c == 42 * 16384 + 5461);
  CHECK(decodeCursor(std::to_string(c))->slot == 5461);
  CHECK(decodeCursor(std::to_string(c))->node_cursor == 42);
  CHECK(*encodeCursor(0, 5461) != 0);
  CHECK_FALSE(encodeCursor(std::uint64_t{1} << 51, 0));
  CHECK(scanRequest(V{"SCAN", "999", "COUNT", "5"}, 7) ==
        "*4\r\n$4\r\nSCAN\r\n$1\r\n7\r\n$5\r\nCOUNT\r\n$1\r\n5\r\n");
  std::uint64_t cursor = 0;
  std::string_view keys;
  REQUIRE(splitScanReply("*2\r\n$2\r\n12\r\n*1\r\n$1\r\nk\r\n", cursor, keys));
  CHECK(cursor == 12);
  CHECK(keys == "*1\r\n$1\r\nk\r\n");
  CHECK(scanReply(5, keys) == "*2\r\n$1\r\n5\r\n*1\r\n$1\r\nk\r\n");
  CHECK_FALSE(splitScanReply("-ERR x\r\n", cursor, keys));
}

TEST_CASE("Larder answers as a one-node cluster owning every slot", "[cluster]") {
  const OneNode n = oneNodeAt("127.0.0.1:6380", 16384);
  CHECK(n.host == "127.0.0.1");
  CHECK(n.port == 6380);
  CHECK(n.id.size() == 40);
  CHECK(oneNodeAt("127.0.0.1:6380", 0).id == n.id);
  CHECK(oneNodeAt("127.0.0.1:6381", 0).id != n.id);
  const std::string slots = oneNodeReply(LocalAnswer::ClusterSlots, n, {});
  CHECK(slots == "*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:6380\r\n$40\r\n" + n.id +
                     "\r\n*0\r\n");
  CHECK(oneNodeReply(LocalAnswer::ClusterNodes, n, {})
            .find(" 127.0.0.1:6380@0 myself,master - 0 0 1 connected 0-16383\n") !=
        std::string::npos);
  CHECK(oneNodeReply(LocalAnswer::ClusterInfo, n, {}).find("cluster_state:ok") !=
        std::string::npos);
  CHECK(oneNodeReply(LocalAnswer::ClusterInfo, oneNodeAt("127.0.0.1:6380", 100), {})
            .find("cluster_state:fail") != std::string::npos);
  CHECK(oneNodeReply(LocalAnswer::ClusterKeySlot, n, V{"CLUSTER", "KEYSLOT", "foo"}) ==
        ":12182\r\n");
  CHECK(oneNodeReply(LocalAnswer::ClusterReplicas, n, V{"CLUSTER", "REPLICAS", "x"}) ==
        "-ERR Unknown node x\r\n");
  CHECK(oneNodeReply(LocalAnswer::ClusterRefused, n, V{"CLUSTER", "meet", "a", "1"})
            .rfind("-ERR Larder: CLUSTER MEET is not supported", 0) == 0);
}
