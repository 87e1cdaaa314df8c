// Request planning for a cluster (request_plan.hpp): one table lookup by
// command id says what is special about a command; everything else is decided
// by the slots of its keys, as Redis' getNodeByQuery does.
#include "larder/cluster/request_plan.hpp"

#include <array>
#include <charconv>

#include "larder/redis/slot.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cluster {

namespace {

using commands::Command;
using commands::CommandId;
using commands::equalsLower;
using commands::Registry;

enum class Role : std::uint8_t {
  Plain,
  Split,         // MGET MSET DEL UNLINK EXISTS TOUCH: with Merge
  AllPrimaries,  // with Merge
  Info,          // every primary when the keyspace section is asked for
  Scan,
  ShardChannel,   // SPUBLISH: the channel is args[1]
  ShardChannels,  // SSUBSCRIBE, SUNSUBSCRIBE: every argument is a channel
  SlotArgument,   // CLUSTER COUNTKEYSINSLOT/GETKEYSINSLOT: args[2] is a slot
  Local,          // with LocalAnswer
};

struct Row {
  Role role = Role::Plain;
  Merge merge = Merge::None;
  LocalAnswer local = LocalAnswer::None;
};

using Table = std::array<Row, commands::kMaxCommands>;

const Table& table() {
  static const Table rows = [] {
    Table t{};
    const Registry& r = Registry::get();
    auto set = [&](std::string_view name, Row row) {
      const Command* c = r.find(name);
      if (c != nullptr) t[c->id] = row;
    };
    set("mget", {Role::Split, Merge::MGet});
    set("mset", {Role::Split, Merge::AllOk});
    for (auto n : {"del", "unlink", "exists", "touch"}) set(n, {Role::Split, Merge::Sum});
    set("keys", {Role::AllPrimaries, Merge::Concat});
    set("dbsize", {Role::AllPrimaries, Merge::Sum});
    for (auto n : {"flushall", "flushdb", "script|flush", "function|delete", "function|flush",
                   "function|restore", "config|set", "config|resetstat"}) {
      set(n, {Role::AllPrimaries, Merge::AllOk});
    }
    set("script|load", {Role::AllPrimaries, Merge::First});
    set("function|load", {Role::AllPrimaries, Merge::First});
    set("script|exists", {Role::AllPrimaries, Merge::ScriptExists});
    // Only the node running the script can kill it; the others say NOTBUSY.
    set("script|kill", {Role::AllPrimaries, Merge::OneSucceeded});
    set("function|kill", {Role::AllPrimaries, Merge::OneSucceeded});
    set("info", {Role::Info, Merge::Info});
    set("scan", {Role::Scan});
    set("spublish", {Role::ShardChannel});
    set("ssubscribe", {Role::ShardChannels});
    set("sunsubscribe", {Role::ShardChannels});
    set("cluster|countkeysinslot", {Role::SlotArgument});
    set("cluster|getkeysinslot", {Role::SlotArgument});
    for (auto n : {"readonly", "readwrite", "asking"}) set(n, {Role::Local, {}, LocalAnswer::Ok});
    set("cluster|slots", {Role::Local, {}, LocalAnswer::ClusterSlots});
    set("cluster|shards", {Role::Local, {}, LocalAnswer::ClusterShards});
    set("cluster|nodes", {Role::Local, {}, LocalAnswer::ClusterNodes});
    set("cluster|info", {Role::Local, {}, LocalAnswer::ClusterInfo});
    set("cluster|myid", {Role::Local, {}, LocalAnswer::ClusterMyId});
    set("cluster|keyslot", {Role::Local, {}, LocalAnswer::ClusterKeySlot});
    set("cluster|replicas", {Role::Local, {}, LocalAnswer::ClusterReplicas});
    set("cluster|slaves", {Role::Local, {}, LocalAnswer::ClusterReplicas});
    for (auto n : {"cluster|addslots", "cluster|addslotsrange", "cluster|bumpepoch",
                   "cluster|count-failure-reports", "cluster|delslots", "cluster|delslotsrange",
                   "cluster|failover", "cluster|flushslots", "cluster|forget", "cluster|links",
                   "cluster|meet", "cluster|replicate", "cluster|reset", "cluster|saveconfig",
                   "cluster|set-config-epoch", "cluster|setslot"}) {
      set(n, {Role::Local, {}, LocalAnswer::ClusterRefused});
    }
    set("client|tracking", {Role::Local, {}, LocalAnswer::TrackingRefused});
    set("client|caching", {Role::Local, {}, LocalAnswer::TrackingRefused});
    return t;
  }();
  return rows;
}

bool infoWantsKeyspace(std::span<const std::string_view> args) {
  if (args.size() == 1) return true;
  for (std::size_t i = 1; i < args.size(); ++i) {
    for (auto s : {"keyspace", "all", "everything", "default"}) {
      if (equalsLower(args[i], s)) return true;
    }
  }
  return false;
}

// Slot of every argument from `first` on; CrossSlot when they differ.
Plan sameSlot(std::span<const std::string_view> args, std::size_t first, std::size_t last) {
  Plan plan;
  for (std::size_t i = first; i < last && i < args.size(); ++i) {
    const int slot = keySlot(args[i]);
    if (plan.kind == Plan::Kind::Keyless) {
      plan.kind = Plan::Kind::Slot;
      plan.slot = plan.first_slot = slot;
    } else if (slot != plan.slot) {
      plan.kind = Plan::Kind::CrossSlot;
      plan.slot = -1;
      return plan;
    }
  }
  return plan;
}

}  // namespace

Plan planRequest(const Command* command, std::span<const std::string_view> args,
                 std::vector<commands::KeyRef>& keys) {
  if (command == nullptr) return Plan{};
  const Row& row = table()[command->id];
  Plan plan;
  plan.readonly = command->flag(commands::kReadonly) && !command->flag(commands::kWrite);
  switch (row.role) {
    case Role::Local:
      plan.kind = Plan::Kind::Local;
      plan.local = row.local;
      return plan;
    case Role::AllPrimaries:
      plan.kind = Plan::Kind::AllPrimaries;
      plan.merge = row.merge;
      return plan;
    case Role::Info:
      if (infoWantsKeyspace(args)) {
        plan.kind = Plan::Kind::AllPrimaries;
        plan.merge = row.merge;
      }
      return plan;
    case Role::Scan:
      plan.kind = Plan::Kind::Scan;
      return plan;
    case Role::ShardChannel: {
      Plan p = sameSlot(args, 1, 2);
      p.readonly = plan.readonly;
      return p;
    }
    case Role::ShardChannels: {
      Plan p = sameSlot(args, 1, args.size());
      p.readonly = plan.readonly;
      return p;
    }
    case Role::SlotArgument: {
      // A bad slot number gets the node's own error, from any node.
      int slot = -1;
      if (args.size() > 2) {
        const std::string_view s = args[2];
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), slot);
        if (ec != std::errc() || end != s.data() + s.size()) slot = -1;
      }
      if (slot >= 0 && slot < kSlots) {
        plan.kind = Plan::Kind::Slot;
        plan.slot = plan.first_slot = slot;
      }
      return plan;
    }
    case Role::Split:
    case Role::Plain:
      break;
  }
  commands::findKeys(*command, args, keys);
  for (const commands::KeyRef& k : keys) {
    const int slot = keySlot(args[k.pos]);
    if (plan.kind == Plan::Kind::Keyless) {
      plan.kind = Plan::Kind::Slot;
      plan.slot = plan.first_slot = slot;
    } else if (slot != plan.slot) {
      // MSET with a key but no value: the node's arity error, not a split.
      const bool odd_mset = row.merge == Merge::AllOk && args.size() % 2 == 0;
      if (row.role == Role::Split && odd_mset) return plan;
      plan.kind = row.role == Role::Split ? Plan::Kind::Split : Plan::Kind::CrossSlot;
      plan.merge = row.merge;
      plan.slot = -1;
      return plan;
    }
  }
  return plan;
}

std::vector<Part> splitRequest(Merge merge, std::span<const std::string_view> args) {
  // MSET's keys are every other argument, each followed by its value.
  const std::size_t step = merge == Merge::AllOk ? 2 : 1;
  std::vector<Part> parts;
  std::vector<std::vector<std::string_view>> part_args;
  std::uint32_t index = 0;
  for (std::size_t i = 1; i + step - 1 < args.size(); i += step, ++index) {
    const int slot = keySlot(args[i]);
    std::size_t p = 0;
    while (p < parts.size() && parts[p].slot != slot) ++p;
    if (p == parts.size()) {
      parts.push_back(Part{slot, {}, {}});
      part_args.push_back({args[0]});
    }
    parts[p].positions.push_back(index);
    for (std::size_t j = 0; j < step; ++j) part_args[p].push_back(args[i + j]);
  }
  for (std::size_t p = 0; p < parts.size(); ++p)
    resp::appendMultibulk(parts[p].request, part_args[p]);
  return parts;
}

}  // namespace larder::cluster
