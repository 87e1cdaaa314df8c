#pragma once
// How Larder presents a cluster to cluster-aware clients: as a one-node
// cluster that owns every slot, the node being the address the client
// connected to. A cluster client then sends everything to Larder, which
// routes it (docs/cluster.md, "Cluster-aware clients"). Pure.
//
//   CLUSTER SLOTS   -> [[0, 16383, [host, port, id, {}]]]
//   CLUSTER SHARDS  -> [{slots: [0, 16383], nodes: [{id, port, ip, endpoint, role: master ...}]}]
//   CLUSTER NODES   -> "<id> host:port@0 myself,master - 0 0 1 connected 0-16383\n"
//   CLUSTER INFO    -> cluster_state:ok when Larder knows an owner for every slot
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "larder/cluster/request_plan.hpp"

namespace larder::cluster {

struct OneNode {
  std::string host;
  std::uint16_t port = 0;
  std::string id;       // 40 hex digits, from the address
  int slots_known = 0;  // slots with an owner in Larder's map
};

// The node as seen on a connection whose local address is "host:port".
OneNode oneNodeAt(std::string_view local_address, int slots_known);

// The reply to a LocalAnswer (request_plan.hpp); args are the request's.
std::string oneNodeReply(LocalAnswer answer, const OneNode& node,
                         std::span<const std::string_view> args);

}  // namespace larder::cluster
