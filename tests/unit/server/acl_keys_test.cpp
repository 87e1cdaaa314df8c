#include <catch2/catch.hpp>
#include <string_view>
#include <vector>

#include "larder/acl/commands.hpp"
#include "larder/server/command_keys.hpp"

using namespace larder;

namespace {

// The key arguments ACL checks see, or {"?"} when they cannot be told.
std::vector<std::string_view> keys(std::vector<std::string_view> args) {
  std::string name;
  const acl::CommandId id = acl::resolveCommand(args, name);
  REQUIRE(id != acl::kNoCommandId);
  std::vector<std::size_t> at;
  if (!server::aclKeysOf(acl::redisCommands()[id], args, at)) return {"?"};
  std::vector<std::string_view> out;
  for (std::size_t i : at) out.push_back(args[i]);
  return out;
}

using V = std::vector<std::string_view>;

}  // namespace

TEST_CASE("aclKeysOf finds every key Redis' ACL checks", "[acl][server]") {
  CHECK(keys({"get", "k"}) == V{"k"});
  CHECK(keys({"mset", "a", "1", "b", "2"}) == V{"a", "b"});
  CHECK(keys({"mget", "a", "b", "c"}) == V{"a", "b", "c"});
  CHECK(keys({"blpop", "a", "b", "0"}) == V{"a", "b"});
  CHECK(keys({"ping"}).empty());
  CHECK(keys({"object", "encoding", "k"}) == V{"k"});
  CHECK(keys({"eval", "return 1", "2", "a", "b", "arg"}) == V{"a", "b"});
  CHECK(keys({"eval", "return 1", "0"}).empty());
  CHECK(keys({"eval", "return 1", "5", "a"}) == V{"?"});  // numkeys past the end
  CHECK(keys({"zunionstore", "dst", "2", "a", "b", "weights", "1", "2"}) == V{"dst", "a", "b"});
  CHECK(keys({"zunion", "2", "a", "b"}) == V{"a", "b"});
  CHECK(keys({"blmpop", "0", "2", "a", "b", "left"}) == V{"a", "b"});
  CHECK(keys({"xread", "count", "2", "streams", "a", "b", "0", "0"}) == V{"a", "b"});
  CHECK(keys({"xreadgroup", "group", "g", "c", "streams", "s", ">"}) == V{"s"});
  CHECK(keys({"sort", "k", "by", "w_*", "store", "dst"}) == V{"k", "dst"});
  CHECK(keys({"georadius", "g", "0", "0", "1", "km", "storedist", "d"}) == V{"g", "d"});
  CHECK(keys({"migrate", "h", "1", "", "0", "5", "keys", "a", "b"}) == V{"?"});
}
