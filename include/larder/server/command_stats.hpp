#pragma once
// Calls and latency per command, for /metrics. Commands are counted under a
// fixed list of names (plus "other"), so a client sending made-up command
// names cannot grow the label set. Per worker, summed at scrape time.
#include <array>
#include <cstdint>
#include <string_view>

#include "larder/common/histogram.hpp"

namespace larder::server {

inline constexpr std::array<std::string_view, 96> kTrackedCommands = {
    "append",   "auth",      "blmove",      "blpop",     "brpop",   "client",    "command",
    "config",   "dbsize",    "decr",        "decrby",    "del",     "discard",   "echo",
    "eval",     "evalsha",   "exec",        "exists",    "expire",  "expireat",  "fcall",
    "flushall", "flushdb",   "get",         "getdel",    "getex",   "getrange",  "getset",
    "hdel",     "hello",     "hexists",     "hget",      "hgetall", "hincrby",   "hkeys",
    "hlen",     "hmget",     "hmset",       "hscan",     "hset",    "hsetnx",    "hvals",
    "incr",     "incrby",    "info",        "keys",      "larder",  "lindex",    "llen",
    "lpop",     "lpush",     "lrange",      "lrem",      "mget",    "mset",      "msetnx",
    "multi",    "persist",   "pexpire",     "pexpireat", "ping",    "psetex",    "psubscribe",
    "pttl",     "publish",   "quit",        "rename",    "reset",   "rpop",      "rpush",
    "sadd",     "scan",      "scard",       "script",    "select",  "set",       "setex",
    "setnx",    "sismember", "smembers",    "srem",      "strlen",  "subscribe", "ttl",
    "type",     "unlink",    "unsubscribe", "unwatch",   "watch",   "xadd",      "xrange",
    "xread",    "zadd",      "zrange",      "zrem",      "zscore",
};
inline constexpr std::size_t kOtherCommand = kTrackedCommands.size();
inline constexpr std::uint16_t kNoCommand = 0xFFFF;

// Index into kTrackedCommands of `name` (any case), or kOtherCommand.
std::uint16_t commandIndex(std::string_view name);
// The label for an index: the command name, or "other".
std::string_view commandLabel(std::size_t index);

struct CommandCounters {
  Histogram latency;  // request read to reply complete; its count is the calls
};

using CommandStats = std::array<CommandCounters, kOtherCommand + 1>;

}  // namespace larder::server
