#include "larder/cache/redis_audit.hpp"

#include <catch2/catch.hpp>

using namespace larder;
using cache::RedisPersistence;

namespace {

bool mentions(const std::vector<std::string>& risks, std::string_view what) {
  for (const auto& r : risks) {
    if (r.find(what) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("each risky persistence setting is named", "[cache][audit]") {
  const RedisPersistence durable{"yes", "everysec", "noeviction", "master"};
  CHECK(cache::persistenceRisks(durable).empty());
  CHECK(cache::persistenceRisks({"yes", "always", "volatile-lru", "master"}).empty());

  const auto none = cache::persistenceRisks({"no", "everysec", "noeviction", "master"});
  REQUIRE(none.size() == 1);
  CHECK(mentions(none, "appendonly is no"));

  CHECK(mentions(cache::persistenceRisks({"yes", "no", "noeviction", "master"}),
                 "appendfsync is no"));
  CHECK(mentions(cache::persistenceRisks({"yes", "always", "allkeys-lru", "master"}),
                 "maxmemory-policy is allkeys-lru"));
  CHECK(
      mentions(cache::persistenceRisks({"yes", "always", "noeviction", "slave"}), "role is slave"));

  // All at once: one line each.
  CHECK(cache::persistenceRisks({"no", "no", "allkeys-random", "slave"}).size() == 3);
  // CONFIG GET refused: unknown is a risk of its own.
  const auto unknown = cache::persistenceRisks({"", "", "", "master"});
  REQUIRE(unknown.size() == 1);
  CHECK(mentions(unknown, "could not be read"));
}

TEST_CASE("refusals have one text each", "[cache][audit]") {
  using R = cache::WriteRefusal;
  CHECK(cache::refusalText(R::None, "users").empty());
  CHECK(cache::refusalText(R::NotDurable, "users").find("require_durable_redis") !=
        std::string::npos);
  CHECK(cache::refusalText(R::Draining, "users").find("'users'") != std::string::npos);
  CHECK(cache::refusalText(R::Stranded, "users").rfind("ERR Larder: ", 0) == 0);
}
