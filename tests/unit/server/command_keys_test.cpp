#include "larder/server/command_keys.hpp"

#include <catch2/catch.hpp>

#include "larder/server/mapped_read.hpp"

using namespace larder::server;

namespace {
std::vector<std::size_t> keys(std::string_view name, std::vector<std::string_view> args) {
  return keysOf(name, args).keys;
}
}  // namespace

TEST_CASE("key positions follow each command's shape", "[server]") {
  CHECK(keys("get", {"GET", "k"}) == std::vector<std::size_t>{1});
  CHECK(keys("mget", {"MGET", "a", "b", "c"}) == std::vector<std::size_t>{1, 2, 3});
  CHECK(keys("mset", {"MSET", "a", "1", "b", "2"}) == std::vector<std::size_t>{1, 3});
  CHECK(keys("blpop", {"BLPOP", "a", "b", "0"}) == std::vector<std::size_t>{1, 2});
  CHECK(keys("rename", {"RENAME", "a", "b"}) == std::vector<std::size_t>{1, 2});
  CHECK(keys("ping", {"PING"}).empty());
  CHECK(keys("get", {"GET"}).empty());
}

TEST_CASE("commands are sorted by what they may do to a mapped key", "[server]") {
  CHECK(keysOf("hgetall", {"HGETALL", "k"}).access == MappedAccess::Read);
  CHECK(keysOf("type", {"TYPE", "k"}).access == MappedAccess::RawRead);
  CHECK(keysOf("watch", {"WATCH", "k"}).access == MappedAccess::RawRead);
  CHECK(keysOf("hset", {"HSET", "k", "f", "v"}).access == MappedAccess::Write);
  CHECK(keysOf("del", {"DEL", "k"}).access == MappedAccess::Write);
  CHECK(keysOf("lpush", {"LPUSH", "k", "v"}).access == MappedAccess::Other);
  CHECK(keysOf("eval", {"EVAL", "s", "1", "k"}).access == MappedAccess::None);
}

TEST_CASE("read kinds fit their keyspace shape", "[server]") {
  ReadKind kind;
  REQUIRE(readKindOf("hgetall", kind));
  CHECK(kind == ReadKind::HGetAll);
  CHECK(shapeFits(kind, true));
  CHECK_FALSE(shapeFits(kind, false));
  REQUIRE(readKindOf("get", kind));
  CHECK_FALSE(shapeFits(kind, true));
  REQUIRE(readKindOf("ttl", kind));
  CHECK(shapeFits(kind, true));
  CHECK(shapeFits(kind, false));
  CHECK_FALSE(readKindOf("lpush", kind));
}
