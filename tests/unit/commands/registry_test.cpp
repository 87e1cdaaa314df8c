#include "larder/commands/registry.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "larder/commands/keys.hpp"

using namespace larder::commands;

namespace {

using Args = std::vector<std::string_view>;

const Command* resolve(Args args) { return Registry::get().resolve(args).command; }

Route route(Args args) { return routeOf(*resolve(args), args); }

}  // namespace

TEST_CASE("the table is Redis 7.0's, with subcommands after their container", "[commands]") {
  const Registry& r = Registry::get();
  CHECK(kRedisVersion.substr(0, 4) == "7.0.");
  REQUIRE(r.size() > 300);
  REQUIRE(r.size() <= kMaxCommands);
  for (const Command& c : r.all()) {
    INFO(c.name());
    CHECK(c.redis->arity != 0);
    CHECK(r.find(c.name()) == &c);  // every name finds its own row
    if (c.redis->parent != kNoParent) {
      const Command& parent = r.at(c.redis->parent);
      CHECK(c.id > parent.id);
      CHECK(c.id <= parent.id + parent.redis->subcommands);
      CHECK(c.name().substr(0, parent.name().size() + 1) == std::string(parent.name()) + "|");
    }
  }
}

TEST_CASE("a request is looked up once, in any case", "[commands]") {
  const Registry& r = Registry::get();
  CHECK(resolve({"GET", "k"}) == r.find("get"));
  CHECK(resolve({"gEt", "k"}) == r.find("get"));
  CHECK(resolve({"config", "GET", "x"}) == r.find("config|get"));
  CHECK(r.find("CONFIG|Get") == r.find("config|get"));
  CHECK(resolve({"CONFIG"}) == r.find("config"));
  const Resolved unknown_sub = r.resolve(Args{"config", "nosuch"});
  CHECK(unknown_sub.command == r.find("config"));
  CHECK_FALSE(unknown_sub.known);
  CHECK_FALSE(r.resolve(Args{"config", "get|x"}).known);
  // Redis' unit/other "Subcommand syntax error crash (issue #10070)".
  for (std::string_view name : {"CONFIG|GET", "GET|", "GET|SET", "config|get"}) {
    CHECK(resolve({name, "x"}) == nullptr);
  }
  CHECK(resolve({"NOSUCHCOMMAND"}) == nullptr);
  CHECK(resolve({std::string_view("g\0t", 3)}) == nullptr);
  CHECK(resolve({std::string(1000, 'x')}) == nullptr);
  CHECK(resolve({""}) == nullptr);
  CHECK(r.resolve(Args{}).command == nullptr);
  CHECK(resolve({"GET"}) == r.find("get"));  // non-containers ignore the next argument
}

TEST_CASE("categories and flags come from Redis", "[commands]") {
  const Registry& r = Registry::get();
  CHECK(r.find("get")->has(Category::Read));
  CHECK(r.find("get")->has(Category::Fast));
  CHECK(r.find("flushall")->has(Category::Dangerous));
  CHECK(r.find("config|set")->has(Category::Dangerous));
  CHECK(r.find("auth")->flag(kNoAuth));
  CHECK(r.find("blpop")->flag(kBlocking));
  CHECK(r.find("larder")->has(Category::Admin));  // Larder's own, as Redis would file it
  Category c;
  CHECK(parseCategory("SortedSet", c));
  CHECK(c == Category::Sortedset);
  CHECK_FALSE(parseCategory("nosuch", c));
  CHECK(categoryName(Category::Scripting) == "scripting");
}

TEST_CASE("routes: Larder's column, and blocking from Redis' flag", "[commands]") {
  CHECK(route({"GET", "k"}) == Route::Forward);
  CHECK(route({"ping"}) == Route::Local);
  CHECK(resolve({"PiNg"})->handling.local == LocalCommand::Ping);
  CHECK(resolve({"CLIENT", "SETNAME", "x"})->handling.local == LocalCommand::Client);
  CHECK(resolve({"CLIENT", "SETINFO", "lib-name", "x"})->handling.local == LocalCommand::Client);
  CHECK(resolve({"ACL", "whoami"})->handling.local == LocalCommand::Acl);
  CHECK(route({"MULTI"}) == Route::Transaction);
  CHECK(route({"watch", "k"}) == Route::Transaction);
  CHECK(route({"SUBSCRIBE", "c"}) == Route::PubSub);
  CHECK(route({"punsubscribe"}) == Route::PubSub);
  CHECK(route({"BLPOP", "q", "0"}) == Route::Blocking);
  CHECK(route({"BZMPOP", "0", "1", "z", "MIN"}) == Route::Blocking);
  CHECK(route({"WAIT", "1", "0"}) == Route::Blocking);
  CHECK(route({"XREAD", "COUNT", "1", "STREAMS", "s", "0"}) == Route::Forward);
  CHECK(route({"XREAD", "BLOCK", "0", "STREAMS", "s", "$"}) == Route::Blocking);
  CHECK(route({"xreadgroup", "GROUP", "g", "c", "block", "10", "STREAMS", "s", ">"}) ==
        Route::Blocking);
  CHECK(route({"CLIENT", "TRACKING", "on"}) == Route::Sticky);
  CHECK(resolve({"MONITOR"})->handling.local == LocalCommand::Monitor);
  CHECK(resolve({"CLIENT", "REPLY", "OFF"})->handling.local == LocalCommand::Client);
  CHECK(resolve({"client", "kill", "id", "1"})->handling.local == LocalCommand::Client);
  CHECK(route({"SCRIPT", "KILL"}) == Route::OutOfBand);
  CHECK(route({"function", "kill"}) == Route::OutOfBand);
  CHECK(resolve({"EVALSHA_RO", "x", "0"})->handling.script);
  CHECK(route({"shutdown"}) == Route::Refused);
}

TEST_CASE("every command Redis flags blocking pins a connection", "[commands]") {
  for (const Command& c : Registry::get().all()) {
    if (!c.flag(kBlocking) || c.redis->group == Group::Stream) continue;
    INFO(c.name());
    CHECK(routeOf(c, Args{c.name()}) == Route::Blocking);
  }
}

TEST_CASE("mapped reads and writes are Larder's column", "[commands]") {
  CHECK(resolve({"HGETALL", "k"})->handling.read == ReadKind::HGetAll);
  CHECK(resolve({"HGETALL", "k"})->handling.near_fast);
  CHECK(resolve({"GET", "k"})->handling.near_fast);
  CHECK_FALSE(resolve({"HGET", "k", "f"})->handling.near_fast);
  CHECK(resolve({"unlink", "k"})->handling.write == WriteOp::Del);
  CHECK(resolve({"PERSIST", "k"})->handling.write == WriteOp::Expire);
  CHECK(resolve({"LPUSH", "k", "v"})->handling.write == WriteOp::None);
  CHECK(resolve({"SWAPDB", "0", "1"})->handling.guard == Guard::WithKeyspaces);
  CHECK(resolve({"CONFIG", "SET", "x", "y"})->handling.guard == Guard::ConfigSet);
}
