// Larder's column of the command registry: every command the proxy treats
// other than as a plain pass-through. Everything not named here is derived
// from Redis' own rows where it is used: blocking commands from the `blocking`
// flag, what a command may do to a mapped or reserved key from its key specs
// and ACL categories (docs/keyspaces.md).
#include "larder/commands/registry.hpp"

namespace larder::commands {

namespace {

void local(HandlingBuilder& b, std::string_view name, LocalCommand which) {
  b[name].route = Route::Local;
  b[name].local = which;
}

void refused(HandlingBuilder& b, std::string_view name, std::string_view why) {
  b[name].route = Route::Refused;
  b[name].refusal = why;
}

void reply(HandlingBuilder& b, std::initializer_list<std::string_view> names, ReplyShape shape) {
  for (auto n : names) b[n].reply = shape;
}

}  // namespace

void describeHandling(HandlingBuilder& b) {
  // ------------------------------------------------------------ answered here
  local(b, "ping", LocalCommand::Ping);
  local(b, "echo", LocalCommand::Echo);
  local(b, "quit", LocalCommand::Quit);
  local(b, "reset", LocalCommand::Reset);
  local(b, "hello", LocalCommand::Hello);
  local(b, "auth", LocalCommand::Auth);
  local(b, "select", LocalCommand::Select);
  local(b, "info", LocalCommand::Info);
  local(b, "exec", LocalCommand::Exec);
  local(b, "discard", LocalCommand::Discard);
  local(b, "unwatch", LocalCommand::Unwatch);
  local(b, "larder", LocalCommand::Larder);
  local(b, "flushall", LocalCommand::FlushAll);
  local(b, "flushdb", LocalCommand::FlushAll);
  // The session's own name, id, info and reply mode, and Larder's clients
  // (LIST, KILL, PAUSE): Redis' clients are Larder's backend connections.
  // CLIENT alone or with a subcommand Redis 7.0 does not have (SETINFO, sent
  // by newer client libraries) is looked at here too.
  for (auto n : {"client", "client|setname", "client|getname", "client|id", "client|info",
                 "client|list", "client|kill", "client|reply", "client|no-evict", "client|pause",
                 "client|unpause", "client|unblock"}) {
    local(b, n, LocalCommand::Client);
  }
  local(b, "monitor", LocalCommand::Monitor);
  // ACL: WHOAMI and, with `users:`, everything (acl_session.cpp decides).
  local(b, "acl", LocalCommand::Acl);
  b.eachSubcommand("acl", [](Handling& h) {
    h.route = Route::Local;
    h.local = LocalCommand::Acl;
  });

  // ------------------------------------------------------- pinned connections
  b["multi"].route = Route::Transaction;
  b["watch"].route = Route::Transaction;
  for (auto n :
       {"subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"}) {
    b[n].route = Route::PubSub;
  }
  // WAIT has no `blocking` flag in Redis 7.0, yet blocks its connection.
  b["wait"].route = Route::Blocking;
  for (auto n : {"client|tracking", "client|caching", "client|trackinginfo", "client|getredir"}) {
    b[n].route = Route::Sticky;
  }

  // ---------------------------------------------------------------- refused
  // Replication and shutdown belong to the operator, on Redis itself.
  for (auto n : {"sync", "psync", "replconf", "shutdown", "replicaof", "slaveof", "failover"}) {
    refused(b, n, {});  // "<NAME> is not supported through the proxy"
  }

  // ------------------------------------------------------------ scripts
  // A busy script holds up the connection it runs on; killing it must not
  // queue behind it (docs/compatibility.md, "Busy scripts").
  b["script|kill"].route = Route::OutOfBand;
  b["function|kill"].route = Route::OutOfBand;
  for (auto n : {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"}) {
    b[n].script = true;
  }
  // Redis 7.0's CMD_MAY_REPLICATE (src/commands.c), not in COMMAND's flags.
  for (auto n : {"eval", "evalsha", "fcall", "publish", "spublish", "pfcount"}) {
    b[n].may_replicate = true;
  }
  // With keyspaces: their effect on Larder's keys cannot be seen from their
  // arguments (docs/keyspaces.md, "Refused while keyspaces exist").
  b["swapdb"].guard = Guard::WithKeyspaces;
  b["swapdb"].refusal = "it would swap Larder's cached keys and write queues with another db";
  b["debug"].guard = Guard::WithKeyspaces;
  b["debug"].refusal = "DEBUG RELOAD and friends would replay or drop Larder's write queues";
  b["config|set"].guard = Guard::ConfigSet;
  b["move"].guard = Guard::MoveDb;
  b["copy"].guard = Guard::CopyDb;

  // --------------------------------------------------------------- channels
  b["publish"].channels = {1, true, false};
  b["spublish"].channels = {1, true, false};
  b["subscribe"].channels = {1, false, false};
  b["ssubscribe"].channels = {1, false, false};
  b["psubscribe"].channels = {1, false, true};

  // ------------------------------------------------- mapped keys: reads
  const std::pair<std::string_view, ReadKind> reads[] = {
      {"get", ReadKind::Get},         {"getex", ReadKind::GetEx}, {"mget", ReadKind::MGet},
      {"exists", ReadKind::Exists},   {"ttl", ReadKind::Ttl},     {"pttl", ReadKind::PTtl},
      {"hget", ReadKind::HGet},       {"hmget", ReadKind::HMGet}, {"hgetall", ReadKind::HGetAll},
      {"hexists", ReadKind::HExists}, {"hlen", ReadKind::HLen},   {"hkeys", ReadKind::HKeys},
      {"hvals", ReadKind::HVals}};
  for (const auto& [name, kind] : reads) b[name].read = kind;
  b["get"].near_fast = true;
  b["hgetall"].near_fast = true;

  // ------------------------------------------------ mapped keys: writes
  const std::pair<std::string_view, WriteOp> writes[] = {
      {"set", WriteOp::Set},        {"setex", WriteOp::SetEx},     {"psetex", WriteOp::PSetEx},
      {"getset", WriteOp::GetSet},  {"getdel", WriteOp::GetDel},   {"mset", WriteOp::MSet},
      {"del", WriteOp::Del},        {"unlink", WriteOp::Del},      {"hset", WriteOp::HSet},
      {"hmset", WriteOp::HMSet},    {"hdel", WriteOp::HDel},       {"expire", WriteOp::Expire},
      {"pexpire", WriteOp::Expire}, {"expireat", WriteOp::Expire}, {"pexpireat", WriteOp::Expire},
      {"persist", WriteOp::Expire}};
  for (const auto& [name, op] : writes) b[name].write = op;

  // --------------------------------------------------- RESP3 reply shapes
  // Read off redis-server 7.0's replies; tests/integration/test_resp3.py
  // compares every one with a real redis-server.
  reply(b, {"acl|getuser"}, ReplyShape::AclUser);
  reply(b, {"acl|log"}, ReplyShape::AclLog);
  reply(b, {"bzmpop", "zmpop"}, ReplyShape::Mpop);
  reply(b, {"bzpopmax", "bzpopmin"}, ReplyShape::BlockingPop);
  reply(b,
        {"client|info", "client|list", "cluster|info", "cluster|nodes", "info", "latency|doctor",
         "latency|graph", "lolwut", "memory|doctor", "memory|malloc-stats"},
        ReplyShape::Verbatim);
  reply(b, {"client|trackinginfo"}, ReplyShape::TrackingInfo);
  reply(b, {"command", "command|info", "command|docs", "command|getkeysandflags"},
        ReplyShape::Command);
  reply(b, {"config|get", "hello", "hgetall"}, ReplyShape::Map);
  reply(b, {"function|list"}, ReplyShape::FunctionList);
  reply(b, {"function|stats"}, ReplyShape::FunctionStats);
  reply(b, {"geopos"}, ReplyShape::GeoPos);
  reply(b, {"georadius", "georadius_ro"}, ReplyShape::GeoRadius);
  reply(b, {"georadiusbymember", "georadiusbymember_ro"}, ReplyShape::GeoRadiusByMember);
  reply(b, {"geosearch"}, ReplyShape::GeoSearch);
  reply(b, {"hrandfield"}, ReplyShape::HRandField);
  reply(b, {"latency|histogram"}, ReplyShape::LatencyHistogram);
  reply(b, {"lcs"}, ReplyShape::Lcs);
  reply(b, {"memory|stats"}, ReplyShape::MemoryStats);
  reply(b, {"module|list", "xinfo|consumers", "xinfo|groups"}, ReplyShape::Maps);
  reply(b, {"sdiff", "sinter", "smembers", "sunion"}, ReplyShape::Set);
  reply(b, {"spop"}, ReplyShape::SPop);
  reply(b, {"xinfo|stream"}, ReplyShape::StreamInfo);
  reply(b, {"xread", "xreadgroup"}, ReplyShape::StreamsMap);
  reply(b, {"zadd"}, ReplyShape::ZAdd);
  reply(b, {"zdiff", "zinter", "zunion"}, ReplyShape::ZSetOperation);
  reply(b, {"zincrby", "zscore"}, ReplyShape::Double);
  reply(b, {"zmscore"}, ReplyShape::Doubles);
  reply(b, {"zpopmax", "zpopmin"}, ReplyShape::ZPop);
  reply(b, {"zrandmember"}, ReplyShape::ZRandMember);
  reply(b, {"zrange", "zrangebyscore", "zrevrange", "zrevrangebyscore"}, ReplyShape::ZRange);
  reply(b, {"zrank", "zrevrank"}, ReplyShape::ZRank);
}

}  // namespace larder::commands
