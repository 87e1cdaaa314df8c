#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

#include "larder/acl/password.hpp"
#include "larder/config/loader.hpp"
#include "larder/config/reload.hpp"

using namespace larder::config;

namespace {

Config load(const std::string& yaml) { return loadConfigString(yaml, "test.yaml"); }

std::string errorOf(const std::string& yaml) {
  try {
    load(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

const std::string kHex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

}  // namespace

TEST_CASE("Without users: an implicit default user from requirepass", "[config][acl]") {
  Config open = load("");
  REQUIRE(open.users.size() == 1);
  CHECK(open.users[0].name == "default");
  CHECK(open.users[0].nopass);
  CHECK(open.users[0].permissions.unrestricted());
  CHECK_FALSE(hasAclUsers(open.users));
  Config closed = load("requirepass: abc");
  REQUIRE(closed.users.size() == 1);
  CHECK_FALSE(closed.users[0].nopass);
  REQUIRE(closed.users[0].passwords.size() == 1);
  CHECK(larder::acl::digestEquals(closed.users[0].passwords[0], larder::acl::sha256("abc")));
}

TEST_CASE("users: are read and compiled", "[config][acl]") {
  ::setenv("LARDER_UNIT_PW", "abc", 1);
  Config c = load(
      "users:\n"
      "  - name: alice\n"
      "    password_sha256: [" +
      kHex +
      "]\n"
      "    commands: [\"+@all\", \"-@dangerous\"]\n"
      "    keys: [\"app:*\"]\n"
      "  - name: bob\n"
      "    password_env: LARDER_UNIT_PW\n"
      "    commands: \"-@all +get\"\n"
      "  - name: default\n"
      "    nopass: true\n"
      "    enabled: false\n");
  REQUIRE(c.users.size() == 3);  // default given, so none implied
  CHECK(hasAclUsers(c.users));
  const UserConfig* alice = findUser(c.users, "alice");
  REQUIRE(alice);
  CHECK(alice->commands == std::vector<std::string>{"+@all", "-@dangerous"});
  CHECK(alice->permissions.allowsKey("app:1"));
  CHECK_FALSE(alice->permissions.allowsKey("x"));
  const UserConfig* bob = findUser(c.users, "bob");
  REQUIRE(bob);
  CHECK(bob->commands == std::vector<std::string>{"-@all", "+get"});
  CHECK(larder::acl::digestEquals(bob->passwords.at(0), alice->passwords.at(0)));
  CHECK_FALSE(findUser(c.users, "default")->enabled);
  // Secrets stay out of the summary.
  const std::string summary = redactedSummary(c);
  CHECK(summary.find("alice: enabled=true") != std::string::npos);
  CHECK(summary.find(kHex) == std::string::npos);
  CHECK(summary.find("abc") == std::string::npos);
}

TEST_CASE("Bad users name file, key and reason", "[config][acl]") {
  ::unsetenv("LARDER_UNIT_UNSET");
  CHECK(errorOf("users:\n  - name: u\n    password_env: LARDER_UNIT_UNSET\n") ==
        "test.yaml: users[0].password_env: environment variable LARDER_UNIT_UNSET is not set");
  CHECK(errorOf("users:\n  - name: u\n    nopass: true\n    commands: +@bogus\n") ==
        "test.yaml: users[0].commands: '+@bogus': unknown category 'bogus'");
  CHECK(errorOf("users:\n  - name: u\n    password_sha256: abcd\n") ==
        "test.yaml: users[0].password_sha256: expected 64 hex digits (a SHA-256 digest), got 4 "
        "characters");
  CHECK(errorOf("users:\n  - name: u\n    nopass: true\n    password_sha256: " + kHex + "\n") ==
        "test.yaml: users[0].nopass: a user with nopass: true takes no password");
  CHECK(errorOf("users: {}\n") == "test.yaml: users: expected a list of users");
  CHECK(errorOf("users:\n  - nopass: true\n") == "test.yaml: users[0].name: is required");
}

TEST_CASE("admin: as a map takes a token", "[config][acl]") {
  Config c = load("admin:\n  address: 127.0.0.1:9999\n  token: t0k\n");
  REQUIRE(c.admin);
  CHECK(c.admin->port == 9999);
  CHECK(c.admin_token == "t0k");
  CHECK(redactedSummary(c).find("t0k") == std::string::npos);
  CHECK(load("admin: 127.0.0.1:9999").admin_token.empty());
  CHECK(errorOf("admin:\n  token: x\n") == "test.yaml: admin.address: is required");
}

TEST_CASE("Reload applies users and reports them without secrets", "[config][acl]") {
  Config live = load("users:\n  - name: a\n    nopass: true\n  - name: b\n    nopass: true\n");
  Config next = load(
      "users:\n  - name: b\n    nopass: true\n    enabled: false\n"
      "  - name: c\n    password_sha256: " +
      kHex + "\n");
  ReloadPlan plan = planReload(live, next);
  CHECK(plan.effective.users == next.users);
  std::string all;
  for (const auto& line : plan.applied) all += line + "\n";
  CHECK(all.find("users.a: removed") != std::string::npos);
  CHECK(all.find("users.b: changed (disabled") != std::string::npos);
  CHECK(all.find("users.c: added") != std::string::npos);
  CHECK(all.find(kHex) == std::string::npos);
}
