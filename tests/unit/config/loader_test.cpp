#include "larder/config/loader.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "larder/config/key_template.hpp"

using namespace larder::config;
using namespace std::chrono_literals;

namespace {

Config load(const std::string& yaml) { return loadConfigString(yaml, "test.yaml"); }

// The reason part of the error from loading `yaml`, or "" when it loads.
std::string errorOf(const std::string& yaml) {
  try {
    load(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// A valid keyspace body, so tests can vary one key at a time.
std::string keyspaceYaml(const std::string& name, const std::string& body) {
  return "postgres:\n  dsn: host=db\nkeyspaces:\n  " + name + ":\n" + body;
}

// Finds a file in the repository: under LARDER_SOURCE_DIR if the build defines
// it, else relative to this source file (CMake passes absolute paths), else by
// walking up from the current directory.
std::filesystem::path repoFile(const std::string& relative) {
  namespace fs = std::filesystem;
#ifdef LARDER_SOURCE_DIR
  if (fs::exists(fs::path(LARDER_SOURCE_DIR) / relative))
    return fs::path(LARDER_SOURCE_DIR) / relative;
#endif
  fs::path fromSource = fs::path(__FILE__).parent_path() / "../../.." / relative;
  if (fs::exists(fromSource)) return fromSource;
  for (fs::path dir = fs::current_path();; dir = dir.parent_path()) {
    if (fs::exists(dir / relative)) return dir / relative;
    if (dir == dir.root_path()) break;
  }
  FAIL("cannot find " << relative << " (run from inside the repository)");
  return {};
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (value) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() { unsetenv(name_); }

 private:
  const char* name_;
};

}  // namespace

TEST_CASE("empty config gives the defaults", "[config]") {
  for (const char* yaml : {"", "# nothing\n", "~\n"}) {
    Config c = load(yaml);
    CHECK(c.source == "test.yaml");
    CHECK(c.listen.toString() == "127.0.0.1:6380");
    CHECK(c.threads == 0);
    CHECK_FALSE(c.admin.has_value());
    CHECK(c.backlog == 511);
    CHECK(c.idle_timeout == 0ms);
    CHECK(c.requirepass.empty());
    CHECK(c.log_level == "info");
    CHECK(c.log_format == LogFormat::Text);
    CHECK(c.redis.address.toString() == "127.0.0.1:6379");
    CHECK(c.redis.db == 0);
    CHECK(c.redis.connections_per_worker == 2);
    CHECK(c.redis.max_pinned_per_worker == 1024);
    CHECK(c.redis.connect_timeout == 2s);
    CHECK(c.redis.reconnect_min == 100ms);
    CHECK(c.redis.reconnect_max == 2s);
    CHECK(c.postgres.dsn.empty());
    CHECK(c.postgres.pool_size == 4);
    CHECK(c.postgres.connect_timeout == 5s);
    CHECK(c.postgres.statement_timeout == 5s);
    CHECK(c.limits.max_array_len == 1024 * 1024);
    CHECK(c.limits.max_bulk_len == 512ull * 1024 * 1024);
    CHECK(c.limits.max_inline_len == 64 * 1024);
    CHECK(c.limits.max_inflight_per_client == 128);
    CHECK(c.redis.max_pending_per_connection == 4096);
    CHECK(c.read_through.batch_window == std::chrono::microseconds(500));
    CHECK(c.read_through.load_timeout == larder::config::Millis(2000));
    CHECK(c.limits.client_output_limit == 64ull * 1024 * 1024);
    CHECK(c.limits.maxclients == 10000);
    CHECK(c.keyspaces.empty());
  }
}

TEST_CASE("every key is read", "[config]") {
  Config c = load(R"(
listen: "[::1]:7000"
threads: 8
admin: 0.0.0.0:9121
backlog: 1024
idle_timeout: 5m
requirepass: hunter2
log:
  level: debug
  format: json
redis:
  address: redis.internal:6380
  username: larder
  password: pw
  db: 3
  connections_per_worker: 4
  max_pinned_per_worker: 16
  connect_timeout: 500ms
  reconnect_min: 50ms
  reconnect_max: 10s
postgres:
  dsn: host=db
  pool_size: 8
  connect_timeout: 3s
  statement_timeout: 0
limits:
  max_array_len: 1000
  max_bulk_len: 1MB
  max_inline_len: 4k
  max_inflight_per_client: 64
  client_output_limit: 1g
  maxclients: 50
keyspaces:
  users:
    key: "user:{id}"
    table: public.users
    shape: hash
    columns: [name, email]
    ttl: 1h
    ttl_jitter: 10%
    negative_ttl: 30s
    write: behind
  orders:
    key: "order:{tenant}:{id}"
    table: '"Sales"."Order Lines"'
    shape: string
    columns: [payload]
    ttl: 0
    ttl_jitter: 2.5%
    negative_ttl: 0
    write: through
  sessions:
    key: "sess:{sid}"
    table: auth.sessions
    write: none
)");
  CHECK(c.listen.host == "::1");
  CHECK(c.listen.port == 7000);
  CHECK(c.listen.toString() == "[::1]:7000");
  CHECK(c.threads == 8);
  REQUIRE(c.admin.has_value());
  CHECK(c.admin->toString() == "0.0.0.0:9121");
  CHECK(c.backlog == 1024);
  CHECK(c.idle_timeout == 5min);
  CHECK(c.requirepass == "hunter2");
  CHECK(c.log_level == "debug");
  CHECK(c.log_format == LogFormat::Json);
  CHECK(c.redis.address.host == "redis.internal");
  CHECK(c.redis.address.port == 6380);
  CHECK(c.redis.username == "larder");
  CHECK(c.redis.password == "pw");
  CHECK(c.redis.db == 3);
  CHECK(c.redis.connections_per_worker == 4);
  CHECK(c.redis.max_pinned_per_worker == 16);
  CHECK(c.redis.connect_timeout == 500ms);
  CHECK(c.redis.reconnect_min == 50ms);
  CHECK(c.redis.reconnect_max == 10s);
  CHECK(c.postgres.dsn == "host=db");
  CHECK(c.postgres.pool_size == 8);
  CHECK(c.postgres.connect_timeout == 3s);
  CHECK(c.postgres.statement_timeout == 0ms);
  CHECK(c.limits.max_array_len == 1000);
  CHECK(c.limits.max_bulk_len == 1024 * 1024);
  CHECK(c.limits.max_inline_len == 4096);
  CHECK(c.limits.max_inflight_per_client == 64);
  CHECK(c.limits.client_output_limit == 1024ull * 1024 * 1024);
  CHECK(c.limits.maxclients == 50);

  REQUIRE(c.keyspaces.size() == 3);
  const KeyspaceConfig& users = c.keyspaces[0];
  CHECK(users.name == "users");
  CHECK(users.key == "user:{id}");
  CHECK(users.table == "public.users");
  CHECK(users.shape == KeyShape::Hash);
  CHECK(users.columns == std::vector<std::string>{"name", "email"});
  CHECK(users.ttl == 1h);
  CHECK(users.ttl_jitter == Approx(0.1));
  CHECK(users.negative_ttl == 30s);
  CHECK(users.write == WriteMode::Behind);
  const KeyspaceConfig& orders = c.keyspaces[1];
  CHECK(orders.name == "orders");
  CHECK(orders.table == "\"Sales\".\"Order Lines\"");
  CHECK(orders.shape == KeyShape::String);
  CHECK(orders.ttl == 0ms);
  CHECK(orders.ttl_jitter == Approx(0.025));
  CHECK(orders.negative_ttl == 0ms);
  CHECK(orders.write == WriteMode::Through);
  const KeyspaceConfig& sessions = c.keyspaces[2];
  CHECK(sessions.columns.empty());
  CHECK(sessions.ttl == 1h);
  CHECK(sessions.ttl_jitter == 0.0);
  CHECK(sessions.write == WriteMode::None);
}

TEST_CASE("threads accepts auto or 1..256", "[config]") {
  CHECK(load("threads: auto").threads == 0);
  CHECK(load("threads: 1").threads == 1);
  CHECK(load("threads: 256").threads == 256);
  const char* reason = "expected 'auto' or an integer from 1 to 256";
  CHECK_THROWS_WITH(load("threads: 0"), std::string("test.yaml: threads: ") + reason);
  CHECK_THROWS_WITH(load("threads: 257"), std::string("test.yaml: threads: ") + reason);
  CHECK_THROWS_WITH(load("threads: many"), std::string("test.yaml: threads: ") + reason);
}

TEST_CASE("endpoints", "[config]") {
  CHECK(load("listen: localhost:1").listen.toString() == "localhost:1");
  CHECK(load("listen: 10.0.0.1:65535").listen.port == 65535);
  CHECK(load("listen: '[fe80::1%eth0]:6380'").listen.host == "fe80::1%eth0");
  CHECK_FALSE(load("admin:").admin.has_value());
  CHECK_FALSE(load("admin: ''").admin.has_value());

  CHECK_THROWS_WITH(load("redis:\n  address: 127.0.0.1:70000"),
                    "test.yaml: redis.address: port 70000 is out of range");
  CHECK_THROWS_WITH(load("listen: 127.0.0.1:0"), "test.yaml: listen: port 0 is out of range");
  CHECK_THROWS_WITH(load("listen: 127.0.0.1:99999999999"),
                    "test.yaml: listen: port 99999999999 is out of range");
  CHECK_THROWS_WITH(
      load("listen: 127.0.0.1"),
      "test.yaml: listen: missing port (expected host:port such as 127.0.0.1:6380 or [::1]:6380)");
  CHECK_THROWS_WITH(
      load("listen: '127.0.0.1:'"),
      "test.yaml: listen: missing port (expected host:port such as 127.0.0.1:6380 or [::1]:6380)");
  CHECK_THROWS_WITH(load("listen: 127.0.0.1:http"),
                    "test.yaml: listen: port 'http' is not a number");
  CHECK_THROWS_WITH(load("listen: ::1:6380"),
                    "test.yaml: listen: IPv6 addresses must be in brackets, e.g. [::1]:6380");
  CHECK_THROWS_WITH(load("listen: '[localhost]:6380'"),
                    "test.yaml: listen: brackets are only for IPv6 addresses, e.g. [::1]:6380");
  CHECK_THROWS_WITH(load("listen: ':6380'"),
                    "test.yaml: listen: expected host:port such as 127.0.0.1:6380 or [::1]:6380");
  CHECK_THROWS_WITH(load("listen: 'a b:6380'"), "test.yaml: listen: invalid host 'a b'");
  CHECK_THROWS_WITH(load("listen: [1, 2]"),
                    "test.yaml: listen: expected host:port such as 127.0.0.1:6380 or [::1]:6380");
  CHECK_THROWS_WITH(load("listen: 127.0.0.1:6380\nadmin: 127.0.0.1:6380"),
                    "test.yaml: admin: must not use the same address as listen");
  CHECK_THROWS_WITH(load("listen: 0.0.0.0:6380\nadmin: 127.0.0.1:6380"),
                    "test.yaml: admin: must not use the same address as listen");
  CHECK(load("listen: 127.0.0.1:6380\nadmin: 127.0.0.2:6380").admin->port == 6380);
}

TEST_CASE("Endpoint::toString brackets IPv6 hosts", "[config]") {
  CHECK(Endpoint{"127.0.0.1", 6379}.toString() == "127.0.0.1:6379");
  CHECK(Endpoint{"redis", 1}.toString() == "redis:1");
  CHECK(Endpoint{"::1", 6380}.toString() == "[::1]:6380");
}

TEST_CASE("unknown keys are rejected with a suggestion", "[config]") {
  CHECK_THROWS_WITH(load("redis:\n  adress: 127.0.0.1:6379"),
                    "test.yaml: redis.adress: unknown key (did you mean 'address'?)");
  CHECK_THROWS_WITH(load("lisen: 127.0.0.1:1"),
                    "test.yaml: lisen: unknown key (did you mean 'listen'?)");
  CHECK_THROWS_WITH(load("completely_unrelated: 1"),
                    "test.yaml: completely_unrelated: unknown key");
  CHECK_THROWS_WITH(load("log:\n  levle: info"),
                    "test.yaml: log.levle: unknown key (did you mean 'level'?)");
  CHECK_THROWS_WITH(load("limits:\n  max_clients: 5"),
                    "test.yaml: limits.max_clients: unknown key (did you mean 'maxclients'?)");
  CHECK_THROWS_WITH(load(keyspaceYaml("users", "    key: u:{id}\n    table: a.b\n    tll: 1h\n")),
                    "test.yaml: keyspaces.users.tll: unknown key (did you mean 'ttl'?)");
  CHECK_THROWS_WITH(load("listen: 127.0.0.1:1\nlisten: 127.0.0.1:2"),
                    "test.yaml: listen: duplicate key");
  // Unknown keys are reported even when their value would fail substitution.
  CHECK_THROWS_WITH(load("redis:\n  pasword: ${LARDER_TEST_SURELY_UNSET}"),
                    "test.yaml: redis.pasword: unknown key (did you mean 'password'?)");
}

TEST_CASE("wrong types name the expected form", "[config]") {
  CHECK_THROWS_WITH(load("redis: 5"), "test.yaml: redis: expected a map");
  CHECK_THROWS_WITH(load("log: [a]"), "test.yaml: log: expected a map");
  CHECK_THROWS_WITH(load("- a\n- b"), "test.yaml: (top level): expected a map of settings");
  CHECK_THROWS_WITH(load("backlog: lots"), "test.yaml: backlog: expected an integer");
  CHECK_THROWS_WITH(load("backlog: 1.5"), "test.yaml: backlog: expected an integer");
  CHECK_THROWS_WITH(load("backlog: 0x10"), "test.yaml: backlog: expected an integer");
  CHECK_THROWS_WITH(load("backlog: 0"), "test.yaml: backlog: must be between 1 and 65535");
  CHECK_THROWS_WITH(load("idle_timeout: soon"),
                    "test.yaml: idle_timeout: expected a duration such as 500ms, 30s, 1h");
  CHECK_THROWS_WITH(load("idle_timeout: -5s"),
                    "test.yaml: idle_timeout: expected a duration such as 500ms, 30s, 1h");
  CHECK_THROWS_WITH(load("idle_timeout:"),
                    "test.yaml: idle_timeout: expected a duration such as 500ms, 30s, 1h");
  CHECK_THROWS_WITH(load("requirepass: {a: b}"), "test.yaml: requirepass: expected a string");
  CHECK_THROWS_WITH(load("log:\n  level: verbose"),
                    "test.yaml: log.level: expected one of trace, debug, info, warn, error, "
                    "critical, off");
  CHECK_THROWS_WITH(load("log:\n  format: xml"),
                    "test.yaml: log.format: expected one of text, json");
  CHECK_THROWS_WITH(load("limits:\n  max_bulk_len: huge"),
                    "test.yaml: limits.max_bulk_len: expected a size such as 512kb, 64mb, 1gb");
  CHECK_THROWS_WITH(load("limits:\n  max_bulk_len: 0"),
                    "test.yaml: limits.max_bulk_len: must be greater than 0");
  CHECK_THROWS_WITH(load("limits:\n  maxclients: 0"),
                    "test.yaml: limits.maxclients: must be between 1 and 1000000");
  CHECK_THROWS_WITH(load("limits:\n  max_array_len: -1"),
                    "test.yaml: limits.max_array_len: must be between 1 and 2147483647");
  CHECK_THROWS_WITH(load("keyspaces: [users]"),
                    "test.yaml: keyspaces: expected a map of keyspace names to settings");
  CHECK_THROWS_WITH(load("postgres:\n  dsn: x\nkeyspaces:\n  users: 5"),
                    "test.yaml: keyspaces.users: expected a map");
}

TEST_CASE("redis and postgres ranges", "[config]") {
  CHECK(load("redis:\n  db: 1000000").redis.db == 1000000);
  CHECK_THROWS_WITH(load("redis:\n  db: -1"), "test.yaml: redis.db: must be between 0 and 1000000");
  CHECK_THROWS_WITH(load("redis:\n  connections_per_worker: 65"),
                    "test.yaml: redis.connections_per_worker: must be between 1 and 64");
  CHECK_THROWS_WITH(load("redis:\n  max_pinned_per_worker: 0"),
                    "test.yaml: redis.max_pinned_per_worker: must be between 1 and 100000");
  CHECK_THROWS_WITH(load("redis:\n  connect_timeout: 0"),
                    "test.yaml: redis.connect_timeout: must be greater than 0");
  CHECK_THROWS_WITH(load("redis:\n  reconnect_min: 5s\n  reconnect_max: 1s"),
                    "test.yaml: redis.reconnect_max: must be at least reconnect_min (5s)");
  CHECK_THROWS_WITH(load("redis:\n  reconnect_min: 3s"),
                    "test.yaml: redis.reconnect_max: must be at least reconnect_min (3s)");
  CHECK(load("redis:\n  reconnect_min: 2s").redis.reconnect_max == 2s);
  CHECK_THROWS_WITH(load("postgres:\n  pool_size: 0"),
                    "test.yaml: postgres.pool_size: must be between 1 and 64");
  CHECK_THROWS_WITH(load("postgres:\n  connect_timeout: 0s"),
                    "test.yaml: postgres.connect_timeout: must be greater than 0");
}

TEST_CASE("redis.cluster: exclusive with redis.address; write-behind without WAIT or audit",
          "[config][cluster]") {
  const std::string seeds = "redis:\n  cluster:\n    seeds: [127.0.0.1:7000, 127.0.0.1:7001]\n";
  const Config config = load(seeds);
  CHECK(config.redis.clusterMode());
  CHECK(config.redis.cluster.seeds.size() == 2);
  CHECK(errorOf("redis:\n  address: 127.0.0.1:6379\n  cluster:\n    seeds: [127.0.0.1:7000]\n") ==
        "test.yaml: redis.address: and redis.cluster.seeds are exclusive: give one Redis or a "
        "cluster's seeds");
  const std::string base = "    key: user:{id}\n    table: public.users\n";
  CHECK(load(seeds + keyspaceYaml("users", base + "    write: none\n    near_cache: {}\n"))
            .keyspaces[0]
            .near_cache.enabled);
  for (auto [text, mode] : {std::pair{"none", WriteMode::None},
                            {"through", WriteMode::Through},
                            {"behind", WriteMode::Behind}}) {
    const Config c = load(seeds + keyspaceYaml("users", base + "    write: " + text + "\n"));
    REQUIRE(c.keyspaces.size() == 1);
    CHECK(c.keyspaces[0].write == mode);
  }
  // Write-behind (the default) on a cluster, with WAIT for the key's node's
  // replicas and the persistence audit of every primary (docs/cluster.md).
  const Config durable =
      load(seeds + "write_behind:\n  wait_replicas: 1\n  require_durable_redis: true\n" +
           keyspaceYaml("users", base));
  CHECK(durable.write_behind.wait_replicas == 1);
  CHECK(durable.write_behind.require_durable_redis);
  // Any mode loads against one Redis.
  CHECK(
      load("write_behind:\n  wait_replicas: 1\n" + keyspaceYaml("users", base)).keyspaces.size() ==
      1);
}

TEST_CASE("keyspace settings are validated", "[config]") {
  auto error = [](const std::string& body) { return errorOf(keyspaceYaml("users", body)); };
  const std::string base = "    key: user:{id}\n    table: public.users\n";

  CHECK(error("    table: public.users\n") == "test.yaml: keyspaces.users.key: is required");
  CHECK(error("    key: user:{id}\n") == "test.yaml: keyspaces.users.table: is required");
  CHECK(errorOf("keyspaces:\n  users:\n" + base) ==
        "test.yaml: postgres.dsn: is required when keyspaces are configured");
  CHECK(errorOf(keyspaceYaml("users", base) + "  users:\n" + base) ==
        "test.yaml: keyspaces.users: duplicate key");
  CHECK(errorOf(keyspaceYaml("us.ers", base)) ==
        "test.yaml: keyspaces.us.ers: keyspace names may contain only letters, digits, '_' and "
        "'-'");

  CHECK(error(base + "    ttl: 1x\n") ==
        "test.yaml: keyspaces.users.ttl: expected a duration such as 500ms, 30s, 1h");
  CHECK(error(base + "    negative_ttl: forever\n") ==
        "test.yaml: keyspaces.users.negative_ttl: expected a duration such as 500ms, 30s, 1h");
  CHECK(error(base + "    ttl_jitter: 0.1\n") ==
        "test.yaml: keyspaces.users.ttl_jitter: expected a percentage such as 10%");
  CHECK(error(base + "    ttl_jitter: 101%\n") ==
        "test.yaml: keyspaces.users.ttl_jitter: must be between 0% and 100%");
  CHECK(error(base + "    ttl_jitter: -1%\n") ==
        "test.yaml: keyspaces.users.ttl_jitter: expected a percentage such as 10%");
  CHECK(load(keyspaceYaml("users", base + "    ttl_jitter: 100%\n")).keyspaces[0].ttl_jitter ==
        1.0);
  CHECK(load(keyspaceYaml("users", base + "    ttl_jitter: 0%\n")).keyspaces[0].ttl_jitter == 0.0);
  CHECK(error(base + "    shape: list\n") ==
        "test.yaml: keyspaces.users.shape: expected one of hash, string");
  CHECK(error(base + "    write: around\n") ==
        "test.yaml: keyspaces.users.write: expected one of behind, through, none");

  CHECK(error(base + "    columns: name\n") ==
        "test.yaml: keyspaces.users.columns: expected a list of column names");
  CHECK(error(base + "    columns: []\n") ==
        "test.yaml: keyspaces.users.columns: must list at least one column (omit it for all "
        "columns)");
  CHECK(error(base + "    columns: [name, name]\n") ==
        "test.yaml: keyspaces.users.columns[1]: duplicate column 'name'");
  CHECK(error(base + "    columns: [name, 'bad name']\n") ==
        "test.yaml: keyspaces.users.columns[1]: 'bad name' is not a column name");
  CHECK(error(base + "    columns: [[a]]\n") ==
        "test.yaml: keyspaces.users.columns[0]: expected a list of column names");
  CHECK(load(keyspaceYaml("users", base + "    columns: ['\"Full Name\"']\n"))
            .keyspaces[0]
            .columns[0] == "\"Full Name\"");
  CHECK(error(base + "    shape: string\n    columns: [a, b]\n") ==
        "test.yaml: keyspaces.users.columns: string shape needs exactly one column");
  CHECK(load(keyspaceYaml("users", base + "    shape: string\n")).keyspaces[0].columns.empty());
}

TEST_CASE("table names must be schema-qualified", "[config]") {
  auto table = [](const std::string& name) {
    return errorOf(keyspaceYaml("users", "    key: user:{id}\n    table: '" + name + "'\n"));
  };
  const std::string bad =
      "test.yaml: keyspaces.users.table: expected a schema-qualified table such as public.users";
  CHECK(table("public.users") == "");
  CHECK(table("app_1.user$s") == "");
  CHECK(table("\"My Schema\".\"My \"\"Table\"\"\"") == "");
  CHECK(table("users") == bad);
  CHECK(table("public.") == bad);
  CHECK(table(".users") == bad);
  CHECK(table("a.b.c") == bad);
  CHECK(table("public.1users") == bad);
  CHECK(table("public.\"\"") == bad);
  CHECK(table("public.\"open") == bad);
  CHECK(table("public.users; drop table x") == bad);
}

TEST_CASE("key templates are validated", "[config]") {
  auto key = [](const std::string& text) {
    return errorOf(keyspaceYaml("users", "    key: '" + text + "'\n    table: public.users\n"));
  };
  const std::string prefix = "test.yaml: keyspaces.users.key: ";
  CHECK(key("user:{id}") == "");
  CHECK(key("{id}") == "");
  CHECK(key("order:{tenant}:{id}:v") == "");
  CHECK(key("user") == prefix + "key template needs at least one {placeholder}, e.g. user:{id}");
  CHECK(key("") == prefix + "key template needs at least one {placeholder}, e.g. user:{id}");
  CHECK(key("user:{}") == prefix + "empty placeholder {} in key template");
  CHECK(key("user:{1d}") == prefix + "placeholder {1d} is not an identifier");
  CHECK(key("user:{a-b}") == prefix + "placeholder {a-b} is not an identifier");
  CHECK(key("user:{a}{b}") ==
        prefix + "placeholders {a} and {b} are adjacent; separate them with literal text");
  CHECK(key("user:{id}:{id}") == prefix + "placeholder {id} appears more than once");
  CHECK(key("user:{id") == prefix + "unmatched '{' in key template");
  CHECK(key("user:{a{b}}") == prefix + "unmatched '{' in key template");
  CHECK(key("user:id}") == prefix + "unmatched '}' in key template");
  CHECK(key("user:{id}}") == prefix + "unmatched '}' in key template");
  CHECK(key("__larder:{id}") == prefix + "must not start with the reserved prefix __larder:");
}

TEST_CASE("parseKeyTemplate splits literals and placeholders", "[config]") {
  KeyTemplate t;
  std::string error;
  REQUIRE(parseKeyTemplate("order:{tenant}:{id}", t, error));
  CHECK(t.literals == std::vector<std::string>{"order:", ":", ""});
  CHECK(t.placeholders == std::vector<std::string>{"tenant", "id"});
  CHECK(t.prefix() == "order:");
  REQUIRE(parseKeyTemplate("{id}/x", t, error));
  CHECK(t.literals == std::vector<std::string>{"", "/x"});
  CHECK_FALSE(parseKeyTemplate("x", t, error));
}

TEST_CASE("overlapping keyspaces are rejected", "[config]") {
  auto two = [](const std::string& a, const std::string& b) {
    return errorOf("postgres:\n  dsn: host=db\nkeyspaces:\n  first:\n    key: '" + a +
                   "'\n    table: public.a\n  second:\n    key: '" + b +
                   "'\n    table: public.b\n");
  };
  const std::string overlap = "test.yaml: keyspaces.second.key: overlaps keyspace 'first'";
  CHECK(two("user:{id}", "order:{id}") == "");
  CHECK(two("user:{id}", "users:{id}") == "");  // neither prefix starts the other
  CHECK(two("user:{id}", "user:{id}:orders") == overlap);
  CHECK(two("user:{id}", "user:admin:{id}") == overlap);
  CHECK(two("user:{a}", "user:{b}") == overlap);
  CHECK(two("u{id}", "user:{id}") == overlap);
  CHECK(two("{id}", "user:{id}") == overlap);
  CHECK(two("a:{id}", "b:{id}") == "");
}

TEST_CASE("environment variables are substituted", "[config]") {
  ScopedEnv password("LARDER_TEST_PASSWORD", "s3cr3t-value");
  ScopedEnv host("LARDER_TEST_HOST", "10.1.2.3");
  ScopedEnv empty("LARDER_TEST_EMPTY", "");
  ScopedEnv unset("LARDER_TEST_UNSET", nullptr);

  Config c = load(R"(
listen: ${LARDER_TEST_HOST}:6380
requirepass: ${LARDER_TEST_PASSWORD}
admin: ${LARDER_TEST_EMPTY}
redis:
  password: "a${LARDER_TEST_PASSWORD}b"
  username: "$${LARDER_TEST_PASSWORD}"
postgres:
  dsn: "host=${LARDER_TEST_HOST} password=${LARDER_TEST_PASSWORD} x=$$y"
)");
  CHECK(c.listen.toString() == "10.1.2.3:6380");
  CHECK(c.requirepass == "s3cr3t-value");
  CHECK_FALSE(c.admin.has_value());
  CHECK(c.redis.password == "as3cr3t-valueb");
  CHECK(c.redis.username == "${LARDER_TEST_PASSWORD}");
  CHECK(c.postgres.dsn == "host=10.1.2.3 password=s3cr3t-value x=$$y");

  CHECK_THROWS_WITH(load("redis:\n  password: ${LARDER_TEST_UNSET}"),
                    "test.yaml: redis.password: environment variable LARDER_TEST_UNSET is not set");
  CHECK_THROWS_WITH(
      load(keyspaceYaml("users", "    key: u:{id}\n    table: a.${LARDER_TEST_UNSET}\n")),
      "test.yaml: keyspaces.users.table: environment variable LARDER_TEST_UNSET is "
      "not set");
  CHECK_THROWS_WITH(load("requirepass: ${LARDER_TEST_PASSWORD"),
                    "test.yaml: requirepass: unterminated ${ (write $${ for a literal ${)");
  CHECK_THROWS_WITH(load("requirepass: ${1X}"),
                    "test.yaml: requirepass: invalid environment variable name '1X'");

  // A substituted secret that fails validation is not echoed.
  ScopedEnv port("LARDER_TEST_PORTISH", "s3cr3t-value");
  std::string message = errorOf("backlog: ${LARDER_TEST_PORTISH}");
  CHECK(message == "test.yaml: backlog: expected an integer");
  CHECK(message.find("s3cr3t") == std::string::npos);
}

TEST_CASE("YAML syntax errors give line and column", "[config]") {
  CHECK_THROWS_WITH(load("a: [1, 2\nb: 3\n"),
                    "test.yaml: line 2 column 2: end of sequence flow not found");
  CHECK_THROWS_WITH(load("listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n"),
                    "test.yaml: (top level): expected a single YAML document");
  try {
    load("a: 1\n b: 2\n");
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(e.key() == "line 2 column 3");
    CHECK(e.reason() == "illegal map value");
  }
}

TEST_CASE("loadConfigFile reports unreadable files", "[config]") {
  try {
    loadConfigFile("/nonexistent/larder.yaml");
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(e.key() == "");
    CHECK(e.reason() == "cannot read file: No such file or directory");
    CHECK(std::string(e.what()).rfind("/nonexistent/larder.yaml: ", 0) == 0);
  }
  try {
    loadConfigFile("/");
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(e.reason() == "cannot read file: Is a directory");
  }
}

TEST_CASE("shipped config files load", "[config]") {
  ScopedEnv a("LARDER_PASSWORD", "pw1");
  ScopedEnv b("REDIS_PASSWORD", "pw2");
  ScopedEnv c("PG_PASSWORD", "pw3");

  std::string reference = repoFile("config/larder.yaml").string();
  Config larder = loadConfigFile(reference);
  CHECK(larder.source == reference);
  CHECK(larder.requirepass == "pw1");
  CHECK(larder.redis.password == "pw2");
  CHECK(larder.postgres.dsn == "host=127.0.0.1 port=5432 dbname=app user=app password=pw3");
  CHECK(larder.admin->toString() == "127.0.0.1:9121");
  REQUIRE(larder.keyspaces.size() == 1);
  CHECK(larder.keyspaces[0].columns == std::vector<std::string>{"name", "email"});

  Config demo = loadConfigFile(repoFile("config/demo.yaml").string());
  CHECK(demo.listen.toString() == "127.0.0.1:6380");
  CHECK(demo.redis.address.toString() == "127.0.0.1:6390");
  CHECK(demo.postgres.dsn == "host=127.0.0.1 port=5440 dbname=larder user=larder");
  CHECK_FALSE(demo.admin.has_value());
  REQUIRE(demo.keyspaces.size() == 1);
  const KeyspaceConfig& users = demo.keyspaces[0];
  CHECK(users.name == "users");
  CHECK(users.key == "user:{id}");
  CHECK(users.table == "public.users");
  CHECK(users.shape == KeyShape::Hash);
  CHECK(users.ttl == 1h);
  CHECK(users.ttl_jitter == Approx(0.1));
  CHECK(users.negative_ttl == 30s);
  CHECK(users.write == WriteMode::Behind);
}

TEST_CASE("redactedSummary hides every secret", "[config]") {
  const std::string secret = "s3cr3t-value";
  ScopedEnv env("LARDER_TEST_SECRET", secret.c_str());
  auto summaryFor = [](const std::string& dsn) {
    return redactedSummary(load(R"(
requirepass: ${LARDER_TEST_SECRET}
redis:
  username: cacheuser
  password: ${LARDER_TEST_SECRET}
postgres:
  dsn: ")" + dsn + R"("
keyspaces:
  users:
    key: "user:{id}"
    table: public.users
    columns: [name, email]
    ttl_jitter: 10%
)"));
  };

  std::string summary = summaryFor("host=db user=app password=${LARDER_TEST_SECRET} dbname=app");
  CHECK(summary.find(secret) == std::string::npos);
  CHECK_THAT(summary, Catch::Contains("requirepass: *****"));
  CHECK_THAT(summary, Catch::Contains("listen: 127.0.0.1:6380"));
  CHECK_THAT(summary, Catch::Contains("threads: auto"));
  CHECK_THAT(summary, Catch::Contains("redis: address=127.0.0.1:6379 db=0 username=cacheuser "
                                      "password=*****"));
  CHECK_THAT(summary,
             Catch::Contains("dsn=\"host=db user=app password=***** dbname=app\" pool_size=4"));
  CHECK_THAT(summary, Catch::Contains("  users: key=user:{id} table=public.users shape=hash "
                                      "columns=[name,email] ttl=1h ttl_jitter=10% "
                                      "negative_ttl=30s write=behind"));

  // Other DSN spellings libpq accepts.
  for (const std::string dsn : {
           "host=db password = ${LARDER_TEST_SECRET}",
           "host=db password='${LARDER_TEST_SECRET} with spaces' user=app",
           "host=db password='it\\\\'s ${LARDER_TEST_SECRET}' user=app",
           "host=db PASSWORD=${LARDER_TEST_SECRET}",
           "host=db sslpassword=${LARDER_TEST_SECRET}",
           "host=db password='${LARDER_TEST_SECRET}",  // unterminated quote
           "host=db ${LARDER_TEST_SECRET}",            // malformed: no '='
           "postgresql://app:${LARDER_TEST_SECRET}@db:5432/app",
           "postgres://app:${LARDER_TEST_SECRET}@db/app?sslmode=require",
           "postgresql://app:pa/ss${LARDER_TEST_SECRET}@db/app",
           "postgresql://db/app?user=app&password=${LARDER_TEST_SECRET}&sslmode=disable",
       }) {
    INFO(dsn);
    std::string text = summaryFor(dsn);
    CHECK(text.find(secret) == std::string::npos);
    CHECK_THAT(text, Catch::Contains("*****"));
  }
  CHECK_THAT(summaryFor("postgresql://app:${LARDER_TEST_SECRET}@db:5432/app?sslmode=require"),
             Catch::Contains("dsn=\"postgresql://app:*****@db:5432/app?sslmode=require\""));
  CHECK_THAT(summaryFor("postgresql://db/app?user=app&password=${LARDER_TEST_SECRET}&x=1"),
             Catch::Contains("dsn=\"postgresql://db/app?user=app&password=*****&x=1\""));
  CHECK_THAT(summaryFor("host=db password='a b ${LARDER_TEST_SECRET}' user=app"),
             Catch::Contains("dsn=\"host=db password=***** user=app\""));

  Config plain = load("");
  std::string defaults = redactedSummary(plain);
  CHECK_THAT(defaults, Catch::Contains("requirepass: (none)"));
  CHECK_THAT(defaults, Catch::Contains("password=(none)"));
  CHECK_THAT(defaults, Catch::Contains("dsn=(none)"));
  CHECK_THAT(defaults, Catch::Contains("keyspaces: (none)"));
}

TEST_CASE("parseDuration", "[config]") {
  struct Row {
    const char* text;
    long long ms;
  };
  for (Row row : std::initializer_list<Row>{{"0", 0},
                                            {"0ms", 0},
                                            {"500ms", 500},
                                            {"30s", 30000},
                                            {"30", 30000},
                                            {"5m", 300000},
                                            {"1h", 3600000},
                                            {"1d", 86400000},
                                            {"007s", 7000},
                                            {"9223372036854775807ms", 9223372036854775807LL}}) {
    INFO(row.text);
    Millis out{-1};
    CHECK(parseDuration(row.text, out));
    CHECK(out.count() == row.ms);
  }
  for (const char* bad :
       {"", "ms", "-1s", "+1s", "1.5s", "1 s", " 1s", "1S", "1H", "1w", "1h30m", "abc",
        "9223372036854775808ms", "9223372036854775807s", "99999999999999999999999"}) {
    INFO(bad);
    Millis out{-1};
    CHECK_FALSE(parseDuration(bad, out));
  }
}

TEST_CASE("parseSize", "[config]") {
  struct Row {
    const char* text;
    std::size_t bytes;
  };
  for (Row row : std::initializer_list<Row>{{"0", 0},
                                            {"100", 100},
                                            {"100b", 100},
                                            {"1k", 1024},
                                            {"512kb", 512 * 1024},
                                            {"512KB", 512 * 1024},
                                            {"64mb", 64 * 1024 * 1024},
                                            {"64M", 64 * 1024 * 1024},
                                            {"1gb", 1024ull * 1024 * 1024},
                                            {"1Gb", 1024ull * 1024 * 1024}}) {
    INFO(row.text);
    std::size_t out = 1;
    CHECK(parseSize(row.text, out));
    CHECK(out == row.bytes);
  }
  for (const char* bad : {"", "kb", "-1", "1.5mb", "64 mb", "64MiB", "1tb", "64mbs", "abc",
                          "17179869184gb", "99999999999999999999999"}) {
    INFO(bad);
    std::size_t out = 1;
    CHECK_FALSE(parseSize(bad, out));
  }
}
