#include "larder/cache/stampede.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <string>

#include "larder/config/loader.hpp"

using larder::cache::shouldRefresh;

TEST_CASE("stale-while-revalidate refreshes every read in the stale window", "[stampede]") {
  // ttl 1 s + stale 30 s: PTTL 31000 is fresh, 29000 is 1 s past the soft TTL.
  CHECK_FALSE(shouldRefresh(31000, 30000, 0, 0, 0.5));
  CHECK_FALSE(shouldRefresh(30001, 30000, 0, 0, 0.5));
  CHECK(shouldRefresh(30000, 30000, 0, 0, 0.5));
  CHECK(shouldRefresh(29000, 30000, 0, 0, 0.5));
  CHECK(shouldRefresh(1, 30000, 0, 0, 0.5));
  // No expiry, or no key: nothing to refresh.
  CHECK_FALSE(shouldRefresh(-1, 30000, 5, 1, 0.5));
  CHECK_FALSE(shouldRefresh(-2, 30000, 5, 1, 0.5));
  // Without a stale window an expiring key is a miss, not a stale hit.
  CHECK_FALSE(shouldRefresh(0, 0, 0, 0, 0.5));
}

TEST_CASE("XFetch refreshes when delta * beta * -ln(u) reaches the time left", "[stampede]") {
  // delta 10 ms, beta 1, u = e^-1: the threshold is exactly 10 ms.
  const double u = std::exp(-1.0);
  CHECK(shouldRefresh(9, 0, 10, 1, u));
  CHECK_FALSE(shouldRefresh(11, 0, 10, 1, u));
  // beta scales the window; delta too.
  CHECK(shouldRefresh(19, 0, 10, 2, u));
  CHECK(shouldRefresh(19, 0, 20, 1, u));
  CHECK_FALSE(shouldRefresh(21, 0, 10, 2, u));
  // u = 1 never refreshes early; off when beta or delta is 0 or u is out of range.
  CHECK_FALSE(shouldRefresh(1, 0, 10, 1, 1.0));
  CHECK_FALSE(shouldRefresh(1, 0, 10, 0, u));
  CHECK_FALSE(shouldRefresh(1, 0, 0, 1, u));
  CHECK_FALSE(shouldRefresh(1, 0, 10, 1, 0.0));
  // The soft expiry is what XFetch aims at when a stale window follows it.
  CHECK(shouldRefresh(30009, 30000, 10, 1, u));
  CHECK_FALSE(shouldRefresh(30011, 30000, 10, 1, u));
}

TEST_CASE("XFetch refreshes more often as expiry nears", "[stampede]") {
  // Over a fixed grid of u, the share of reads that refresh grows as the time
  // left shrinks: the probabilistic shape of the algorithm.
  auto share = [](long long left) {
    int n = 0;
    for (int i = 1; i <= 1000; ++i) n += shouldRefresh(left, 0, 10, 1, i / 1000.0);
    return n;
  };
  CHECK(share(1) > share(10));
  CHECK(share(10) > share(30));
  CHECK(share(30) > share(60));
  CHECK(share(1000) == 0);
}

TEST_CASE("stampede settings are read and checked", "[stampede][config]") {
  using larder::config::loadConfigString;
  const std::string base =
      "postgres:\n  dsn: host=db\nkeyspaces:\n  users:\n    key: user:{id}\n"
      "    table: public.users\n";
  const auto defaults = loadConfigString(base, "t.yaml").keyspaces[0].stampede;
  CHECK(defaults.lease.count() == 3000);
  CHECK(defaults.early_refresh == 0.0);
  CHECK(defaults.stale_while_revalidate.count() == 0);
  const auto set = loadConfigString(base +
                                        "    stampede:\n      lease: 500ms\n"
                                        "      early_refresh: 1.5\n"
                                        "      stale_while_revalidate: 1m\n",
                                    "t.yaml")
                       .keyspaces[0]
                       .stampede;
  CHECK(set.lease.count() == 500);
  CHECK(set.early_refresh == 1.5);
  CHECK(set.stale_while_revalidate.count() == 60000);
  auto error = [&](const std::string& body) {
    try {
      loadConfigString(base + "    stampede:\n" + body, "t.yaml");
    } catch (const larder::config::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(error("      early_refresh: -1\n") ==
        "t.yaml: keyspaces.users.stampede.early_refresh: expected a number from 0 (off) to 100, "
        "e.g. 1.0");
  CHECK(error("      early_refresh: lots\n") ==
        "t.yaml: keyspaces.users.stampede.early_refresh: expected a number from 0 (off) to 100, "
        "e.g. 1.0");
  CHECK(error("      lease: soon\n") ==
        "t.yaml: keyspaces.users.stampede.lease: expected a duration such as 500ms, 30s, 1h");
  CHECK(
      error("      leese: 1s\n").rfind("t.yaml: keyspaces.users.stampede.leese: unknown key", 0) ==
      0);
}
