#include "larder/commands/keys.hpp"

#include <catch2/catch.hpp>
#include <string_view>
#include <vector>

using namespace larder::commands;

namespace {

using V = std::vector<std::string_view>;

// The key arguments Redis would find (as COMMAND GETKEYS lists them).
V keys(V args) {
  const Command* c = Registry::get().resolve(args).command;
  REQUIRE(c != nullptr);
  std::vector<KeyRef> refs;
  findKeys(*c, args, refs);
  V out;
  for (const KeyRef& k : refs) out.push_back(args[k.pos]);
  return out;
}

std::uint16_t flagsOf(V args, std::size_t nth = 0) {
  const Command* c = Registry::get().resolve(args).command;
  std::vector<KeyRef> refs;
  findKeys(*c, args, refs);
  REQUIRE(refs.size() > nth);
  return refs[nth].flags;
}

}  // namespace

TEST_CASE("key specs: index, range and step", "[commands]") {
  CHECK(keys({"get", "k"}) == V{"k"});
  CHECK(keys({"mset", "a", "1", "b", "2"}) == V{"a", "b"});
  CHECK(keys({"mget", "a", "b", "c"}) == V{"a", "b", "c"});
  CHECK(keys({"blpop", "a", "b", "0"}) == V{"a", "b"});
  CHECK(keys({"rename", "a", "b"}) == V{"a", "b"});
  CHECK(keys({"ping"}).empty());
  CHECK(keys({"object", "encoding", "k"}) == V{"k"});
  CHECK(keys({"memory", "usage", "k"}) == V{"k"});
  CHECK(keys({"ssubscribe", "ch"}).empty());  // channels are not keys
  CHECK(keys({"spublish", "ch", "m"}).empty());
}

TEST_CASE("key specs: numkeys and keywords", "[commands]") {
  CHECK(keys({"eval", "return 1", "2", "a", "b", "arg"}) == V{"a", "b"});
  CHECK(keys({"eval", "return 1", "0"}).empty());
  CHECK(keys({"zunionstore", "dst", "2", "a", "b", "weights", "1", "2"}) == V{"dst", "a", "b"});
  CHECK(keys({"zunion", "2", "a", "b"}) == V{"a", "b"});
  CHECK(keys({"blmpop", "0", "2", "a", "b", "left"}) == V{"a", "b"});
  CHECK(keys({"xread", "count", "2", "streams", "a", "b", "0", "0"}) == V{"a", "b"});
  CHECK(keys({"xreadgroup", "group", "g", "c", "streams", "s", ">"}) == V{"s"});
  CHECK(keys({"georadius", "g", "0", "0", "1", "km", "storedist", "d"}) == V{"g", "d"});
  CHECK(keys({"lmove", "a", "b", "left", "right"}) == V{"a", "b"});
}

TEST_CASE("a numkeys Redis cannot parse falls back as Redis' getkeys procedures do", "[commands]") {
  CHECK(keys({"eval", "return 1", "5", "a"}).empty());  // more keys than arguments
  CHECK(keys({"eval", "return 1", "-1", "a"}).empty());
  CHECK(keys({"eval", "return 1", "01", "a"}) == V{"a"});  // atoi() reads "01" as 1
  CHECK(keys({"zunionstore", "dst", "x", "a"}).empty());
}

TEST_CASE("SORT, MIGRATE, SET and BITFIELD take Redis' procedures", "[commands]") {
  CHECK(keys({"sort", "k", "by", "w_*", "store", "dst"}) == V{"k", "dst"});
  CHECK(keys({"sort", "k", "store", "a", "store", "b"}) == V{"k", "b"});  // the last STORE
  CHECK(keys({"sort", "k", "get", "store", "alpha"}) == V{"k"});  // GET's argument is skipped
  CHECK(keys({"sort_ro", "k", "store", "x"}) == V{"k"});
  CHECK(flagsOf({"sort", "k", "store", "d"}, 1) & kKeyOW);
  CHECK(keys({"migrate", "h", "1", "k", "0", "5"}) == V{"k"});
  CHECK(keys({"migrate", "h", "1", "", "0", "5", "keys", "a", "b"}) == V{"a", "b"});
  CHECK(keys({"migrate", "h", "1", "", "0", "5", "auth", "keys", "keys", "a"}) == V{"a"});
  CHECK(keys({"migrate", "h", "1", "x", "0", "5", "keys", "a"}).empty());  // a syntax error
  CHECK(flagsOf({"migrate", "h", "1", "k", "0", "5"}) & kKeyDelete);
  CHECK(flagsOf({"set", "k", "v"}) == (kKeyOW | kKeyUpdate));
  CHECK(flagsOf({"set", "k", "v", "GET"}) & kKeyRW);
  CHECK(flagsOf({"bitfield", "k", "get", "u8", "0"}) == (kKeyRO | kKeyAccess));
  CHECK(flagsOf({"bitfield", "k", "set", "u8", "0", "1"}) & kKeyRW);
}

TEST_CASE("flags say how each key is used", "[commands]") {
  CHECK(flagsOf({"get", "k"}) & kKeyRO);
  CHECK_FALSE(flagsOf({"get", "k"}) & kKeyWrites);
  CHECK(flagsOf({"zunionstore", "d", "1", "s"}) & kKeyOW);
  CHECK_FALSE(flagsOf({"zunionstore", "d", "1", "s"}, 1) & kKeyWrites);
  CHECK(flagsOf({"copy", "a", "b"}, 1) & kKeyWrites);
  CHECK(flagsOf({"eval", "s", "1", "k"}) & kKeyWrites);
  CHECK_FALSE(flagsOf({"eval_ro", "s", "1", "k"}) & kKeyWrites);
}
