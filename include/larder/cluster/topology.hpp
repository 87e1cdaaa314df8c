#pragma once
// What a cluster node says the cluster looks like: its `CLUSTER SHARDS`
// reply, parsed into shards (slot ranges, a primary and its replicas), and the
// rule by which Larder believes it: two nodes must give the same slot ->
// primary assignment (TopologyVote). Pure.
//
//   CLUSTER SHARDS (RESP2)             Topology
//   *3                                 shards (by first slot)
//     *4 slots [0 5460]                  [0-5460]  primary 127.0.0.1:7000
//        nodes [{id port ip endpoint       replicas 127.0.0.1:7003
//               role health ...}, ...]   [5461-10922] ...
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "larder/config/config.hpp"

namespace larder::cluster {

struct NodeInfo {
  std::string id;
  config::Endpoint address;
  bool primary = false;
  bool failed = false;   // health "fail"
  bool loading = false;  // a replica still syncing (health "loading")
};

struct Shard {
  std::vector<std::pair<std::uint16_t, std::uint16_t>> ranges;  // inclusive, ascending
  std::vector<NodeInfo> nodes;                                  // the primary first

  const NodeInfo* primary() const;
  int firstSlot() const { return ranges.empty() ? -1 : ranges.front().first; }
};

struct Topology {
  std::vector<Shard> shards;  // shards with slots by first slot, then the empty ones

  std::size_t nodeCount() const;
  int coveredSlots() const;
  // For the log and --check-config: "3 primaries, 3 replicas, 16384/16384
  // slots: 127.0.0.1:7000 0-5460 (replica 127.0.0.1:7004), ...".
  std::string describe() const;
};

// Parses a CLUSTER SHARDS reply. `from` is the node asked: a node that does
// not know its own address ("?" or empty) is reachable where it was asked.
// `tls`: nodes are addressed by their tls-port. "" or what is wrong.
std::string parseShards(std::string_view frame, const config::Endpoint& from, bool tls,
                        Topology& out);

// True when both assign every slot to the same primary address.
bool sameSlots(const Topology& a, const Topology& b);

// Which nodes to ask and whether the answers agree: a map is believed when two
// different nodes give the same assignment (or the cluster has one node only).
// At most `max_asks` nodes are asked per vote.
class TopologyVote {
 public:
  explicit TopologyVote(std::vector<config::Endpoint> candidates, std::size_t max_asks = 5);

  // The next node to ask; nullopt when the vote is over or nobody is left.
  std::optional<config::Endpoint> next();
  // The answer of the node next() gave: its map, or nullopt (no answer, an
  // error reply, a reply that does not parse).
  void answer(const config::Endpoint& from, std::optional<Topology> topology);

  bool agreed() const { return agreed_.has_value(); }
  const Topology& topology() const { return *agreed_; }
  // True when no more nodes will be asked (agreed or given up).
  bool over() const;
  std::size_t answers() const { return answers_.size(); }

 private:
  std::vector<config::Endpoint> candidates_;
  std::size_t asked_ = 0;
  std::size_t max_asks_;
  std::vector<std::pair<config::Endpoint, Topology>> answers_;
  std::optional<Topology> agreed_;
};

}  // namespace larder::cluster
