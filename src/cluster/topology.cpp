// CLUSTER SHARDS parsing and the two-node agreement rule (topology.hpp).
#include "larder/cluster/topology.hpp"

#include <algorithm>
#include <charconv>

#include "larder/redis/slot.hpp"
#include "larder/resp/reply_value.hpp"

namespace larder::cluster {

namespace {

using resp::ReplyValue;

// A RESP2 map is a flat array of name, value pairs.
const ReplyValue* field(const ReplyValue& map, std::string_view name) {
  if (!map.isArray()) return nullptr;
  for (std::size_t i = 0; i + 1 < map.elements.size(); i += 2) {
    const ReplyValue& key = map.elements[i];
    if (key.type == ReplyValue::Type::Bulk && key.text == name) return &map.elements[i + 1];
  }
  return nullptr;
}

std::string text(const ReplyValue* v) {
  if (v == nullptr) return {};
  if (v->type == ReplyValue::Type::Integer) return std::to_string(v->integer);
  return v->text;
}

long long number(const ReplyValue* v) {
  if (v == nullptr) return -1;
  if (v->type == ReplyValue::Type::Integer) return v->integer;
  long long out = -1;
  const std::string& s = v->text;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size() ? out : -1;
}

std::string parseNode(const ReplyValue& v, const config::Endpoint& from, bool tls, NodeInfo& out) {
  if (!v.isArray()) return "a node is not a map";
  out.id = text(field(v, "id"));
  std::string host = text(field(v, "endpoint"));
  if (host.empty() || host == "?") host = text(field(v, "ip"));
  if (host.empty() || host == "?") host = from.host;
  const long long port = number(field(v, tls ? "tls-port" : "port"));
  if (port <= 0 || port > 65535) {
    return "node " + out.id + " has no " + (tls ? "tls-port" : "port");
  }
  out.address = config::Endpoint{host, static_cast<std::uint16_t>(port)};
  const std::string role = text(field(v, "role"));
  out.primary = role == "master";
  const std::string health = text(field(v, "health"));
  out.failed = health == "fail";
  out.loading = health == "loading";
  return {};
}

std::string parseShard(const ReplyValue& v, const config::Endpoint& from, bool tls, Shard& out) {
  const ReplyValue* slots = field(v, "slots");
  const ReplyValue* nodes = field(v, "nodes");
  if (slots == nullptr || nodes == nullptr || !slots->isArray() || !nodes->isArray()) {
    return "a shard without slots or nodes";
  }
  if (slots->elements.size() % 2 != 0) return "an odd number of slot bounds";
  for (std::size_t i = 0; i < slots->elements.size(); i += 2) {
    const long long lo = number(&slots->elements[i]);
    const long long hi = number(&slots->elements[i + 1]);
    if (lo < 0 || hi < lo || hi >= kSlots) return "a bad slot range";
    out.ranges.emplace_back(static_cast<std::uint16_t>(lo), static_cast<std::uint16_t>(hi));
  }
  std::sort(out.ranges.begin(), out.ranges.end());
  for (const ReplyValue& n : nodes->elements) {
    NodeInfo node;
    if (std::string error = parseNode(n, from, tls, node); !error.empty()) return error;
    out.nodes.push_back(std::move(node));
  }
  // The primary first; a shard whose primary failed and has no promoted
  // replica yet still names the failed primary.
  std::stable_partition(out.nodes.begin(), out.nodes.end(),
                        [](const NodeInfo& n) { return n.primary; });
  if (out.nodes.empty() || !out.nodes.front().primary) return "a shard without a primary";
  return {};
}

// Every assigned range with its owner's address, by first slot, adjacent
// ranges of one owner merged: two maps assign alike when these are equal.
struct Owned {
  int lo;
  int hi;
  std::string owner;
  bool operator==(const Owned&) const = default;
};

std::vector<Owned> assignment(const Topology& t) {
  std::vector<Owned> ranges;
  for (const Shard& s : t.shards) {
    const NodeInfo* p = s.primary();
    if (p == nullptr) continue;
    const std::string owner = p->address.toString();
    for (auto [lo, hi] : s.ranges) ranges.push_back({lo, hi, owner});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Owned& a, const Owned& b) { return a.lo < b.lo; });
  std::vector<Owned> merged;
  for (Owned& r : ranges) {
    if (!merged.empty() && merged.back().owner == r.owner && merged.back().hi + 1 == r.lo) {
      merged.back().hi = r.hi;
    } else {
      merged.push_back(std::move(r));
    }
  }
  return merged;
}

}  // namespace

const NodeInfo* Shard::primary() const {
  return !nodes.empty() && nodes.front().primary ? &nodes.front() : nullptr;
}

std::size_t Topology::nodeCount() const {
  std::size_t n = 0;
  for (const Shard& s : shards) n += s.nodes.size();
  return n;
}

int Topology::coveredSlots() const {
  int n = 0;
  for (const Shard& s : shards) {
    for (auto [lo, hi] : s.ranges) n += hi - lo + 1;
  }
  return n;
}

std::string Topology::describe() const {
  std::size_t primaries = 0;
  for (const Shard& s : shards) primaries += s.primary() ? 1 : 0;
  std::string out = std::to_string(primaries) + " primaries, " +
                    std::to_string(nodeCount() - primaries) + " replicas, " +
                    std::to_string(coveredSlots()) + "/" + std::to_string(kSlots) + " slots";
  const char* sep = ": ";
  for (const Shard& s : shards) {
    const NodeInfo* p = s.primary();
    if (p == nullptr) continue;
    out += sep + p->address.toString() + (p->failed ? " (failed)" : "");
    sep = ", ";
    if (s.ranges.empty()) out += " no slots";
    for (std::size_t i = 0; i < s.ranges.size(); ++i) {
      out += (i ? "," : " ") + std::to_string(s.ranges[i].first);
      if (s.ranges[i].second != s.ranges[i].first) out += "-" + std::to_string(s.ranges[i].second);
    }
    for (std::size_t i = 1; i < s.nodes.size(); ++i) {
      out += (i == 1 ? " (replica " : ", ") + s.nodes[i].address.toString() +
             (s.nodes[i].failed ? " failed" : "");
    }
    if (s.nodes.size() > 1) out += ")";
  }
  return out;
}

std::string parseShards(std::string_view frame, const config::Endpoint& from, bool tls,
                        Topology& out) {
  out.shards.clear();
  ReplyValue v;
  if (!resp::decodeReply(frame, v)) return "CLUSTER SHARDS: a malformed reply";
  if (v.isError()) return "CLUSTER SHARDS: " + v.text;
  if (!v.isArray()) return "CLUSTER SHARDS: not an array";
  for (const ReplyValue& s : v.elements) {
    Shard shard;
    if (std::string error = parseShard(s, from, tls, shard); !error.empty()) {
      return "CLUSTER SHARDS: " + error;
    }
    out.shards.push_back(std::move(shard));
  }
  std::stable_sort(out.shards.begin(), out.shards.end(), [](const Shard& a, const Shard& b) {
    const int fa = a.firstSlot(), fb = b.firstSlot();
    if ((fa < 0) != (fb < 0)) return fb < 0;  // shards without slots last
    return fa < fb;
  });
  return {};
}

bool sameSlots(const Topology& a, const Topology& b) { return assignment(a) == assignment(b); }

TopologyVote::TopologyVote(std::vector<config::Endpoint> candidates, std::size_t max_asks)
    : candidates_(std::move(candidates)), max_asks_(max_asks) {}

std::optional<config::Endpoint> TopologyVote::next() {
  if (over()) return std::nullopt;
  return candidates_[asked_++];
}

bool TopologyVote::over() const {
  return agreed_.has_value() || asked_ >= candidates_.size() || asked_ >= max_asks_;
}

void TopologyVote::answer(const config::Endpoint& from, std::optional<Topology> topology) {
  if (!topology || agreed_) return;
  // Nodes the answer names are asked too (a seed list may hold one node).
  for (const Shard& s : topology->shards) {
    for (const NodeInfo& n : s.nodes) {
      if (n.failed) continue;
      if (std::find(candidates_.begin(), candidates_.end(), n.address) == candidates_.end()) {
        candidates_.push_back(n.address);
      }
    }
  }
  for (const auto& [who, earlier] : answers_) {
    if (!(who == from) && sameSlots(earlier, *topology)) {
      agreed_ = std::move(*topology);
      return;
    }
  }
  // A cluster of one node has nobody else to ask.
  if (topology->nodeCount() == 1) {
    agreed_ = std::move(*topology);
    return;
  }
  answers_.emplace_back(from, std::move(*topology));
}

}  // namespace larder::cluster
