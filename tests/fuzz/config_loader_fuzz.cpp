// libFuzzer target for the config loader. The input is a YAML file. The loader
// must return a Config or throw ConfigError: any other exception (a yaml-cpp one
// escaping, std::out_of_range from a stoul, ...) or a crash is a bug. A Config it
// returns must hold what the loader promises to validate, and its redacted
// summary must not show a PostgreSQL password.
//
// parseDuration and parseSize are also checked against a reference on the
// whole input and on each line's value ("connect_timeout: 2s" -> "2s"), so the
// YAML seeds exercise them with realistic text.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "larder/config/key_template.hpp"
#include "larder/config/loader.hpp"

namespace {

using namespace larder::config;

// Not assert(): must hold in release builds too.
#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

constexpr const char* kSource = "fuzz.yaml";
constexpr std::string_view kPgSecret = "Pg5ecretFz";

// The variables the seed configs use (config/larder.yaml, docker/larder.yaml), so
// they load and mutations reach past ${VAR} substitution. Set once per process,
// before the first input; the fuzz binary is single-threaded.
void setEnvironment() {
  static const bool done = [] {
    const std::pair<const char*, const char*> vars[] = {{"LARDER_PASSWORD", "client-pass"},
                                                        {"REDIS_PASSWORD", "redis-pass"},
                                                        {"PG_PASSWORD", kPgSecret.data()},
                                                        {"LARDER_LISTEN", "0.0.0.0:6380"},
                                                        {"LARDER_ADMIN", "0.0.0.0:9121"},
                                                        {"LARDER_THREADS", "auto"},
                                                        {"LARDER_LOG_LEVEL", "info"},
                                                        {"LARDER_LOG_FORMAT", "text"},
                                                        {"REDIS_ADDRESS", "127.0.0.1:6379"},
                                                        {"PG_HOST", "127.0.0.1"},
                                                        {"PG_PORT", "5432"},
                                                        {"PG_DATABASE", "larder"},
                                                        {"PG_USER", "larder"},
                                                        {"EMPTY", ""}};
    for (const auto& [name, value] : vars) setenv(name, value, 1);
    return true;
  }();
  (void)done;
}

// Reference for parseDuration/parseSize: leading decimal digits, then a unit
// from `units`; the product must fit in `max`. Overflow is detected by the
// checked builtins rather than by division as the loader does.
struct Unit {
  std::string_view name;
  unsigned long long scale;
};

bool referenceParse(std::string_view text, std::initializer_list<Unit> units, bool fold_case,
                    std::uint64_t max, std::uint64_t& out) {
  std::size_t digits = 0;
  std::uint64_t number = 0;
  bool overflow = false;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    overflow |= __builtin_mul_overflow(number, 10u, &number);
    overflow |= __builtin_add_overflow(number, static_cast<unsigned>(text[digits] - '0'), &number);
    ++digits;
  }
  if (digits == 0 || overflow) return false;
  std::string unit(text.substr(digits));
  if (fold_case) {
    for (char& c : unit) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
  }
  for (const Unit& u : units) {
    if (unit == u.name) {
      std::uint64_t value = 0;
      if (__builtin_mul_overflow(number, u.scale, &value) || value > max) return false;
      out = value;
      return true;
    }
  }
  return false;
}

void checkNumbers(const std::string& text) {
  Millis duration{-1};
  std::uint64_t expected = 0;
  const bool dur_ok = parseDuration(text, duration);
  const bool dur_ref = referenceParse(
      text, {{"", 1000}, {"s", 1000}, {"ms", 1}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}},
      false, static_cast<std::uint64_t>(std::numeric_limits<Millis::rep>::max()), expected);
  FUZZ_CHECK(dur_ok == dur_ref);
  if (dur_ok) {
    FUZZ_CHECK(duration.count() >= 0);
    FUZZ_CHECK(static_cast<std::uint64_t>(duration.count()) == expected);
  }

  std::size_t size = 12345;
  const bool size_ok = parseSize(text, size);
  const bool size_ref = referenceParse(text,
                                       {{"", 1},
                                        {"b", 1},
                                        {"k", 1024},
                                        {"kb", 1024},
                                        {"m", 1u << 20},
                                        {"mb", 1u << 20},
                                        {"g", 1u << 30},
                                        {"gb", 1u << 30}},
                                       true, std::numeric_limits<std::size_t>::max(), expected);
  FUZZ_CHECK(size_ok == size_ref);
  if (size_ok) FUZZ_CHECK(size == expected);
}

// Each line's value, trimmed: what follows the first ": " (or a "- " item).
void checkLineValues(std::string_view text) {
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    std::size_t start = line.find(": ");
    if (start == std::string_view::npos) start = line.find("- ");
    if (start == std::string_view::npos) continue;
    std::string_view value = line.substr(start + 2);
    const std::size_t comment = value.find(" #");
    value = value.substr(0, comment);
    while (!value.empty() && (value.front() == ' ' || value.front() == '"')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '"' || value.back() == '\r')) {
      value.remove_suffix(1);
    }
    checkNumbers(std::string(value));
  }
}

bool startsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

// A DSN in the simple form key=value[ key=value...] (no quotes, escapes or
// extra blanks): the secret of each key ending in "password", where libpq
// would find it without doubt. Other forms are not checked.
std::vector<std::string_view> simpleDsnSecrets(std::string_view dsn) {
  std::vector<std::string_view> secrets;
  while (!dsn.empty()) {
    const std::size_t space = dsn.find(' ');
    const std::string_view pair = dsn.substr(0, space);
    dsn.remove_prefix(space == std::string_view::npos ? dsn.size() : space + 1);
    const std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) return {};
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value = pair.substr(eq + 1);
    for (char c : key) {
      if (!((c >= 'a' && c <= 'z') || c == '_')) return {};
    }
    for (char c : value) {
      const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
      if (!plain) return {};
    }
    if (key.size() >= 8 && key.substr(key.size() - 8) == "password") secrets.push_back(value);
  }
  return secrets;
}

void checkConfig(const Config& config) {
  FUZZ_CHECK(config.source == kSource);
  FUZZ_CHECK(config.listen.port != 0 && !config.listen.host.empty());
  if (config.admin) FUZZ_CHECK(config.admin->port != 0 && !config.admin->host.empty());
  FUZZ_CHECK(config.threads >= 0 && config.threads <= 256);
  FUZZ_CHECK(config.backlog >= 1 && config.backlog <= 65535);
  FUZZ_CHECK(config.idle_timeout.count() >= 0);

  const RedisConfig& redis = config.redis;
  FUZZ_CHECK(redis.address.port != 0 && !redis.address.host.empty());
  FUZZ_CHECK(redis.db >= 0);
  FUZZ_CHECK(redis.connections_per_worker >= 1 && redis.connections_per_worker <= 64);
  FUZZ_CHECK(redis.connect_timeout.count() > 0 && redis.reconnect_min.count() > 0);
  FUZZ_CHECK(redis.reconnect_max >= redis.reconnect_min);

  FUZZ_CHECK(config.postgres.pool_size >= 1 && config.postgres.pool_size <= 64);
  FUZZ_CHECK(config.postgres.statement_timeout.count() >= 0);

  const LimitsConfig& limits = config.limits;
  FUZZ_CHECK(limits.max_array_len >= 1 && limits.max_bulk_len >= 1 && limits.max_inline_len >= 1);
  FUZZ_CHECK(limits.max_inflight_per_client >= 1 && limits.client_output_limit >= 1);
  FUZZ_CHECK(limits.maxclients >= 1);

  const ReadThroughConfig& rt = config.read_through;
  FUZZ_CHECK(rt.batch_window.count() >= 0 && rt.batch_window <= std::chrono::seconds(1));
  FUZZ_CHECK(rt.max_batch >= 1 && rt.load_timeout.count() > 0);

  const WriteBehindConfig& wb = config.write_behind;
  FUZZ_CHECK(wb.flush_interval.count() > 0 && wb.max_batch >= 1 && wb.max_queue >= 1);
  FUZZ_CHECK(wb.retry_min.count() > 0 && wb.retry_max >= wb.retry_min);

  if (!config.keyspaces.empty()) FUZZ_CHECK(!config.postgres.dsn.empty());
  std::vector<std::string> prefixes;
  for (std::size_t i = 0; i < config.keyspaces.size(); ++i) {
    const KeyspaceConfig& ks = config.keyspaces[i];
    FUZZ_CHECK(!ks.name.empty() && !ks.table.empty());
    FUZZ_CHECK(!startsWith(ks.key, "__larder:"));
    KeyTemplate parsed;
    std::string error;
    FUZZ_CHECK(parseKeyTemplate(ks.key, parsed, error));
    FUZZ_CHECK(parsed.literals.size() == parsed.placeholders.size() + 1);
    for (std::size_t j = 1; j + 1 < parsed.literals.size(); ++j) {
      FUZZ_CHECK(!parsed.literals[j].empty());
    }
    for (std::size_t j = 0; j < i; ++j) {
      FUZZ_CHECK(config.keyspaces[j].name != ks.name);
      FUZZ_CHECK(!startsWith(prefixes[j], parsed.prefix()) &&
                 !startsWith(parsed.prefix(), prefixes[j]));
    }
    prefixes.push_back(parsed.prefix());
    FUZZ_CHECK(ks.ttl.count() >= 0 && ks.negative_ttl.count() >= 0);
    FUZZ_CHECK(ks.ttl_jitter >= 0.0 && ks.ttl_jitter <= 1.0);
    if (ks.shape == KeyShape::String) FUZZ_CHECK(ks.columns.size() <= 1);
  }

  const std::string summary = redactedSummary(config);
  FUZZ_CHECK(startsWith(summary, std::string("source: ") + kSource + "\n"));
  // A secret may only show if something else in the summary spells it too: the
  // summary of the same config without a DSN says which.
  const std::vector<std::string_view> secrets = simpleDsnSecrets(config.postgres.dsn);
  if (!secrets.empty()) {
    Config without = config;
    without.postgres.dsn.clear();
    const std::string baseline = redactedSummary(without);
    for (std::string_view secret : secrets) {
      if (secret.size() < 4 || baseline.find(secret) != std::string::npos) continue;
      if (summary.find(secret) != std::string::npos) {
        std::fprintf(stderr, "DSN password '%.*s' shown in: %s\n", static_cast<int>(secret.size()),
                     secret.data(), summary.c_str());
        __builtin_trap();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  setEnvironment();
  const std::string text(reinterpret_cast<const char*>(data), size);
  checkNumbers(text);
  checkLineValues(text);

  try {
    const Config config = loadConfigString(text, kSource);
    checkConfig(config);
  } catch (const ConfigError& e) {
    // "<source>: <key>: <reason>", or "<source>: <reason>" without a key.
    FUZZ_CHECK(!e.reason().empty());
    FUZZ_CHECK(startsWith(e.what(), std::string(kSource) + ": "));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loadConfigString threw something other than ConfigError: %s\n", e.what());
    __builtin_trap();
  } catch (...) {
    std::fprintf(stderr, "loadConfigString threw a non-std exception\n");
    __builtin_trap();
  }
  return 0;
}
