#include "larder/server/command_keys.hpp"

#include <charconv>
#include <string>
#include <unordered_map>

#include "larder/server/command_table.hpp"

namespace larder::server {

namespace {

enum class Span {
  First,       // args[1]
  FirstTwo,    // args[1], args[2]
  All,         // args[1..]
  AllButLast,  // args[1..n-2] (BLPOP k1 k2 timeout)
  Pairs,       // args[1], args[3], ... (MSET k v k v)
};

struct Spec {
  Span span;
  MappedAccess access;
};

const std::unordered_map<std::string_view, Spec>& specs() {
  static const auto table = [] {
    std::unordered_map<std::string_view, Spec> t;
    auto add = [&t](std::initializer_list<std::string_view> names, Span span, MappedAccess a) {
      for (auto n : names) t[n] = {span, a};
    };
    using A = MappedAccess;
    add({"get", "getex", "ttl", "pttl", "hget", "hmget", "hgetall", "hexists", "hlen", "hkeys",
         "hvals"},
        Span::First, A::Read);
    add({"mget", "exists"}, Span::All, A::Read);
    add({"type", "object", "dump", "strlen", "getrange", "substr", "hstrlen", "hscan", "hrandfield",
         "expiretime", "pexpiretime"},
        Span::First, A::RawRead);
    add({"touch"}, Span::All, A::RawRead);
    add({"set",      "setex",     "psetex",      "setnx",    "getset",  "getdel",
         "hset",     "hmset",     "hsetnx",      "hdel",     "expire",  "pexpire",
         "expireat", "pexpireat", "persist",     "append",   "incr",    "decr",
         "incrby",   "decrby",    "incrbyfloat", "setrange", "hincrby", "hincrbyfloat"},
        Span::First, A::Write);
    add({"del", "unlink"}, Span::All, A::Write);
    add({"mset", "msetnx"}, Span::Pairs, A::Write);
    add({"rename", "renamenx", "copy", "smove", "lmove", "rpoplpush", "blmove", "brpoplpush"},
        Span::FirstTwo, A::Other);
    add({"getbit",
         "setbit",
         "bitcount",
         "bitpos",
         "bitfield",
         "bitfield_ro",
         "restore",
         "move",
         "sort",
         "sort_ro",
         "lpush",
         "rpush",
         "lpushx",
         "rpushx",
         "lpop",
         "rpop",
         "llen",
         "lindex",
         "lset",
         "lrange",
         "ltrim",
         "lrem",
         "linsert",
         "lpos",
         "sadd",
         "srem",
         "smembers",
         "sismember",
         "smismember",
         "scard",
         "spop",
         "srandmember",
         "sscan",
         "zadd",
         "zrem",
         "zincrby",
         "zscore",
         "zmscore",
         "zcard",
         "zcount",
         "zrange",
         "zrangebyscore",
         "zrevrange",
         "zrevrangebyscore",
         "zrank",
         "zrevrank",
         "zremrangebyrank",
         "zremrangebyscore",
         "zrangebylex",
         "zrevrangebylex",
         "zlexcount",
         "zremrangebylex",
         "zpopmin",
         "zpopmax",
         "zrandmember",
         "zscan",
         "xadd",
         "xlen",
         "xrange",
         "xrevrange",
         "xdel",
         "xtrim",
         "xack",
         "xclaim",
         "xautoclaim",
         "xpending",
         "xsetid",
         "pfadd",
         "geoadd",
         "geodist",
         "geohash",
         "geopos",
         "georadius",
         "georadiusbymember",
         "geosearch",
         "lmpop"},
        Span::First, A::Other);
    add({"sinter", "sunion", "sdiff", "sinterstore", "sunionstore", "sdiffstore", "pfcount",
         "pfmerge", "watch"},
        Span::All, A::Other);
    add({"blpop", "brpop", "bzpopmin", "bzpopmax"}, Span::AllButLast, A::Other);
    return t;
  }();
  return table;
}

}  // namespace

KeyedCommand keysOf(std::string_view name, const std::vector<std::string_view>& args) {
  KeyedCommand out;
  const auto& t = specs();
  auto it = t.find(name);
  if (it == t.end()) return out;
  // WATCH only observes the cache: allowed on mapped keys.
  out.access = name == "watch" ? MappedAccess::RawRead : it->second.access;
  const std::size_t n = args.size();
  switch (it->second.span) {
    case Span::First:
      if (n > 1) out.keys.push_back(1);
      break;
    case Span::FirstTwo:
      for (std::size_t i = 1; i < n && i <= 2; ++i) out.keys.push_back(i);
      break;
    case Span::All:
      for (std::size_t i = 1; i < n; ++i) out.keys.push_back(i);
      break;
    case Span::AllButLast:
      for (std::size_t i = 1; i + 1 < n; ++i) out.keys.push_back(i);
      break;
    case Span::Pairs:
      for (std::size_t i = 1; i < n; i += 2) out.keys.push_back(i);
      break;
  }
  return out;
}

namespace {

// Keys counted by a numkeys argument at `at`, starting right after it.
bool numkeys(const std::vector<std::string_view>& args, std::size_t at,
             std::vector<std::size_t>& out) {
  if (at >= args.size()) return false;
  long long n = 0;
  const auto s = args[at];
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || ptr != s.data() + s.size() || n < 0) return false;
  if (static_cast<unsigned long long>(n) > args.size() - at - 1) return false;
  for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) out.push_back(at + 1 + i);
  return true;
}

// The argument after keyword `word` (SORT ... STORE dst), searched from `from`.
void afterKeyword(const std::vector<std::string_view>& args, std::size_t from,
                  std::initializer_list<std::string_view> words, std::vector<std::size_t>& out) {
  for (std::size_t i = from; i + 1 < args.size(); ++i) {
    for (auto w : words) {
      if (equalsIgnoreCase(args[i], w)) out.push_back(i + 1);
    }
  }
}

}  // namespace

bool aclKeysOf(const acl::CommandSpec& spec, const std::vector<std::string_view>& args,
               std::vector<std::size_t>& out) {
  const auto argc = static_cast<long>(args.size());
  if (spec.first_key > 0) {
    const long last = spec.last_key < 0 ? argc + spec.last_key : spec.last_key;
    const long step = spec.key_step > 0 ? spec.key_step : 1;
    for (long i = spec.first_key; i <= last && i < argc; i += step) {
      out.push_back(static_cast<std::size_t>(i));
    }
  }
  if (!(spec.flags & acl::kMovableKeys)) return true;
  const std::string_view n = spec.name;
  if (n == "eval" || n == "evalsha" || n == "eval_ro" || n == "evalsha_ro" || n == "fcall" ||
      n == "fcall_ro" || n == "zunionstore" || n == "zinterstore" || n == "zdiffstore" ||
      n == "blmpop" || n == "bzmpop") {
    return numkeys(args, 2, out);
  }
  if (n == "zunion" || n == "zinter" || n == "zdiff" || n == "zintercard" || n == "sintercard" ||
      n == "lmpop" || n == "zmpop") {
    return numkeys(args, 1, out);
  }
  if (n == "xread" || n == "xreadgroup") {
    for (std::size_t i = 1; i < args.size(); ++i) {
      if (!equalsIgnoreCase(args[i], "streams")) continue;
      const std::size_t rest = args.size() - i - 1;
      if (rest == 0 || rest % 2 != 0) return false;
      for (std::size_t k = 0; k < rest / 2; ++k) out.push_back(i + 1 + k);
      return true;
    }
    return false;
  }
  if (n == "sort" || n == "sort_ro") {
    afterKeyword(args, 2, {"store"}, out);
    return true;
  }
  if (n == "georadius" || n == "georadiusbymember") {
    afterKeyword(args, 2, {"store", "storedist"}, out);
    return true;
  }
  return false;  // MIGRATE ... KEYS, or a movable-keys command of a newer table
}

}  // namespace larder::server
