// TLS keys: tls (the client listener), redis.tls and postgres.ssl*.
#include <catch2/catch.hpp>
#include <string>

#include "larder/config/loader.hpp"
#include "larder/config/reload.hpp"

using namespace larder::config;
using namespace std::chrono_literals;

namespace {

Config load(const std::string& yaml) { return loadConfigString(yaml, "test.yaml"); }

// A file that exists wherever the tests run: this source file.
const std::string kFile = __FILE__;

}  // namespace

TEST_CASE("postgres ssl keys", "[config][tls]") {
  Config c = load("postgres:\n  dsn: host=db\n  sslmode: verify-full\n  sslrootcert: " + kFile +
                  "\n  sslcert: " + kFile + "\n  sslkey: " + kFile);
  CHECK(c.postgres.sslmode == "verify-full");
  CHECK(c.postgres.sslrootcert == kFile);
  CHECK_THROWS_WITH(load("postgres:\n  sslmode: verify_full"),
                    "test.yaml: postgres.sslmode: expected one of disable, allow, prefer, "
                    "require, verify-ca, verify-full");
  CHECK_THROWS_WITH(load("postgres:\n  sslrootcert: /nonexistent/root.crt"),
                    "test.yaml: postgres.sslrootcert: cannot read '/nonexistent/root.crt': No "
                    "such file or directory");
  CHECK_THROWS_WITH(load("postgres:\n  sslcert: " + kFile),
                    "test.yaml: postgres.sslkey: is required with sslcert");
}

TEST_CASE("the TLS listener", "[config][tls]") {
  CHECK_FALSE(load("").tls.listen);
  Config c = load("tls:\n  listen: 127.0.0.1:6390\n  cert_file: " + kFile +
                  "\n  key_file: " + kFile + "\n  ca_file: " + kFile +
                  "\n  verify_clients: required\n  min_version: TLS1.3\n"
                  "  handshake_timeout: 2s");
  REQUIRE(c.tls.listen);
  CHECK(c.tls.listen->port == 6390);
  CHECK(c.tls.verify_clients == TlsVerifyClients::Required);
  CHECK(c.tls.min_version == TlsVersion::Tls13);
  CHECK(c.tls.handshake_timeout == 2s);
  CHECK_THROWS_WITH(load("tls:\n  listen: 127.0.0.1:6390"),
                    "test.yaml: tls.cert_file: is required with tls.listen");
  CHECK_THROWS_WITH(
      load("tls:\n  listen: 127.0.0.1:6390\n  cert_file: " + kFile + "\n  key_file: " + kFile +
           "\n  verify_clients: optional"),
      "test.yaml: tls.ca_file: is required when verify_clients is optional or required");
  CHECK_THROWS_WITH(load("listen: 127.0.0.1:6390\ntls:\n  listen: 127.0.0.1:6390\n  cert_file: " +
                         kFile + "\n  key_file: " + kFile),
                    "test.yaml: tls.listen: must not use the same address as listen or admin");
  CHECK_THROWS_WITH(load("tls:\n  min_version: TLS1.1"),
                    "test.yaml: tls.min_version: expected one of TLS1.2, TLS1.3");
  CHECK_THROWS_WITH(load("tls:\n  cert_file: /nonexistent.crt"),
                    "test.yaml: tls.cert_file: cannot read '/nonexistent.crt': No such file or "
                    "directory");
}

TEST_CASE("redis.tls", "[config][tls]") {
  Config c = load("redis:\n  tls:\n    enabled: true\n    ca_file: " + kFile +
                  "\n    server_name: cache.internal");
  CHECK(c.redis.tls.enabled);
  CHECK(c.redis.tls.server_name == "cache.internal");
  CHECK(redactedSummary(c).find("tls=on") != std::string::npos);
  CHECK_THROWS_WITH(load("redis:\n  tls:\n    key_file: " + kFile),
                    "test.yaml: redis.tls.cert_file: is required with key_file");
  CHECK_THROWS_WITH(load("redis:\n  tls:\n    enable: true"),
                    Catch::Contains("redis.tls.enable: unknown key (did you mean 'enabled'?)"));
}

TEST_CASE("reload: TLS listener files apply, the rest needs a restart", "[config][reload][tls]") {
  const std::string listener =
      "tls:\n  listen: 127.0.0.1:6390\n  cert_file: " + kFile + "\n  key_file: " + kFile + "\n";
  Config live = load(listener);
  Config next = load(listener + "  handshake_timeout: 1s\n  min_version: TLS1.3\n" +
                     "redis:\n  tls:\n    enabled: true\npostgres:\n  sslmode: require\n");
  ReloadPlan plan = planReload(live, next);
  CHECK(plan.effective.tls.handshake_timeout == 1s);
  CHECK(plan.effective.tls.min_version == TlsVersion::Tls13);
  CHECK_FALSE(plan.effective.redis.tls.enabled);
  CHECK(plan.effective.postgres.sslmode.empty());
  REQUIRE(plan.not_applied.size() == 2);
  CHECK(plan.not_applied[0].rfind("redis.tls.enabled", 0) == 0);
  CHECK(plan.not_applied[1].rfind("postgres.sslmode", 0) == 0);
}
