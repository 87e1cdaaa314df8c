#include "larder/redis/client_identity.hpp"

#include <catch2/catch.hpp>
#include <random>

#include "larder/acl/permissions.hpp"
#include "larder/resp/request_parser.hpp"

using namespace larder;

namespace {

// As Redis' ACL: a key is allowed when any pattern matches it.
bool allowed(const std::vector<std::string>& patterns, std::string_view key) {
  for (const auto& p : patterns) {
    if (acl::globMatch(p, key)) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("the client user's patterns allow every key but the reserved ones", "[redis]") {
  const auto patterns = redis::keyPatternsExcluding("__larder:");
  CHECK(patterns.size() == 18);
  for (std::string_view key : {"", "a", "_", "__", "__l", "__larder", "__larderx", "_x", "__lx",
                               "x__larder:", "user:1", "__LARDER:q", "\xff", "__larde"}) {
    INFO(key);
    CHECK(allowed(patterns, key));
  }
  for (std::string_view key : {"__larder:", "__larder:q:users", "__larder:pending:user:1"}) {
    INFO(key);
    CHECK_FALSE(allowed(patterns, key));
  }
  // Every byte string: allowed exactly when it does not start with the prefix.
  std::mt19937 rng(42);
  const std::string alphabet = std::string("_ldear:x*?[]\\^") + '\0';
  for (int i = 0; i < 20000; ++i) {
    std::string key;
    const int n = static_cast<int>(rng() % 14);
    for (int j = 0; j < n; ++j) {
      // Mostly the prefix's own bytes, so that near misses are common.
      key +=
          j < 9 && rng() % 4 != 0 ? std::string("__larder:")[j] : alphabet[rng() % alphabet.size()];
    }
    INFO(key);
    CHECK(allowed(patterns, key) != (key.rfind("__larder:", 0) == 0));
  }
}

TEST_CASE("the client identity is derived, not random, and made with ACL SETUSER", "[redis]") {
  config::RedisConfig c;
  c.password = "secret";
  const redis::ClientIdentity a = redis::makeClientIdentity(c, "__larder:");
  const redis::ClientIdentity b = redis::makeClientIdentity(c, "__larder:");
  CHECK(a.user == "larder-client");
  CHECK(a.password == b.password);  // two instances agree
  CHECK(a.password.size() == 64);
  c.password = "other";
  CHECK(redis::makeClientIdentity(c, "__larder:").password != a.password);
  resp::RequestParser parser;
  resp::Request r;
  REQUIRE(parser.parse(a.setuser_request, r) == resp::ParseStatus::Complete);
  CHECK(r.args[0] == "ACL");
  CHECK(r.args[1] == "SETUSER");
  CHECK(r.args[2] == "larder-client");
  CHECK(a.setuser_request.find(a.password) == std::string::npos);  // only its hash is sent
  CHECK(a.setuser_request.find("~[^_]*") != std::string::npos);
  CHECK(a.setuser_request.find("+@all") != std::string::npos);
}
