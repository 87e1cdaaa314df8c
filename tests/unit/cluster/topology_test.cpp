#include "larder/cluster/topology.hpp"

#include <catch2/catch.hpp>

#include "larder/cluster/redirect.hpp"
#include "larder/resp/reply_writer.hpp"

using namespace larder;
using namespace larder::cluster;

namespace {

struct N {
  std::string id;
  int port;
  std::string role;
  std::string health = "online";
  std::string endpoint = "127.0.0.1";
};

// A CLUSTER SHARDS reply as redis-server 7.0 writes it in RESP2.
std::string shards(const std::vector<std::pair<std::vector<int>, std::vector<N>>>& spec) {
  std::string out;
  resp::appendArrayHeader(out, spec.size());
  for (const auto& [slots, nodes] : spec) {
    resp::appendArrayHeader(out, 4);
    resp::appendBulk(out, "slots");
    resp::appendArrayHeader(out, slots.size());
    for (int s : slots) resp::appendInteger(out, s);
    resp::appendBulk(out, "nodes");
    resp::appendArrayHeader(out, nodes.size());
    for (const N& n : nodes) {
      resp::appendArrayHeader(out, 14);
      resp::appendBulk(out, "id");
      resp::appendBulk(out, n.id);
      resp::appendBulk(out, "port");
      resp::appendInteger(out, n.port);
      resp::appendBulk(out, "ip");
      resp::appendBulk(out, "127.0.0.1");
      resp::appendBulk(out, "endpoint");
      resp::appendBulk(out, n.endpoint);
      resp::appendBulk(out, "role");
      resp::appendBulk(out, n.role);
      resp::appendBulk(out, "replication-offset");
      resp::appendInteger(out, 100);
      resp::appendBulk(out, "health");
      resp::appendBulk(out, n.health);
    }
  }
  return out;
}

const config::Endpoint kFrom{"127.0.0.1", 7000};

std::string threeShards(int moved_port = 7001) {
  // Listed as redis-server does: in its node table's order, not by slot.
  return shards({{{5461, 10922}, {{"b", moved_port, "master"}, {"e", 7004, "replica"}}},
                 {{0, 5460}, {{"d", 7003, "replica"}, {"a", 7000, "master"}}},
                 {{10923, 16383}, {{"c", 7002, "master"}, {"f", 7005, "replica", "fail"}}}});
}

}  // namespace

TEST_CASE("CLUSTER SHARDS: shards by first slot, primary first", "[cluster]") {
  Topology t;
  REQUIRE(parseShards(threeShards(), kFrom, false, t).empty());
  REQUIRE(t.shards.size() == 3);
  CHECK(t.shards[0].firstSlot() == 0);
  CHECK(t.shards[0].primary()->address == config::Endpoint{"127.0.0.1", 7000});
  CHECK(t.shards[0].nodes[1].address.port == 7003);
  CHECK_FALSE(t.shards[0].nodes[1].primary);
  CHECK(t.shards[2].nodes[1].failed);
  CHECK(t.nodeCount() == 6);
  CHECK(t.coveredSlots() == 16384);
  CHECK(t.describe() ==
        "3 primaries, 3 replicas, 16384/16384 slots: 127.0.0.1:7000 0-5460 (replica "
        "127.0.0.1:7003), 127.0.0.1:7001 5461-10922 (replica 127.0.0.1:7004), 127.0.0.1:7002 "
        "10923-16383 (replica 127.0.0.1:7005 failed)");
}

TEST_CASE("CLUSTER SHARDS: unknown endpoints, TLS ports, empty shards, bad replies", "[cluster]") {
  Topology t;
  REQUIRE(parseShards(shards({{{}, {{"x", 7009, "master", "online", "?"}}},
                              {{0, 16383}, {{"a", 7000, "master"}}}}),
                      config::Endpoint{"10.0.0.9", 7009}, false, t)
              .empty());
  CHECK(t.shards[0].firstSlot() == 0);  // the shard without slots goes last
  CHECK(t.shards[1].ranges.empty());
  CHECK(t.shards[1].primary()->address.host == "127.0.0.1");  // "?" -> the ip field

  CHECK(parseShards("-ERR This instance has cluster support disabled\r\n", kFrom, false, t) ==
        "CLUSTER SHARDS: ERR This instance has cluster support disabled");
  CHECK_FALSE(parseShards("*1\r\n:1\r\n", kFrom, false, t).empty());
  CHECK_FALSE(parseShards(shards({{{0, 10}, {{"a", 7000, "master"}}}}), kFrom, true, t).empty())
  /* no tls-port */;
  CHECK_FALSE(
      parseShards(shards({{{0, 10, 12}, {{"a", 7000, "master"}}}}), kFrom, false, t).empty());
  CHECK_FALSE(
      parseShards(shards({{{0, 20000}, {{"a", 7000, "master"}}}}), kFrom, false, t).empty());
  CHECK_FALSE(parseShards(shards({{{0, 10}, {{"a", 7000, "replica"}}}}), kFrom, false, t).empty());
}

TEST_CASE("two maps agree when every slot has the same primary address", "[cluster]") {
  Topology a, b, c;
  REQUIRE(parseShards(threeShards(), kFrom, false, a).empty());
  REQUIRE(parseShards(threeShards(), config::Endpoint{"127.0.0.1", 7001}, false, b).empty());
  REQUIRE(parseShards(threeShards(7009), kFrom, false, c).empty());
  CHECK(sameSlots(a, b));
  CHECK_FALSE(sameSlots(a, c));
  // A range split in two by the same owner is the same assignment.
  Topology d;
  REQUIRE(parseShards(shards({{{0, 99, 100, 16383}, {{"a", 7000, "master"}}}}), kFrom, false, d)
              .empty());
  Topology e;
  REQUIRE(parseShards(shards({{{0, 16383}, {{"a", 7000, "master"}}}}), kFrom, false, e).empty());
  CHECK(sameSlots(d, e));
}

TEST_CASE("a vote needs two nodes that agree; nodes named in answers are asked", "[cluster]") {
  Topology a, b, c;
  REQUIRE(parseShards(threeShards(), kFrom, false, a).empty());
  REQUIRE(parseShards(threeShards(), kFrom, false, b).empty());
  REQUIRE(parseShards(threeShards(7009), kFrom, false, c).empty());
  TopologyVote vote({config::Endpoint{"127.0.0.1", 7000}});
  auto first = vote.next();
  REQUIRE(first);
  vote.answer(*first, a);
  CHECK_FALSE(vote.agreed());
  // The seed list had one node; the answer names the others (not the failed one).
  auto second = vote.next();
  REQUIRE(second);
  CHECK(second->port == 7003);
  vote.answer(*second, std::nullopt);  // down
  auto third = vote.next();
  REQUIRE(third);
  vote.answer(*third, c);  // disagrees
  CHECK_FALSE(vote.agreed());
  auto fourth = vote.next();
  REQUIRE(fourth);
  vote.answer(*fourth, b);
  REQUIRE(vote.agreed());
  CHECK(sameSlots(vote.topology(), a));
  CHECK(vote.over());
  CHECK_FALSE(vote.next());
}

TEST_CASE("a vote: the same node twice is no agreement; a one-node cluster is", "[cluster]") {
  Topology a;
  REQUIRE(parseShards(threeShards(), kFrom, false, a).empty());
  TopologyVote vote({kFrom, kFrom}, 5);
  vote.answer(*vote.next(), a);
  vote.answer(*vote.next(), a);
  CHECK_FALSE(vote.agreed());

  Topology one;
  REQUIRE(parseShards(shards({{{0, 16383}, {{"a", 7000, "master"}}}}), kFrom, false, one).empty());
  TopologyVote single({kFrom});
  single.answer(*single.next(), one);
  CHECK(single.agreed());

  TopologyVote bounded({kFrom}, 2);
  bounded.answer(*bounded.next(), a);
  bounded.answer(*bounded.next(), std::nullopt);
  CHECK(bounded.over());
  CHECK_FALSE(bounded.next());
}

TEST_CASE("redirects in Redis' words", "[cluster]") {
  Redirect r = classify("-MOVED 3999 127.0.0.1:6381\r\n");
  CHECK(r.kind == Redirect::Kind::Moved);
  CHECK(r.slot == 3999);
  CHECK(r.to == config::Endpoint{"127.0.0.1", 6381});
  r = classify("-ASK 12182 [::1]:7002\r\n");
  CHECK(r.kind == Redirect::Kind::Ask);
  CHECK(r.to == config::Endpoint{"::1", 7002});
  r = classify("-MOVED 1 :7002\r\n");  // a node without a known endpoint
  CHECK(r.kind == Redirect::Kind::Moved);
  CHECK(r.to.host.empty());
  CHECK(classify("-TRYAGAIN Multiple keys request during rehashing of slot\r\n").kind ==
        Redirect::Kind::TryAgain);
  CHECK(classify("-CLUSTERDOWN The cluster is down\r\n").kind == Redirect::Kind::ClusterDown);
  CHECK(classify("-ERR MOVED\r\n").kind == Redirect::Kind::None);
  CHECK(classify("-MOVED x 1.2.3.4:5\r\n").kind == Redirect::Kind::None);
  CHECK(classify("-MOVED 20000 1.2.3.4:5\r\n").kind == Redirect::Kind::None);
  CHECK(classify("$5\r\nMOVED\r\n").kind == Redirect::Kind::None);
  CHECK(classify("").kind == Redirect::Kind::None);
}
