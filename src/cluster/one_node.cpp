#include "larder/cluster/one_node.hpp"

#include <charconv>

#include "larder/common/errors.hpp"
#include "larder/redis/slot.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::cluster {

namespace {

// FNV-1a, seeded: three of them make the 40 hex digits of a node id that is
// the same for the same address, run after run.
std::uint64_t fnv(std::string_view s, std::uint64_t seed) {
  std::uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string hex(std::uint64_t v, int digits) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(static_cast<std::size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) out[static_cast<std::size_t>(i)] = kDigits[v & 15];
  return out;
}

std::string address(const OneNode& n) {
  return n.host.find(':') != std::string::npos ? "[" + n.host + "]:" + std::to_string(n.port)
                                               : n.host + ":" + std::to_string(n.port);
}

std::string slots(const OneNode& n) {
  std::string out;
  resp::appendArrayHeader(out, 1);
  resp::appendArrayHeader(out, 3);
  resp::appendInteger(out, 0);
  resp::appendInteger(out, kSlots - 1);
  resp::appendArrayHeader(out, 4);
  resp::appendBulk(out, n.host);
  resp::appendInteger(out, n.port);
  resp::appendBulk(out, n.id);
  resp::appendArrayHeader(out, 0);  // no further endpoints (a map in RESP3)
  return out;
}

std::string shards(const OneNode& n) {
  std::string out;
  resp::appendArrayHeader(out, 1);
  resp::appendArrayHeader(out, 4);
  resp::appendBulk(out, "slots");
  resp::appendArrayHeader(out, 2);
  resp::appendInteger(out, 0);
  resp::appendInteger(out, kSlots - 1);
  resp::appendBulk(out, "nodes");
  resp::appendArrayHeader(out, 1);
  resp::appendArrayHeader(out, 14);
  resp::appendBulk(out, "id");
  resp::appendBulk(out, n.id);
  resp::appendBulk(out, "port");
  resp::appendInteger(out, n.port);
  resp::appendBulk(out, "ip");
  resp::appendBulk(out, n.host);
  resp::appendBulk(out, "endpoint");
  resp::appendBulk(out, n.host);
  resp::appendBulk(out, "role");
  resp::appendBulk(out, "master");
  resp::appendBulk(out, "replication-offset");
  resp::appendInteger(out, 0);
  resp::appendBulk(out, "health");
  resp::appendBulk(out, n.slots_known == kSlots ? "online" : "fail");
  return out;
}

std::string nodes(const OneNode& n) {
  std::string out;
  resp::appendBulk(out, n.id + " " + address(n) + "@0 myself,master - 0 0 1 connected 0-" +
                            std::to_string(kSlots - 1) + "\n");
  return out;
}

std::string info(const OneNode& n) {
  const bool ok = n.slots_known == kSlots;
  std::string text =
      std::string("cluster_enabled:1\r\ncluster_state:") + (ok ? "ok" : "fail") +
      "\r\ncluster_slots_assigned:" + std::to_string(kSlots) +
      "\r\ncluster_slots_ok:" + std::to_string(n.slots_known) +
      "\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:" + std::to_string(kSlots - n.slots_known) +
      "\r\ncluster_known_nodes:1\r\ncluster_size:1\r\ncluster_current_epoch:1"
      "\r\ncluster_my_epoch:1\r\ncluster_stats_messages_sent:0"
      "\r\ncluster_stats_messages_received:0"
      "\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n";
  std::string out;
  resp::appendBulk(out, text);
  return out;
}

}  // namespace

OneNode oneNodeAt(std::string_view local_address, int slots_known) {
  OneNode n;
  const std::size_t colon = local_address.rfind(':');
  if (colon != std::string_view::npos) {
    n.host = std::string(local_address.substr(0, colon));
    unsigned port = 0;
    const std::string_view digits = local_address.substr(colon + 1);
    std::from_chars(digits.data(), digits.data() + digits.size(), port);
    n.port = static_cast<std::uint16_t>(port);
  }
  n.id = hex(fnv(local_address, 1), 16) + hex(fnv(local_address, 2), 16) +
         hex(fnv(local_address, 3), 8);
  n.slots_known = slots_known;
  return n;
}

std::string oneNodeReply(LocalAnswer answer, const OneNode& node,
                         std::span<const std::string_view> args) {
  std::string out;
  switch (answer) {
    case LocalAnswer::None:
    case LocalAnswer::Ok:
      return "+OK\r\n";
    case LocalAnswer::ClusterSlots:
      return slots(node);
    case LocalAnswer::ClusterShards:
      return shards(node);
    case LocalAnswer::ClusterNodes:
      return nodes(node);
    case LocalAnswer::ClusterInfo:
      return info(node);
    case LocalAnswer::ClusterMyId:
      resp::appendBulk(out, node.id);
      return out;
    case LocalAnswer::ClusterKeySlot:
      resp::appendInteger(out, args.size() > 2 ? keySlot(args[2]) : 0);
      return out;
    case LocalAnswer::ClusterReplicas:
      if (args.size() > 2 && args[2] == node.id) return "*0\r\n";
      return resp::errorReply(errors::unknownNode(args.size() > 2 ? args[2] : ""));
    case LocalAnswer::ClusterRefused:
      return resp::errorReply(errors::clusterRefused(args.size() > 1 ? args[1] : "cluster"));
    case LocalAnswer::TrackingRefused:
      return resp::errorReply(errors::kTrackingOnCluster);
  }
  return "+OK\r\n";
}

}  // namespace larder::cluster
