#include "larder/acl/permissions.hpp"

#include <catch2/catch.hpp>
#include <initializer_list>
#include <string>
#include <vector>

#include "larder/acl/password.hpp"

using namespace larder::acl;

namespace {

Permissions rules(std::initializer_list<const char*> list) {
  Permissions p;
  std::string error;
  for (const char* rule : list) {
    INFO(rule);
    REQUIRE(p.applyCommandRule(rule, error));
  }
  return p;
}

bool allows(const Permissions& p, std::vector<std::string_view> args) {
  const larder::commands::Resolved r = larder::commands::Registry::get().resolve(args);
  return r.known ? p.allowsCommand(r.command->id) : p.allowsUnknownCommands();
}

std::string ruleError(const char* rule) {
  Permissions p;
  std::string error;
  if (p.applyCommandRule(rule, error)) return "";
  return error;
}

}  // namespace

TEST_CASE("Command rules apply left to right as in Redis", "[acl]") {
  SECTION("nothing by default") {
    Permissions p;
    CHECK_FALSE(allows(p, {"get", "k"}));
    CHECK(allows(p, {"auth", "x"}));  // no-auth commands always run
    CHECK(allows(p, {"hello"}));
  }
  SECTION("+@all -@dangerous") {
    auto p = rules({"+@all", "-@dangerous"});
    CHECK(allows(p, {"get", "k"}));
    CHECK(allows(p, {"set", "k", "v"}));
    CHECK_FALSE(allows(p, {"flushall"}));
    CHECK_FALSE(allows(p, {"config", "set", "a", "b"}));
    CHECK_FALSE(allows(p, {"larder", "stats"}));
    CHECK(allows(p, {"client", "id"}));
    CHECK_FALSE(p.allowsUnknownCommands());  // a minus rule ends "all commands"
  }
  SECTION("-@all +@read -hgetall") {
    auto p = rules({"-@all", "+@read", "-hgetall"});
    CHECK(allows(p, {"hget", "h", "f"}));
    CHECK_FALSE(allows(p, {"hgetall", "h"}));
    CHECK_FALSE(allows(p, {"set", "k", "v"}));
  }
  SECTION("order matters") {
    CHECK(allows(rules({"-get", "+@read"}), {"get", "k"}));
    CHECK_FALSE(allows(rules({"+@read", "-get"}), {"get", "k"}));
    CHECK_FALSE(allows(rules({"+@all", "nocommands"}), {"get", "k"}));
  }
  SECTION("a command brings its subcommands; a subcommand only itself") {
    auto p = rules({"+config"});
    CHECK(allows(p, {"config", "get", "x"}));
    CHECK(allows(p, {"config", "set", "x", "y"}));
    auto q = rules({"+config|get"});
    CHECK(allows(q, {"config", "get", "x"}));
    CHECK_FALSE(allows(q, {"config", "set", "x", "y"}));
    auto r = rules({"+config", "-config|set"});
    CHECK(allows(r, {"config", "get", "x"}));
    CHECK_FALSE(allows(r, {"config", "set", "x", "y"}));
  }
  SECTION("+@all and allcommands admit unknown commands") {
    CHECK(rules({"+@all"}).allowsUnknownCommands());
    CHECK(rules({"allcommands"}).allowsUnknownCommands());
    CHECK_FALSE(rules({"+@read"}).allowsUnknownCommands());
  }
  SECTION("case-insensitive names") {
    CHECK(allows(rules({"+GET"}), {"get", "k"}));
    CHECK(allows(rules({"+@READ"}), {"get", "k"}));
  }
}

TEST_CASE("Bad command rules say why", "[acl]") {
  CHECK(ruleError("+@nosuch") == "'+@nosuch': unknown category 'nosuch'");
  CHECK(ruleError("-nosuch") == "'-nosuch': unknown command 'nosuch'");
  CHECK(ruleError("+config|nosuch") == "'+config|nosuch': unknown subcommand 'config|nosuch'");
  CHECK(ruleError("+select|0").find("not supported") != std::string::npos);
  CHECK(ruleError("get").find("expected +<command>") != std::string::npos);
  CHECK(ruleError("+").find("expected") != std::string::npos);
}

TEST_CASE("Key rules", "[acl]") {
  Permissions p;
  std::string error;
  CHECK_FALSE(p.allowsKey("app:1"));
  REQUIRE(p.applyKeyRule("app:*", error));
  REQUIRE(p.applyKeyRule("~cache:?", error));
  CHECK(p.allowsKey("app:1"));
  CHECK(p.allowsKey("cache:x"));
  CHECK_FALSE(p.allowsKey("cache:xy"));
  CHECK_FALSE(p.allowsKey("other"));
  CHECK_FALSE(p.allKeys());
  REQUIRE(p.applyKeyRule("resetkeys", error));
  CHECK_FALSE(p.allowsKey("app:1"));
  REQUIRE(p.applyKeyRule("*", error));
  CHECK(p.allKeys());
  CHECK_FALSE(p.applyKeyRule("app:*", error));  // after '*': no effect, as Redis says
  CHECK_FALSE(p.applyKeyRule("%R~app:*", error));
  CHECK(error.find("not supported") != std::string::npos);
  CHECK_FALSE(p.applyKeyRule("~", error));
}

TEST_CASE("globMatch follows Redis' stringmatchlen", "[acl]") {
  CHECK(globMatch("*", ""));
  CHECK(globMatch("*", "anything"));
  CHECK(globMatch("app:*", "app:"));
  CHECK(globMatch("app:*", "app:1:2"));
  CHECK_FALSE(globMatch("app:*", "ap"));
  CHECK_FALSE(globMatch("app:*", "App:1"));  // case-sensitive
  CHECK(globMatch("a?c", "abc"));
  CHECK_FALSE(globMatch("a?c", "ac"));
  CHECK(globMatch("h[ae]llo", "hello"));
  CHECK(globMatch("h[ae]llo", "hallo"));
  CHECK_FALSE(globMatch("h[ae]llo", "hillo"));
  CHECK(globMatch("h[^e]llo", "hallo"));
  CHECK_FALSE(globMatch("h[^e]llo", "hello"));
  CHECK(globMatch("h[a-b]llo", "hbllo"));
  CHECK(globMatch("h[b-a]llo", "hallo"));  // reversed range, as Redis swaps it
  CHECK_FALSE(globMatch("h[a-b]llo", "hcllo"));
  CHECK(globMatch("a\\*b", "a*b"));
  CHECK_FALSE(globMatch("a\\*b", "axb"));
  CHECK(globMatch("[\\]]", "]"));
  CHECK(globMatch("*a*b*c*", "xxaxxbxxcxx"));
  CHECK_FALSE(globMatch("*a*b*c*", "xxaxxcxxbxx"));
  CHECK(globMatch("a*b", "aXbXb"));
  CHECK(globMatch("**x", "x"));
  // No exponential blow-up on a pathological pattern.
  CHECK_FALSE(globMatch("a*a*a*a*a*a*a*a*a*a*a*a*b", std::string(5000, 'a')));
}

TEST_CASE("SHA-256 digests and their hex form", "[acl]") {
  const Digest d = sha256("abc");
  Digest parsed;
  REQUIRE(
      parseHexDigest("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", parsed));
  CHECK(digestEquals(d, parsed));
  REQUIRE(
      parseHexDigest("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", parsed));
  CHECK(digestEquals(d, parsed));
  CHECK_FALSE(digestEquals(d, sha256("abd")));
  CHECK_FALSE(parseHexDigest("ba78", parsed));
  CHECK_FALSE(parseHexDigest(std::string(63, 'a') + "g", parsed));
}

TEST_CASE("Channel rules", "[acl]") {
  Permissions p;
  std::string error;
  CHECK_FALSE(p.allowsChannel("news", false));  // none by default, as Redis 7.0
  REQUIRE(p.applyChannelRule("news.*", error));
  REQUIRE(p.applyChannelRule("&alerts", error));
  CHECK(p.allowsChannel("news.eu", false));
  CHECK(p.allowsChannel("alerts", false));
  CHECK_FALSE(p.allowsChannel("other", false));
  CHECK(p.allowsChannel("news.*", true));  // a PSUBSCRIBE pattern must be listed literally
  CHECK_FALSE(p.allowsChannel("news.e*", true));
  CHECK_FALSE(p.unrestricted());
  REQUIRE(p.applyChannelRule("allchannels", error));
  CHECK(p.allowsChannel("anything", true));
  CHECK_FALSE(p.applyChannelRule("&x", error));
  REQUIRE(p.applyChannelRule("resetchannels", error));
  CHECK_FALSE(p.allowsChannel("news.eu", false));
}
