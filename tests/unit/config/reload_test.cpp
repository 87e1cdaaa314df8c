#include "larder/config/reload.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>

#include "larder/config/loader.hpp"

using namespace larder::config;
using namespace std::chrono_literals;

namespace {

const std::string kBase = R"(
listen: 127.0.0.1:6380
log:
  level: info
postgres:
  dsn: host=db password=hunter2
keyspaces:
  users:
    key: "user:{id}"
    table: public.users
    ttl: 1h
)";

Config load(const std::string& yaml) { return loadConfigString(yaml, "larder.yaml"); }

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

bool hasLine(const std::vector<std::string>& lines, const std::string& text) {
  return std::find(lines.begin(), lines.end(), text) != lines.end();
}

}  // namespace

TEST_CASE("reload: the same file changes nothing", "[config][reload]") {
  const Config live = load(kBase);
  const ReloadPlan plan = planReload(live, load(kBase));
  CHECK(plan.applied.empty());
  CHECK(plan.not_applied.empty());
  CHECK(plan.added.empty());
  CHECK_FALSE(plan.changed());
}

TEST_CASE("reload: TTLs, limits and the log level apply live", "[config][reload]") {
  const Config live = load(kBase);
  std::string next =
      replaced(kBase, "ttl: 1h", "ttl: 1m\n    ttl_jitter: 10%\n    negative_ttl: 5s");
  next = replaced(next, "level: info", "level: debug");
  next += "limits:\n  maxclients: 50\n  client_output_limit: 1mb\nidle_timeout: 30s\n";
  const ReloadPlan plan = planReload(live, load(next));
  CHECK(hasLine(plan.applied, "keyspaces.users.ttl: 1h -> 1m"));
  CHECK(hasLine(plan.applied, "keyspaces.users.ttl_jitter: 0% -> 10%"));
  CHECK(hasLine(plan.applied, "keyspaces.users.negative_ttl: 30s -> 5s"));
  CHECK(hasLine(plan.applied, "log.level: info -> debug"));
  CHECK(hasLine(plan.applied, "limits.maxclients: 10000 -> 50"));
  CHECK(hasLine(plan.applied, "limits.client_output_limit: 64mb -> 1mb"));
  CHECK(hasLine(plan.applied, "idle_timeout: 0 -> 30s"));
  CHECK(plan.not_applied.empty());
  CHECK(plan.effective.keyspaces[0].ttl == 1min);
  CHECK(plan.effective.keyspaces[0].negative_ttl == 5s);
  CHECK(plan.effective.limits.maxclients == 50);
  CHECK(plan.effective.log_level == "debug");
}

TEST_CASE("reload: stampede settings apply live", "[config][reload][stampede]") {
  const Config live = load(kBase);
  const std::string next = replaced(kBase, "ttl: 1h",
                                    "ttl: 1h\n    stampede:\n      lease: 500ms\n"
                                    "      early_refresh: 1.5\n"
                                    "      stale_while_revalidate: 1m");
  const ReloadPlan plan = planReload(live, load(next));
  CHECK(hasLine(plan.applied, "keyspaces.users.stampede.lease: 3s -> 500ms"));
  CHECK(hasLine(plan.applied, "keyspaces.users.stampede.early_refresh: 0 -> 1.5"));
  CHECK(hasLine(plan.applied, "keyspaces.users.stampede.stale_while_revalidate: 0 -> 1m"));
  CHECK(plan.not_applied.empty());
  CHECK(plan.effective.keyspaces[0].stampede.lease == 500ms);
  CHECK(plan.effective.keyspaces[0].stampede.early_refresh == 1.5);
  CHECK(plan.effective.keyspaces[0].stampede.stale_while_revalidate == 1min);
}

TEST_CASE("reload: what needs a restart is reported and the running value kept",
          "[config][reload]") {
  const Config live = load(kBase);
  std::string next = replaced(kBase, "127.0.0.1:6380", "127.0.0.1:7000");
  next = replaced(next, "password=hunter2", "password=swordfish");
  next = replaced(next, "table: public.users", "table: public.people");
  next += "threads: 3\n";
  const ReloadPlan plan = planReload(live, load(next));
  CHECK(
      hasLine(plan.not_applied,
              "listen: 127.0.0.1:6380 -> 127.0.0.1:7000: needs a restart; keeping 127.0.0.1:6380"));
  CHECK(hasLine(plan.not_applied, "threads: 0 -> 3: needs a restart; keeping 0"));
  CHECK(hasLine(plan.not_applied,
                "keyspaces.users.table: public.users -> public.people: needs a restart; keeping "
                "public.users"));
  CHECK(hasLine(plan.not_applied,
                "postgres.dsn: changed: needs a restart; keeping the running value"));
  CHECK(plan.applied.empty());
  CHECK(plan.effective.listen.port == 6380);
  CHECK(plan.effective.threads == 0);
  CHECK(plan.effective.keyspaces[0].table == "public.users");
  CHECK(plan.effective.postgres.dsn == live.postgres.dsn);
  for (const auto& line : plan.not_applied) {
    CHECK(line.find("hunter2") == std::string::npos);
    CHECK(line.find("swordfish") == std::string::npos);
  }
}

TEST_CASE("reload: new keyspaces are added; removed ones keep serving", "[config][reload]") {
  const Config live = load(kBase);
  std::string next = replaced(kBase, "  users:", "  orders:");
  next = replaced(next, "user:{id}", "order:{id}");
  next = replaced(next, "public.users", "public.orders");
  const ReloadPlan plan = planReload(live, load(next));
  REQUIRE(plan.added.size() == 1);
  CHECK(plan.effective.keyspaces.size() == 2);
  CHECK(plan.effective.keyspaces[0].name == "users");
  CHECK(plan.effective.keyspaces[plan.added[0]].name == "orders");
  CHECK(hasLine(plan.applied, "keyspaces.orders: added (order:{id} -> public.orders)"));
  CHECK(hasLine(plan.not_applied,
                "keyspaces.users: removed from the file: needs a restart; it keeps serving"));
}

TEST_CASE("reload: a new keyspace overlapping a running one is not added", "[config][reload]") {
  const Config live = load(kBase);
  // "users" renamed to "people" with an overlapping key: the old one still runs.
  std::string next = replaced(kBase, "  users:", "  people:");
  next = replaced(next, "user:{id}", "user:p{id}");
  const ReloadPlan plan = planReload(live, load(next));
  CHECK(plan.added.empty());
  CHECK(hasLine(plan.not_applied,
                "keyspaces.people: new, but its key overlaps keyspace 'users', which keeps "
                "serving: needs a restart"));
}

TEST_CASE("reload: without keyspaces at start, the first needs a restart", "[config][reload]") {
  const Config live = load("listen: 127.0.0.1:6380\n");
  const ReloadPlan plan = planReload(live, load(kBase));
  CHECK(plan.added.empty());
  CHECK(plan.effective.keyspaces.empty());
  CHECK(hasLine(plan.not_applied,
                "keyspaces.users: new, but Larder started without keyspaces (no PostgreSQL "
                "side): needs a restart"));
}
