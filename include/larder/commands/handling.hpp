#pragma once
// Larder's column of the command registry: what the proxy does with each
// command. Redis' facts (arity, flags, key specs) are the other columns
// (redis_commands.hpp); the two are joined once, in registry.cpp, and every
// stage of the request path reads the joined row. Pure data.
#include <cstdint>
#include <string_view>

namespace larder::commands {

enum class Route : std::uint8_t {
  Forward,      // pass-through on the session's current backend connection
  Local,        // answered by Larder itself (LocalCommand says which)
  Transaction,  // MULTI, WATCH: a pinned connection until EXEC/DISCARD/UNWATCH
  PubSub,       // SUBSCRIBE family: pinned, frames stream straight to the client
  Blocking,     // pinned for the call (BLPOP, WAIT; XREAD/XREADGROUP only with BLOCK)
  Sticky,       // changes connection state for good (CLIENT TRACKING): pinned until RESET
  Refused,      // not through the proxy: an error reply, the connection stays
  OutOfBand,    // SCRIPT KILL, FUNCTION KILL: a connection no busy script holds up
};

enum class LocalCommand : std::uint8_t {
  None,
  Ping,
  Echo,
  Quit,
  Reset,
  Hello,
  Auth,
  Select,
  Info,
  Client,   // CLIENT ID/INFO/LIST/KILL/REPLY/PAUSE...: Larder's clients, not Redis'
  Monitor,  // MONITOR: Larder's own feed of what its clients send
  Exec,
  Discard,
  Unwatch,
  Larder,    // LARDER FLUSH | PENDING | DEADLETTERS | RELOAD | STATS | ...
  FlushAll,  // FLUSHALL / FLUSHDB: pending writes first when keyspaces exist
  Acl,       // ACL WHOAMI answered here; the rest depends on `users:`
};

// A read of a mapped key that goes through the Loader on a miss.
enum class ReadKind : std::uint8_t {
  None,
  Get,
  GetEx,
  MGet,
  Exists,
  Ttl,
  PTtl,
  HGet,
  HMGet,
  HGetAll,
  HExists,
  HLen,
  HKeys,
  HVals,
};

// A write to a mapped key that goes through the write path (docs/writes.md).
enum class WriteOp : std::uint8_t {
  None,
  Set,
  SetEx,   // SETEX
  PSetEx,  // PSETEX
  GetSet,
  GetDel,
  MSet,
  Del,  // DEL, UNLINK
  HSet,
  HMSet,
  HDel,
  Expire,  // EXPIRE PEXPIRE EXPIREAT PEXPIREAT PERSIST: the cache TTL only
};

// How a reply changes between RESP2 and RESP3 (resp/resp3_commands.cpp picks
// the shape, some from the arguments).
enum class ReplyShape : std::uint8_t {
  Keep,
  AclUser,
  AclLog,
  Mpop,
  BlockingPop,
  Verbatim,
  TrackingInfo,
  Command,  // COMMAND [INFO | DOCS | GETKEYSANDFLAGS]
  Map,
  Maps,
  Set,
  Double,
  Doubles,
  FunctionList,
  FunctionStats,
  GeoPos,
  GeoRadius,
  GeoRadiusByMember,
  GeoSearch,
  HRandField,
  LatencyHistogram,
  Lcs,
  MemoryStats,
  SPop,
  StreamInfo,
  StreamsMap,
  ZAdd,
  ZSetOperation,  // ZUNION ZINTER ZDIFF: WITHSCORES after the keys
  ZPop,
  ZRandMember,
  ZRange,
  ZRank,
};

// Pub/sub channels among the arguments, as Redis 7.0 checks them for ACL
// (its commands_with_channels table; UNSUBSCRIBE and PUBSUB are not checked).
struct Channels {
  std::uint8_t first = 0;  // 0: none
  bool only_first = false;
  bool patterns = false;
};

// Checks a command needs beyond its key specs before it may run.
enum class Guard : std::uint8_t {
  None,
  WithKeyspaces,  // refused while keyspaces exist: its effect on keys cannot be seen
  ConfigSet,      // CONFIG SET of Redis' persistence or eviction
  MoveDb,         // MOVE key db: the key lands in another db
  CopyDb,         // COPY src dst DB n: likewise
};

struct Handling {
  Route route = Route::Forward;
  LocalCommand local = LocalCommand::None;
  ReadKind read = ReadKind::None;
  WriteOp write = WriteOp::None;
  bool near_fast = false;  // the near cache answers it in the session (GET, HGETALL)
  ReplyShape reply = ReplyShape::Keep;
  Channels channels{};
  Guard guard = Guard::None;
  // EVAL, EVALSHA, FCALL and their _RO forms: may keep Redis busy past its
  // busy-reply threshold (server/script_watch.hpp).
  bool script = false;
  // Redis' may-replicate flag, which COMMAND does not show: CLIENT PAUSE
  // WRITE holds these as it holds writes.
  bool may_replicate = false;
  // Route::Refused, or Guard::WithKeyspaces: why, for the error reply.
  std::string_view refusal{};
};

class HandlingBuilder;

// Fills Larder's column (src/commands/handling.cpp); run once, when the
// registry is built. Every name it uses must exist in Redis' rows.
void describeHandling(HandlingBuilder& b);

}  // namespace larder::commands
