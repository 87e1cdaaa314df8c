#pragma once
// Where one client request goes in a cluster, decided from the registry row
// and Redis' key specs alone (no I/O):
//
//   GET k, EVAL s 2 {u}a {u}b   -> Slot: the slot of its keys (all in one slot)
//   RENAME a b (two slots)      -> CrossSlot: Redis' CROSSSLOT error
//   MGET a b c, DEL, EXISTS ... -> Split: one request per slot, replies merged
//   KEYS, DBSIZE, FLUSHALL ...  -> AllPrimaries: every primary, replies merged
//   SCAN c                      -> Scan: the shard the cursor names
//   PING-less keyless: TIME     -> Keyless: any node (the owner of slot 0)
//   CLUSTER SLOTS, READONLY ... -> Local: Larder answers as a one-node cluster
//
// A pinned request (MULTI, WATCH, blocking, pub/sub) uses only the slot.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "larder/commands/keys.hpp"
#include "larder/commands/registry.hpp"

namespace larder::cluster {

// How the replies of several nodes become one.
enum class Merge : std::uint8_t {
  None,
  MGet,          // arrays put back in key order
  AllOk,         // +OK when every part says so (MSET, FLUSHALL, SCRIPT FLUSH, CONFIG SET)
  Sum,           // integers added (DEL UNLINK EXISTS TOUCH DBSIZE)
  Concat,        // arrays joined (KEYS)
  First,         // the first reply unless a part failed (SCRIPT LOAD, FUNCTION LOAD)
  ScriptExists,  // 1 where every node has the script
  Info,          // the first node's INFO with the keyspace lines added up
  OneSucceeded,  // +OK when some part says so, else the first error (SCRIPT KILL, FUNCTION KILL)
};

// What Larder answers itself in cluster mode.
enum class LocalAnswer : std::uint8_t {
  None,
  Ok,  // READONLY, READWRITE, ASKING: connection state of a cluster client, no effect here
  ClusterSlots,
  ClusterShards,
  ClusterNodes,
  ClusterInfo,
  ClusterMyId,
  ClusterKeySlot,
  ClusterReplicas,  // CLUSTER REPLICAS/SLAVES <id>: the one node has none
  ClusterRefused,   // operator subcommands (MEET, FAILOVER, SETSLOT, ...)
  TrackingRefused,  // CLIENT TRACKING and friends: one node's view only
};

struct Plan {
  enum class Kind : std::uint8_t { Slot, Keyless, Split, AllPrimaries, Scan, CrossSlot, Local };
  Kind kind = Kind::Keyless;
  int slot = -1;        // Slot
  int first_slot = -1;  // the first key's slot, whatever the kind (pins bind to it)
  Merge merge = Merge::None;
  LocalAnswer local = LocalAnswer::None;
  bool readonly = false;  // safe to resend after a lost connection, or to a replica
};

// `command` null: a command Redis 7.0 does not know (keyless for us).
// `keys` is scratch space for the key positions.
Plan planRequest(const commands::Command* command, std::span<const std::string_view> args,
                 std::vector<commands::KeyRef>& keys);

// The slot of each key argument of a split command (MGET, MSET, DEL, UNLINK,
// EXISTS, TOUCH), one request per slot with the keys (and MSET values) in
// their order; `positions` says which keys of the original each part holds.
struct Part {
  int slot;
  std::vector<std::uint32_t> positions;  // key indexes (0-based) in the original request
  std::string request;                   // RESP multibulk
};
std::vector<Part> splitRequest(Merge merge, std::span<const std::string_view> args);

}  // namespace larder::cluster
