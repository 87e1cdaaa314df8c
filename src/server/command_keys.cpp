#include "larder/server/command_keys.hpp"

#include <string>
#include <unordered_map>

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

}  // namespace larder::server
