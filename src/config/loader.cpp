#include "larder/config/loader.hpp"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string_view>
#include <utility>

#include "larder/config/key_template.hpp"

namespace larder::config {
namespace {

constexpr std::string_view kReservedPrefix = "__larder:";
constexpr std::string_view kRedacted = "*****";

constexpr const char* kExpectMap = "expected a map";
constexpr const char* kExpectString = "expected a string";
constexpr const char* kExpectInteger = "expected an integer";
constexpr const char* kExpectDuration = "expected a duration such as 500ms, 30s, 1h";
constexpr const char* kExpectSize = "expected a size such as 512kb, 64mb, 1gb";
constexpr const char* kExpectPercent = "expected a percentage such as 10%";
constexpr const char* kExpectEndpoint = "expected host:port such as 127.0.0.1:6380 or [::1]:6380";
constexpr const char* kExpectTable = "expected a schema-qualified table such as public.users";

std::string joinPath(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

bool isDigits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Splits "<digits><unit>"; false when there are no leading digits or they overflow.
bool splitNumber(std::string_view text, std::uint64_t& number, std::string_view& unit) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, number);
  if (ec != std::errc() || end != text.data() + digits) return false;
  unit = text.substr(digits);
  return true;
}

bool parseInteger(std::string_view text, long long& out) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
  if (!isDigits(digits)) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// "10%", "2.5%" -> fraction. Digits with an optional fraction, then '%'.
bool parsePercent(std::string_view text, double& out) {
  if (text.size() < 2 || text.back() != '%') return false;
  std::string_view number = text.substr(0, text.size() - 1);
  std::size_t dot = number.find('.');
  std::string_view whole = number.substr(0, dot);
  if (!isDigits(whole)) return false;
  if (dot != std::string_view::npos && !isDigits(number.substr(dot + 1))) return false;
  double value = 0;
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (ec != std::errc() || end != number.data() + number.size()) return false;
  out = value / 100.0;
  return true;
}

std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

bool isHostChar(char c, bool bracketed) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  if (c == '.' || c == '-' || c == '_') return true;
  return bracketed && (c == ':' || c == '%');  // IPv6 literal with optional zone
}

// One SQL identifier: unquoted ([A-Za-z_][A-Za-z0-9_$]*) or "quoted" with "" as
// an escaped quote. Advances `pos` past it.
bool scanSqlIdentifier(std::string_view text, std::size_t& pos) {
  if (pos >= text.size()) return false;
  if (text[pos] == '"') {
    std::size_t i = pos + 1;
    std::size_t length = 0;
    while (i < text.size()) {
      if (text[i] == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          i += 2;
          ++length;
          continue;
        }
        if (length == 0) return false;
        pos = i + 1;
        return true;
      }
      ++i;
      ++length;
    }
    return false;
  }
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (!alpha(text[pos])) return false;
  std::size_t i = pos + 1;
  while (i < text.size() && (alpha(text[i]) || digit(text[i]) || text[i] == '$')) ++i;
  pos = i;
  return true;
}

bool isQualifiedTable(std::string_view text) {
  std::size_t pos = 0;
  if (!scanSqlIdentifier(text, pos)) return false;
  if (pos >= text.size() || text[pos] != '.') return false;
  ++pos;
  return scanSqlIdentifier(text, pos) && pos == text.size();
}

bool isColumnName(std::string_view text) {
  std::size_t pos = 0;
  return scanSqlIdentifier(text, pos) && pos == text.size();
}

bool isWildcardHost(const std::string& host) { return host == "0.0.0.0" || host == "::"; }

// Replaces the password in a libpq connection string, key/value form
// ("host=x password='a b'") or URI form ("postgresql://user:secret@host/db?password=x").
// When the text cannot be parsed, the rest of it is redacted rather than risk a leak.
std::string redactDsn(std::string_view dsn) {
  auto isSecretKey = [](std::string_view key) {
    std::string name = lower(key);
    return name.size() >= 8 && name.compare(name.size() - 8, 8, "password") == 0;
  };
  std::string out;
  if (dsn.substr(0, 13) == "postgresql://" || dsn.substr(0, 11) == "postgres://") {
    std::size_t start = dsn.find("://") + 3;
    std::size_t query = dsn.find('?', start);
    std::string_view head = dsn.substr(0, query);
    // Last '@' before the query, so a password with an unescaped '/' or '@' is still covered.
    std::size_t at = head.rfind('@');
    std::size_t colon = at == std::string_view::npos ? at : head.find(':', start);
    if (at != std::string_view::npos && colon < at) {
      out.append(head.substr(0, colon + 1)).append(kRedacted).append(head.substr(at));
    } else {
      out.append(head);
    }
    if (query == std::string_view::npos) return out;
    std::string_view rest = dsn.substr(query);  // "?a=b&password=c#frag"
    std::size_t i = 0;
    while (i < rest.size()) {
      std::size_t end = rest.find_first_of("&#", i + 1);
      if (end == std::string_view::npos) end = rest.size();
      std::string_view param = rest.substr(i, end - i);  // includes its leading '?' or '&'
      std::size_t eq = param.find('=');
      if (eq != std::string_view::npos && isSecretKey(param.substr(1, eq - 1))) {
        out.append(param.substr(0, eq + 1)).append(kRedacted);
      } else {
        out.append(param);
      }
      if (end < rest.size() && rest[end] == '#') {
        out.append(rest.substr(end));
        break;
      }
      i = end;
    }
    return out;
  }

  auto isSpace = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  std::size_t i = 0;
  while (i < dsn.size()) {
    std::size_t keyStart = i;
    while (i < dsn.size() && isSpace(dsn[i])) ++i;
    if (i >= dsn.size()) {
      out.append(dsn.substr(keyStart));
      return out;
    }
    std::size_t nameStart = i;
    while (i < dsn.size() && dsn[i] != '=' && !isSpace(dsn[i])) ++i;
    std::string_view key = dsn.substr(nameStart, i - nameStart);
    while (i < dsn.size() && isSpace(dsn[i])) ++i;
    if (i >= dsn.size() || dsn[i] != '=') {
      // Malformed: show nothing further, it might be a secret.
      out.append(dsn.substr(keyStart, nameStart - keyStart)).append(kRedacted);
      return out;
    }
    ++i;
    while (i < dsn.size() && isSpace(dsn[i])) ++i;
    std::size_t valueStart = i;
    if (i < dsn.size() && dsn[i] == '\'') {
      ++i;
      while (i < dsn.size() && dsn[i] != '\'') i += dsn[i] == '\\' ? 2 : 1;
      if (i >= dsn.size()) {  // unterminated quote
        out.append(dsn.substr(keyStart, valueStart - keyStart)).append(kRedacted);
        return out;
      }
      ++i;
    } else {
      while (i < dsn.size() && !isSpace(dsn[i])) i += dsn[i] == '\\' ? 2 : 1;
      i = std::min(i, dsn.size());
    }
    out.append(dsn.substr(keyStart, valueStart - keyStart));
    if (isSecretKey(key)) {
      out.append(kRedacted);
    } else {
      out.append(dsn.substr(valueStart, i - valueStart));
    }
  }
  return out;
}

// Not YAML::LoadAll: in yaml-cpp 0.7 (Debian 12) it loops forever, allocating, on some
// malformed input such as `"",` because the parser keeps reporting documents without
// consuming any (jbeder/yaml-cpp#1319; found by tests/fuzz/config_loader_fuzz.cpp).
// The loader builds the first document with YAML::Load and asks this, which stops
// after two, whether there is another.
class IgnoreEvents : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

bool hasSecondDocument(const std::string& yaml) {
  std::istringstream in(yaml);
  YAML::Parser parser(in);
  IgnoreEvents ignore;
  return parser.HandleNextDocument(ignore) && parser.HandleNextDocument(ignore);
}

class Loader {
 public:
  explicit Loader(std::string source) : source_(std::move(source)) {}

  Config load(const std::string& yaml) {
    YAML::Node root;
    bool several = false;
    try {
      root = YAML::Load(yaml);  // the first document; a null node when there is none
      several = hasSecondDocument(yaml);
    } catch (const YAML::Exception& e) {
      fail("line " + std::to_string(e.mark.line + 1) + " column " +
               std::to_string(e.mark.column + 1),
           e.msg);
    }
    if (several) fail("(top level)", "expected a single YAML document");
    Config config;
    config.source = source_;
    if (!root.IsNull()) {  // null: all defaults
      if (!root.IsMap()) fail("(top level)", "expected a map of settings");
      readRoot(root, config);
    }
    // Where Redis has a default user, so does Larder: requirepass is its
    // password unless `users:` names it.
    if (!findUser(config.users, "default")) {
      config.users.insert(config.users.begin(), implicitDefaultUser(config.requirepass));
    }
    return config;
  }

 private:
  [[noreturn]] void fail(const std::string& key, const std::string& reason) const {
    throw ConfigError(source_, key, reason);
  }

  // Rejects unknown and repeated keys: a typo must not silently leave a default in place.
  void checkKeys(const YAML::Node& map, const std::string& path,
                 std::initializer_list<std::string_view> known) const {
    std::vector<std::string> seen;
    for (const auto& entry : map) {
      if (!entry.first.IsScalar())
        fail(path.empty() ? "(top level)" : path, "keys must be strings");
      const std::string& key = entry.first.Scalar();
      std::string keyPath = joinPath(path, key);
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        std::string_view best;
        std::size_t bestDistance = 3;
        for (std::string_view candidate : known) {
          std::size_t distance = editDistance(key, candidate);
          if (distance < bestDistance) {
            best = candidate;
            bestDistance = distance;
          }
        }
        if (best.empty()) fail(keyPath, "unknown key");
        fail(keyPath, "unknown key (did you mean '" + std::string(best) + "'?)");
      }
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) fail(keyPath, "duplicate key");
      seen.push_back(key);
    }
  }

  void requireMap(const YAML::Node& node, const std::string& path) const {
    if (!node.IsMap()) fail(path, kExpectMap);
  }

  // `${VAR}` -> environment value, `$${` -> literal `${`. Substituted text is not
  // scanned again, and never appears in an error.
  std::string substitute(const std::string& text, const std::string& path) const {
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
      if (text.compare(i, 3, "$${") == 0) {
        out += "${";
        i += 3;
        continue;
      }
      if (text.compare(i, 2, "${") != 0) {
        out += text[i++];
        continue;
      }
      std::size_t close = text.find('}', i + 2);
      if (close == std::string::npos) fail(path, "unterminated ${ (write $${ for a literal ${)");
      std::string name = text.substr(i + 2, close - i - 2);
      if (!isIdentifier(name)) fail(path, "invalid environment variable name '" + name + "'");
      const char* value = std::getenv(name.c_str());
      if (value == nullptr) fail(path, "environment variable " + name + " is not set");
      out += value;
      i = close + 1;
    }
    return out;
  }

  // The substituted text of a scalar; null (`key:` or `~`) reads as "".
  std::string scalar(const YAML::Node& node, const std::string& path, const char* expected) const {
    if (node.IsNull()) return "";
    if (!node.IsScalar()) fail(path, expected);
    return substitute(node.Scalar(), path);
  }

  // Calls `read(node, path)` when `key` is present in `map`; absent keys keep defaults.
  template <typename Read>
  void field(const YAML::Node& map, const std::string& path, const char* key, Read&& read) const {
    const YAML::Node node = map[key];
    if (node.IsDefined()) read(node, joinPath(path, key));
  }

  std::string readString(const YAML::Node& node, const std::string& path) const {
    return scalar(node, path, kExpectString);
  }

  // A path to a file Larder reads (a certificate or key); checked now so that a
  // typo is reported at load, not at the first connection.
  std::string readFile(const YAML::Node& node, const std::string& path) const {
    std::string file = scalar(node, path, "expected a file path");
    if (file.empty()) return file;
    std::FILE* f = std::fopen(file.c_str(), "rb");
    if (f == nullptr) fail(path, "cannot read '" + file + "': " + std::strerror(errno));
    std::fclose(f);
    return file;
  }

  int readInt(const YAML::Node& node, const std::string& path, long long min, long long max) const {
    long long value = 0;
    if (!parseInteger(scalar(node, path, kExpectInteger), value)) fail(path, kExpectInteger);
    if (value < min || value > max) {
      fail(path, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    }
    return static_cast<int>(value);
  }

  std::size_t readCount(const YAML::Node& node, const std::string& path, std::size_t max) const {
    long long value = 0;
    if (!parseInteger(scalar(node, path, kExpectInteger), value)) fail(path, kExpectInteger);
    if (value < 1 || static_cast<unsigned long long>(value) > max) {
      fail(path, "must be between 1 and " + std::to_string(max));
    }
    return static_cast<std::size_t>(value);
  }

  std::size_t readSize(const YAML::Node& node, const std::string& path) const {
    std::size_t value = 0;
    if (!parseSize(scalar(node, path, kExpectSize), value)) fail(path, kExpectSize);
    if (value == 0) fail(path, "must be greater than 0");
    return value;
  }

  Millis readDuration(const YAML::Node& node, const std::string& path, bool allowZero) const {
    Millis value{0};
    if (!parseDuration(scalar(node, path, kExpectDuration), value)) fail(path, kExpectDuration);
    if (!allowZero && value.count() == 0) fail(path, "must be greater than 0");
    return value;
  }

  template <typename Enum>
  Enum readChoice(const YAML::Node& node, const std::string& path,
                  std::initializer_list<std::pair<std::string_view, Enum>> choices) const {
    std::string expected = "expected one of ";
    bool first = true;
    for (const auto& choice : choices) {
      if (!first) expected += ", ";
      expected += choice.first;
      first = false;
    }
    std::string text = scalar(node, path, expected.c_str());
    for (const auto& [name, value] : choices) {
      if (text == name) return value;
    }
    fail(path, expected);
  }

  Endpoint readEndpoint(const YAML::Node& node, const std::string& path) const {
    return parseEndpoint(scalar(node, path, kExpectEndpoint), path);
  }

  Endpoint parseEndpoint(const std::string& text, const std::string& path) const {
    std::string host;
    std::string port;
    bool bracketed = !text.empty() && text.front() == '[';
    if (bracketed) {
      std::size_t close = text.find(']');
      if (close == std::string::npos) fail(path, kExpectEndpoint);
      host = text.substr(1, close - 1);
      if (close + 1 >= text.size())
        fail(path, "missing port (" + std::string(kExpectEndpoint) + ")");
      if (text[close + 1] != ':') fail(path, kExpectEndpoint);
      port = text.substr(close + 2);
      if (host.find(':') == std::string::npos) {
        fail(path, "brackets are only for IPv6 addresses, e.g. [::1]:6380");
      }
    } else {
      std::size_t colon = text.rfind(':');
      if (colon == std::string::npos) {
        fail(path, "missing port (" + std::string(kExpectEndpoint) + ")");
      }
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      if (host.find(':') != std::string::npos) {
        fail(path, "IPv6 addresses must be in brackets, e.g. [::1]:6380");
      }
    }
    if (host.empty()) fail(path, kExpectEndpoint);
    for (char c : host) {
      if (!isHostChar(c, bracketed)) fail(path, "invalid host '" + host + "'");
    }
    if (port.empty()) fail(path, "missing port (" + std::string(kExpectEndpoint) + ")");
    if (!isDigits(port)) fail(path, "port '" + port + "' is not a number");
    if (port.size() > 5 || std::stoul(port) == 0 || std::stoul(port) > 65535) {
      fail(path, "port " + port + " is out of range");
    }
    return Endpoint{host, static_cast<std::uint16_t>(std::stoul(port))};
  }

  void readRoot(const YAML::Node& root, Config& config) const {
    checkKeys(root, "",
              {"listen", "threads", "admin", "backlog", "idle_timeout", "requirepass", "users",
               "log", "tls", "redis", "postgres", "limits", "read_through", "write_behind",
               "invalidation", "keyspaces"});
    field(root, "", "listen",
          [&](const auto& n, const auto& p) { config.listen = readEndpoint(n, p); });
    field(root, "", "threads", [&](const auto& n, const auto& p) {
      constexpr const char* expected = "expected 'auto' or an integer from 1 to 256";
      std::string text = scalar(n, p, expected);
      long long value = 0;
      if (text == "auto") {
        config.threads = 0;
      } else if (parseInteger(text, value) && value >= 1 && value <= 256) {
        config.threads = static_cast<int>(value);
      } else {
        fail(p, expected);
      }
    });
    field(root, "", "admin", [&](const auto& n, const auto& p) { readAdmin(n, p, config); });
    field(root, "", "backlog",
          [&](const auto& n, const auto& p) { config.backlog = readInt(n, p, 1, 65535); });
    field(root, "", "idle_timeout",
          [&](const auto& n, const auto& p) { config.idle_timeout = readDuration(n, p, true); });
    field(root, "", "requirepass",
          [&](const auto& n, const auto& p) { config.requirepass = readString(n, p); });
    field(root, "", "users", [&](const auto& n, const auto& p) { readUsers(n, p, config.users); });
    field(root, "", "log", [&](const auto& n, const auto& p) { readLog(n, p, config); });
    field(root, "", "tls", [&](const auto& n, const auto& p) { readTls(n, p, config.tls); });
    field(root, "", "redis", [&](const auto& n, const auto& p) { readRedis(n, p, config.redis); });
    field(root, "", "postgres",
          [&](const auto& n, const auto& p) { readPostgres(n, p, config.postgres); });
    field(root, "", "limits",
          [&](const auto& n, const auto& p) { readLimits(n, p, config.limits); });
    field(root, "", "read_through",
          [&](const auto& n, const auto& p) { readReadThrough(n, p, config.read_through); });
    field(root, "", "write_behind",
          [&](const auto& n, const auto& p) { readWriteBehind(n, p, config.write_behind); });
    field(root, "", "invalidation",
          [&](const auto& n, const auto& p) { readInvalidation(n, p, config.invalidation); });
    field(root, "", "keyspaces",
          [&](const auto& n, const auto& p) { readKeyspaces(n, p, config.keyspaces); });

    if (config.admin) {
      const Endpoint& admin = *config.admin;
      const Endpoint& listen = config.listen;
      if (admin.port == listen.port && (admin.host == listen.host || isWildcardHost(admin.host) ||
                                        isWildcardHost(listen.host))) {
        fail("admin", "must not use the same address as listen");
      }
    }
    if (config.tls.listen) {
      const Endpoint& tls = *config.tls.listen;
      if (tls == config.listen || (config.admin && tls == *config.admin)) {
        fail("tls.listen", "must not use the same address as listen or admin");
      }
    }
    if (!config.keyspaces.empty() && config.postgres.dsn.empty()) {
      fail("postgres.dsn", "is required when keyspaces are configured");
    }
  }

  // `admin: host:port`, or a map with address and an optional bearer token.
  void readAdmin(const YAML::Node& node, const std::string& path, Config& config) const {
    auto address = [&](const YAML::Node& n, const std::string& p) {
      std::string text = scalar(n, p, kExpectEndpoint);
      if (text.empty()) {
        config.admin.reset();  // `admin:` or an empty ${VAR} turns it off
      } else {
        config.admin = parseEndpoint(text, p);
      }
    };
    if (!node.IsMap()) {
      address(node, path);
      return;
    }
    checkKeys(node, path, {"address", "token", "token_env"});
    if (!node["address"].IsDefined()) fail(joinPath(path, "address"), "is required");
    field(node, path, "address", address);
    if (node["token"].IsDefined() && node["token_env"].IsDefined()) {
      fail(joinPath(path, "token_env"), "give token or token_env, not both");
    }
    field(node, path, "token",
          [&](const auto& n, const auto& p) { config.admin_token = readString(n, p); });
    field(node, path, "token_env",
          [&](const auto& n, const auto& p) { config.admin_token = readEnv(n, p); });
  }

  // The value of the environment variable a `*_env` key names.
  std::string readEnv(const YAML::Node& node, const std::string& path) const {
    const std::string name = readString(node, path);
    if (!isIdentifier(name)) fail(path, "invalid environment variable name '" + name + "'");
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) fail(path, "environment variable " + name + " is not set");
    if (*value == '\0') fail(path, "environment variable " + name + " is empty");
    return value;
  }

  // A scalar or a list of scalars.
  std::vector<std::string> readStrings(const YAML::Node& node, const std::string& path) const {
    std::vector<std::string> out;
    if (node.IsSequence()) {
      for (std::size_t i = 0; i < node.size(); ++i) {
        out.push_back(readString(node[i], path + "[" + std::to_string(i) + "]"));
      }
    } else {
      out.push_back(readString(node, path));
    }
    return out;
  }

  void readUsers(const YAML::Node& node, const std::string& path,
                 std::vector<UserConfig>& users) const {
    if (!node.IsSequence()) fail(path, "expected a list of users");
    for (std::size_t i = 0; i < node.size(); ++i) {
      const std::string at = path + "[" + std::to_string(i) + "]";
      UserConfig user = readUser(node[i], at);
      if (findUser(users, user.name)) fail(at + ".name", "user '" + user.name + "' repeated");
      users.push_back(std::move(user));
    }
  }

  UserConfig readUser(const YAML::Node& node, const std::string& path) const {
    requireMap(node, path);
    checkKeys(node, path,
              {"name", "password_sha256", "password_env", "nopass", "enabled", "commands", "keys",
               "channels"});
    UserConfig user;
    if (!node["name"].IsDefined()) fail(joinPath(path, "name"), "is required");
    field(node, path, "name", [&](const auto& n, const auto& p) {
      user.name = readString(n, p);
      if (user.name.empty()) fail(p, "must not be empty");
      for (char c : user.name) {
        if (c <= ' ' || c > '~') fail(p, "must be printable ASCII without spaces");
      }
    });
    field(node, path, "password_sha256", [&](const auto& n, const auto& p) {
      for (const std::string& hex : readStrings(n, p)) {
        acl::Digest digest;
        if (!acl::parseHexDigest(hex, digest)) {
          // The length only: the value itself may be a password pasted by mistake.
          fail(p, "expected 64 hex digits (a SHA-256 digest), got " + std::to_string(hex.size()) +
                      " characters");
        }
        user.passwords.push_back(digest);
      }
    });
    field(node, path, "password_env", [&](const auto& n, const auto& p) {
      user.passwords.push_back(acl::sha256(readEnv(n, p)));
    });
    field(node, path, "nopass", [&](const auto& n, const auto& p) {
      user.nopass = readChoice<bool>(n, p, {{"true", true}, {"false", false}});
    });
    field(node, path, "enabled", [&](const auto& n, const auto& p) {
      user.enabled = readChoice<bool>(n, p, {{"true", true}, {"false", false}});
    });
    if (user.nopass && !user.passwords.empty()) {
      fail(joinPath(path, "nopass"), "a user with nopass: true takes no password");
    }
    if (!user.nopass && user.passwords.empty() && user.enabled) {
      fail(path, "user '" + user.name +
                     "' needs password_sha256, password_env or nopass: true (or enabled: false)");
    }
    std::string error;
    field(node, path, "commands", [&](const auto& n, const auto& p) {
      for (const std::string& text : readStrings(n, p)) {
        std::istringstream words(text);  // "+@all -@dangerous" in one string works too
        for (std::string rule; words >> rule;) {
          if (!user.permissions.applyCommandRule(rule, error)) fail(p, error);
          user.commands.push_back(rule);
        }
      }
    });
    field(node, path, "keys", [&](const auto& n, const auto& p) {
      for (const std::string& text : readStrings(n, p)) {
        std::istringstream words(text);
        for (std::string rule; words >> rule;) {
          if (!user.permissions.applyKeyRule(rule, error)) fail(p, error);
          user.keys.push_back(rule);
        }
      }
    });
    field(node, path, "channels", [&](const auto& n, const auto& p) {
      for (const std::string& text : readStrings(n, p)) {
        std::istringstream words(text);
        for (std::string rule; words >> rule;) {
          if (!user.permissions.applyChannelRule(rule, error)) fail(p, error);
          user.channels.push_back(rule);
        }
      }
    });
    return user;
  }

  void readReadThrough(const YAML::Node& node, const std::string& path,
                       ReadThroughConfig& rt) const {
    requireMap(node, path);
    checkKeys(node, path, {"batch_window", "max_batch", "load_timeout", "negative_cache_entries"});
    field(node, path, "batch_window", [&](const auto& n, const auto& p) {
      // Sub-millisecond windows matter here, so "500us" is accepted too.
      constexpr const char* expected = "expected a duration such as 500us, 1ms";
      std::string text = scalar(n, p, expected);
      long long micros = 0;
      Millis ms{0};
      if (text.size() > 2 && text.substr(text.size() - 2) == "us" &&
          parseInteger(text.substr(0, text.size() - 2), micros) && micros >= 0 &&
          micros <= 1000000) {
        rt.batch_window = std::chrono::microseconds(micros);
      } else if (parseDuration(text, ms) && ms <= Millis(1000)) {
        rt.batch_window = ms;
      } else {
        fail(p, expected + std::string(" (at most 1s)"));
      }
    });
    field(node, path, "max_batch",
          [&](const auto& n, const auto& p) { rt.max_batch = readCount(n, p, 100000); });
    field(node, path, "load_timeout",
          [&](const auto& n, const auto& p) { rt.load_timeout = readDuration(n, p, false); });
    field(node, path, "negative_cache_entries", [&](const auto& n, const auto& p) {
      rt.negative_cache_entries = readCount(n, p, 100000000);
    });
  }

  void readInvalidation(const YAML::Node& node, const std::string& path,
                        InvalidationConfig& inv) const {
    requireMap(node, path);
    checkKeys(node, path, {"listen", "publish"});
    field(node, path, "listen", [&](const auto& n, const auto& p) {
      inv.listen_channel = readString(n, p);
      // A PostgreSQL identifier: LISTEN takes no parameter, so the name is
      // checked here and quoted when used.
      if (!inv.listen_channel.empty() &&
          (inv.listen_channel.size() > 63 || !isColumnName(inv.listen_channel))) {
        fail(p, "expected a channel name of letters, digits and '_' (at most 63)");
      }
    });
    field(node, path, "publish",
          [&](const auto& n, const auto& p) { inv.publish_channel = readString(n, p); });
  }

  void readNearCache(const YAML::Node& node, const std::string& path, NearCacheConfig& nc) const {
    requireMap(node, path);
    checkKeys(node, path, {"enabled", "max_bytes", "max_ttl"});
    nc.enabled = true;  // a near_cache block turns it on unless it says otherwise
    field(node, path, "enabled", [&](const auto& n, const auto& p) {
      nc.enabled = readChoice<bool>(n, p, {{"true", true}, {"false", false}});
    });
    field(node, path, "max_bytes",
          [&](const auto& n, const auto& p) { nc.max_bytes = readSize(n, p); });
    field(node, path, "max_ttl",
          [&](const auto& n, const auto& p) { nc.max_ttl = readDuration(n, p, false); });
  }

  void readStampede(const YAML::Node& node, const std::string& path, StampedeConfig& st) const {
    requireMap(node, path);
    checkKeys(node, path, {"lease", "early_refresh", "stale_while_revalidate"});
    field(node, path, "lease",
          [&](const auto& n, const auto& p) { st.lease = readDuration(n, p, true); });
    field(node, path, "early_refresh", [&](const auto& n, const auto& p) {
      constexpr const char* expected = "expected a number from 0 (off) to 100, e.g. 1.0";
      const std::string text = scalar(n, p, expected);
      double value = -1;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec != std::errc() || end != text.data() + text.size() || !(value >= 0.0) ||
          value > 100.0) {
        fail(p, expected);
      }
      st.early_refresh = value;
    });
    field(node, path, "stale_while_revalidate", [&](const auto& n, const auto& p) {
      st.stale_while_revalidate = readDuration(n, p, true);
    });
  }

  void readWriteBehind(const YAML::Node& node, const std::string& path,
                       WriteBehindConfig& wb) const {
    requireMap(node, path);
    checkKeys(node, path,
              {"flush_interval", "max_batch", "max_queue", "on_full", "block_timeout", "retry_min",
               "retry_max", "drain_timeout", "apply_connections", "state_table",
               "require_durable_redis", "wait_replicas", "wait_timeout"});
    field(node, path, "flush_interval",
          [&](const auto& n, const auto& p) { wb.flush_interval = readDuration(n, p, false); });
    field(node, path, "max_batch",
          [&](const auto& n, const auto& p) { wb.max_batch = readCount(n, p, 100000); });
    field(node, path, "max_queue",
          [&](const auto& n, const auto& p) { wb.max_queue = readCount(n, p, 1000000000); });
    field(node, path, "on_full", [&](const auto& n, const auto& p) {
      wb.on_full = readChoice<QueueFullPolicy>(
          n, p, {{"error", QueueFullPolicy::Error}, {"block", QueueFullPolicy::Block}});
    });
    field(node, path, "block_timeout",
          [&](const auto& n, const auto& p) { wb.block_timeout = readDuration(n, p, false); });
    field(node, path, "retry_min",
          [&](const auto& n, const auto& p) { wb.retry_min = readDuration(n, p, false); });
    field(node, path, "retry_max",
          [&](const auto& n, const auto& p) { wb.retry_max = readDuration(n, p, false); });
    field(node, path, "drain_timeout",
          [&](const auto& n, const auto& p) { wb.drain_timeout = readDuration(n, p, true); });
    field(node, path, "apply_connections",
          [&](const auto& n, const auto& p) { wb.apply_connections = readInt(n, p, 1, 16); });
    field(node, path, "state_table", [&](const auto& n, const auto& p) {
      wb.state_table = readString(n, p);
      auto word = [](std::string_view w) {
        return !w.empty() && !(w[0] >= '0' && w[0] <= '9') &&
               std::all_of(w.begin(), w.end(), [](char c) {
                 return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
               });
      };
      const std::string_view t = wb.state_table;
      const auto dot = t.find('.');
      if (dot == std::string_view::npos || !word(t.substr(0, dot)) || !word(t.substr(dot + 1))) {
        fail(p, "must be schema.table in lower case letters, digits and _");
      }
    });
    field(node, path, "require_durable_redis", [&](const auto& n, const auto& p) {
      wb.require_durable_redis = readChoice<bool>(n, p, {{"true", true}, {"false", false}});
    });
    field(node, path, "wait_replicas",
          [&](const auto& n, const auto& p) { wb.wait_replicas = readInt(n, p, 0, 100); });
    field(node, path, "wait_timeout",
          [&](const auto& n, const auto& p) { wb.wait_timeout = readDuration(n, p, false); });
    if (wb.retry_max < wb.retry_min) fail(path + ".retry_max", "must not be below retry_min");
  }

  void readLog(const YAML::Node& node, const std::string& path, Config& config) const {
    requireMap(node, path);
    checkKeys(node, path, {"level", "format"});
    field(node, path, "level", [&](const auto& n, const auto& p) {
      config.log_level = readChoice<std::string_view>(n, p,
                                                      {{"trace", "trace"},
                                                       {"debug", "debug"},
                                                       {"info", "info"},
                                                       {"warn", "warn"},
                                                       {"error", "error"},
                                                       {"critical", "critical"},
                                                       {"off", "off"}});
    });
    field(node, path, "format", [&](const auto& n, const auto& p) {
      config.log_format =
          readChoice<LogFormat>(n, p, {{"text", LogFormat::Text}, {"json", LogFormat::Json}});
    });
  }

  void readTls(const YAML::Node& node, const std::string& path, TlsListenerConfig& tls) const {
    requireMap(node, path);
    checkKeys(node, path,
              {"listen", "cert_file", "key_file", "ca_file", "verify_clients", "min_version",
               "handshake_timeout"});
    field(node, path, "listen", [&](const auto& n, const auto& p) {
      std::string text = scalar(n, p, kExpectEndpoint);
      if (text.empty()) {
        tls.listen.reset();
      } else {
        tls.listen = parseEndpoint(text, p);
      }
    });
    field(node, path, "cert_file",
          [&](const auto& n, const auto& p) { tls.cert_file = readFile(n, p); });
    field(node, path, "key_file",
          [&](const auto& n, const auto& p) { tls.key_file = readFile(n, p); });
    field(node, path, "ca_file",
          [&](const auto& n, const auto& p) { tls.ca_file = readFile(n, p); });
    field(node, path, "verify_clients", [&](const auto& n, const auto& p) {
      tls.verify_clients = readChoice<TlsVerifyClients>(n, p,
                                                        {{"none", TlsVerifyClients::None},
                                                         {"optional", TlsVerifyClients::Optional},
                                                         {"required", TlsVerifyClients::Required}});
    });
    field(node, path, "min_version", [&](const auto& n, const auto& p) {
      tls.min_version = readChoice<TlsVersion>(
          n, p, {{"TLS1.2", TlsVersion::Tls12}, {"TLS1.3", TlsVersion::Tls13}});
    });
    field(node, path, "handshake_timeout",
          [&](const auto& n, const auto& p) { tls.handshake_timeout = readDuration(n, p, false); });
    if (!tls.listen) return;
    if (tls.cert_file.empty()) fail(joinPath(path, "cert_file"), "is required with tls.listen");
    if (tls.key_file.empty()) fail(joinPath(path, "key_file"), "is required with tls.listen");
    if (tls.verify_clients != TlsVerifyClients::None && tls.ca_file.empty()) {
      fail(joinPath(path, "ca_file"), "is required when verify_clients is optional or required");
    }
  }

  void readRedisTls(const YAML::Node& node, const std::string& path, RedisTlsConfig& tls) const {
    requireMap(node, path);
    checkKeys(node, path, {"enabled", "ca_file", "cert_file", "key_file", "server_name"});
    field(node, path, "enabled", [&](const auto& n, const auto& p) {
      tls.enabled = readChoice<bool>(n, p, {{"true", true}, {"false", false}});
    });
    field(node, path, "ca_file",
          [&](const auto& n, const auto& p) { tls.ca_file = readFile(n, p); });
    field(node, path, "cert_file",
          [&](const auto& n, const auto& p) { tls.cert_file = readFile(n, p); });
    field(node, path, "key_file",
          [&](const auto& n, const auto& p) { tls.key_file = readFile(n, p); });
    field(node, path, "server_name",
          [&](const auto& n, const auto& p) { tls.server_name = readString(n, p); });
    if (tls.cert_file.empty() != tls.key_file.empty()) {
      fail(joinPath(path, tls.cert_file.empty() ? "cert_file" : "key_file"),
           "is required with " + std::string(tls.cert_file.empty() ? "key_file" : "cert_file"));
    }
  }

  void readRedis(const YAML::Node& node, const std::string& path, RedisConfig& redis) const {
    requireMap(node, path);
    checkKeys(
        node, path,
        {"address", "tls", "username", "password", "db", "connections_per_worker",
         "max_pinned_per_worker", "max_pending_per_connection", "connect_timeout", "reconnect_min",
         "reconnect_max", "client_acl_user", "request_timeout", "keepalive", "cluster"});
    field(node, path, "address",
          [&](const auto& n, const auto& p) { redis.address = readEndpoint(n, p); });
    field(node, path, "tls", [&](const auto& n, const auto& p) { readRedisTls(n, p, redis.tls); });
    field(node, path, "username",
          [&](const auto& n, const auto& p) { redis.username = readString(n, p); });
    field(node, path, "password",
          [&](const auto& n, const auto& p) { redis.password = readString(n, p); });
    field(node, path, "db",
          [&](const auto& n, const auto& p) { redis.db = readInt(n, p, 0, 1000000); });
    field(node, path, "connections_per_worker", [&](const auto& n, const auto& p) {
      redis.connections_per_worker = readInt(n, p, 1, 64);
    });
    field(node, path, "max_pinned_per_worker", [&](const auto& n, const auto& p) {
      redis.max_pinned_per_worker = readInt(n, p, 1, 100000);
    });
    field(node, path, "max_pending_per_connection", [&](const auto& n, const auto& p) {
      redis.max_pending_per_connection = readInt(n, p, 16, 10000000);
    });
    field(node, path, "connect_timeout",
          [&](const auto& n, const auto& p) { redis.connect_timeout = readDuration(n, p, false); });
    field(node, path, "reconnect_min",
          [&](const auto& n, const auto& p) { redis.reconnect_min = readDuration(n, p, false); });
    field(node, path, "reconnect_max",
          [&](const auto& n, const auto& p) { redis.reconnect_max = readDuration(n, p, false); });
    field(node, path, "client_acl_user", [&](const auto& n, const auto& p) {
      redis.client_acl_user = readString(n, p);
      for (char c : redis.client_acl_user) {
        if (c <= ' ' || c > '~') fail(p, "an ACL user name of printable characters, no spaces");
      }
      if (!redis.client_acl_user.empty() && redis.client_acl_user == redis.username) {
        fail(p, "must not be redis.username: Larder's own requests run as that user");
      }
    });
    field(node, path, "request_timeout",
          [&](const auto& n, const auto& p) { redis.request_timeout = readDuration(n, p, true); });
    field(node, path, "keepalive",
          [&](const auto& n, const auto& p) { redis.keepalive = readDuration(n, p, true); });
    if (redis.reconnect_max < redis.reconnect_min) {
      fail(joinPath(path, "reconnect_max"),
           "must be at least reconnect_min (" + formatDuration(redis.reconnect_min) + ")");
    }
    field(node, path, "cluster",
          [&](const auto& n, const auto& p) { readRedisCluster(n, p, redis.cluster); });
    if (redis.clusterMode()) {
      if (node["address"].IsDefined()) {
        fail(joinPath(path, "address"), "and " + joinPath(path, "cluster.seeds") +
                                            " are exclusive: give one Redis or a cluster's seeds");
      }
      if (redis.db != 0)
        fail(joinPath(path, "db"), "must be 0 with a Redis Cluster (it has db 0 only)");
    }
  }

  // redis.cluster (docs/cluster.md).
  void readRedisCluster(const YAML::Node& node, const std::string& path,
                        RedisClusterConfig& cluster) const {
    requireMap(node, path);
    checkKeys(
        node, path,
        {"seeds", "read_from_replicas", "redirect_limit", "retry_timeout", "refresh_interval"});
    field(node, path, "seeds", [&](const auto& n, const auto& p) {
      constexpr const char* expected = "expected a list of host:port";
      if (!n.IsSequence()) fail(p, expected);
      if (n.size() == 0) fail(p, "must list at least one node");
      if (n.size() > 64) fail(p, "at most 64 seeds");
      for (std::size_t i = 0; i < n.size(); ++i) {
        const std::string itemPath = p + "[" + std::to_string(i) + "]";
        Endpoint seed = parseEndpoint(scalar(n[i], itemPath, expected), itemPath);
        if (std::find(cluster.seeds.begin(), cluster.seeds.end(), seed) != cluster.seeds.end()) {
          fail(itemPath, "duplicate seed " + seed.toString());
        }
        cluster.seeds.push_back(std::move(seed));
      }
    });
    field(node, path, "read_from_replicas", [&](const auto& n, const auto& p) {
      cluster.read_from_replicas = readChoice<bool>(n, p, {{"true", true}, {"false", false}});
    });
    field(node, path, "redirect_limit",
          [&](const auto& n, const auto& p) { cluster.redirect_limit = readInt(n, p, 1, 100); });
    field(node, path, "retry_timeout",
          [&](const auto& n, const auto& p) { cluster.retry_timeout = readDuration(n, p, true); });
    field(node, path, "refresh_interval", [&](const auto& n, const auto& p) {
      cluster.refresh_interval = readDuration(n, p, false);
    });
    if (!node["seeds"].IsDefined()) fail(joinPath(path, "seeds"), "is required");
  }

  void readPostgres(const YAML::Node& node, const std::string& path, PostgresConfig& pg) const {
    requireMap(node, path);
    checkKeys(node, path,
              {"dsn", "sslmode", "sslrootcert", "sslcert", "sslkey", "pool_size", "connect_timeout",
               "statement_timeout", "keepalive"});
    field(node, path, "dsn", [&](const auto& n, const auto& p) { pg.dsn = readString(n, p); });
    field(node, path, "sslmode", [&](const auto& n, const auto& p) {
      pg.sslmode = readChoice<std::string_view>(n, p,
                                                {{"disable", "disable"},
                                                 {"allow", "allow"},
                                                 {"prefer", "prefer"},
                                                 {"require", "require"},
                                                 {"verify-ca", "verify-ca"},
                                                 {"verify-full", "verify-full"}});
    });
    field(node, path, "sslrootcert",
          [&](const auto& n, const auto& p) { pg.sslrootcert = readFile(n, p); });
    field(node, path, "sslcert",
          [&](const auto& n, const auto& p) { pg.sslcert = readFile(n, p); });
    field(node, path, "sslkey", [&](const auto& n, const auto& p) { pg.sslkey = readFile(n, p); });
    if (pg.sslcert.empty() != pg.sslkey.empty()) {
      fail(joinPath(path, pg.sslcert.empty() ? "sslcert" : "sslkey"),
           "is required with " + std::string(pg.sslcert.empty() ? "sslkey" : "sslcert"));
    }
    field(node, path, "pool_size",
          [&](const auto& n, const auto& p) { pg.pool_size = readInt(n, p, 1, 64); });
    field(node, path, "connect_timeout",
          [&](const auto& n, const auto& p) { pg.connect_timeout = readDuration(n, p, false); });
    field(node, path, "statement_timeout",
          [&](const auto& n, const auto& p) { pg.statement_timeout = readDuration(n, p, true); });
    field(node, path, "keepalive",
          [&](const auto& n, const auto& p) { pg.keepalive = readDuration(n, p, true); });
  }

  void readLimits(const YAML::Node& node, const std::string& path, LimitsConfig& limits) const {
    requireMap(node, path);
    checkKeys(node, path,
              {"max_array_len", "max_bulk_len", "max_inline_len", "max_inflight_per_client",
               "client_output_limit", "maxclients"});
    field(node, path, "max_array_len", [&](const auto& n, const auto& p) {
      limits.max_array_len = readCount(n, p, 2147483647);
    });
    field(node, path, "max_bulk_len",
          [&](const auto& n, const auto& p) { limits.max_bulk_len = readSize(n, p); });
    field(node, path, "max_inline_len",
          [&](const auto& n, const auto& p) { limits.max_inline_len = readSize(n, p); });
    field(node, path, "max_inflight_per_client", [&](const auto& n, const auto& p) {
      limits.max_inflight_per_client = readCount(n, p, 1000000);
    });
    field(node, path, "client_output_limit",
          [&](const auto& n, const auto& p) { limits.client_output_limit = readSize(n, p); });
    field(node, path, "maxclients",
          [&](const auto& n, const auto& p) { limits.maxclients = readCount(n, p, 1000000); });
  }

  void readKeyspaces(const YAML::Node& node, const std::string& path,
                     std::vector<KeyspaceConfig>& keyspaces) const {
    if (node.IsNull()) return;
    if (!node.IsMap()) fail(path, "expected a map of keyspace names to settings");
    std::vector<std::string> prefixes;
    for (const auto& entry : node) {
      if (!entry.first.IsScalar()) fail(path, "keys must be strings");
      const std::string& name = entry.first.Scalar();
      std::string ksPath = joinPath(path, name);
      bool validName = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return isHostChar(c, false) && c != '.';
      });
      if (!validName) fail(ksPath, "keyspace names may contain only letters, digits, '_' and '-'");
      for (const KeyspaceConfig& other : keyspaces) {
        if (other.name == name) fail(ksPath, "duplicate key");
      }
      if (keyspaces.size() == kMaxKeyspaces) {
        fail(path, "at most " + std::to_string(kMaxKeyspaces) + " keyspaces are supported");
      }
      KeyspaceConfig keyspace = readKeyspace(entry.second, ksPath);
      keyspace.name = name;

      KeyTemplate parsed;
      std::string error;
      parseKeyTemplate(keyspace.key, parsed, error);  // validated in readKeyspace
      // Conservative: prefix-related literal prefixes might match the same key.
      for (std::size_t i = 0; i < keyspaces.size(); ++i) {
        const std::string& a = prefixes[i];
        const std::string& b = parsed.prefix();
        if (a.compare(0, b.size(), b) == 0 || b.compare(0, a.size(), a) == 0) {
          fail(joinPath(ksPath, "key"), "overlaps keyspace '" + keyspaces[i].name + "'");
        }
      }
      prefixes.push_back(parsed.prefix());
      keyspaces.push_back(std::move(keyspace));
    }
  }

  KeyspaceConfig readKeyspace(const YAML::Node& node, const std::string& path) const {
    requireMap(node, path);
    checkKeys(node, path,
              {"key", "table", "shape", "columns", "ttl", "ttl_jitter", "negative_ttl", "write",
               "near_cache", "stampede"});
    KeyspaceConfig ks;
    if (!node["key"].IsDefined()) fail(joinPath(path, "key"), "is required");
    if (!node["table"].IsDefined()) fail(joinPath(path, "table"), "is required");
    field(node, path, "key", [&](const auto& n, const auto& p) {
      ks.key = readString(n, p);
      KeyTemplate parsed;
      std::string error;
      if (!parseKeyTemplate(ks.key, parsed, error)) fail(p, error);
      if (ks.key.compare(0, kReservedPrefix.size(), kReservedPrefix) == 0) {
        fail(p, "must not start with the reserved prefix " + std::string(kReservedPrefix));
      }
    });
    field(node, path, "table", [&](const auto& n, const auto& p) {
      ks.table = readString(n, p);
      if (!isQualifiedTable(ks.table)) fail(p, kExpectTable);
    });
    field(node, path, "shape", [&](const auto& n, const auto& p) {
      ks.shape =
          readChoice<KeyShape>(n, p, {{"hash", KeyShape::Hash}, {"string", KeyShape::String}});
    });
    field(node, path, "columns", [&](const auto& n, const auto& p) {
      constexpr const char* expected = "expected a list of column names";
      if (!n.IsSequence()) fail(p, expected);
      if (n.size() == 0) fail(p, "must list at least one column (omit it for all columns)");
      for (std::size_t i = 0; i < n.size(); ++i) {
        std::string itemPath = p + "[" + std::to_string(i) + "]";
        std::string column = scalar(n[i], itemPath, expected);
        if (!isColumnName(column)) fail(itemPath, "'" + column + "' is not a column name");
        if (std::find(ks.columns.begin(), ks.columns.end(), column) != ks.columns.end()) {
          fail(itemPath, "duplicate column '" + column + "'");
        }
        ks.columns.push_back(std::move(column));
      }
    });
    field(node, path, "ttl",
          [&](const auto& n, const auto& p) { ks.ttl = readDuration(n, p, true); });
    field(node, path, "ttl_jitter", [&](const auto& n, const auto& p) {
      double value = 0;
      if (!parsePercent(scalar(n, p, kExpectPercent), value)) fail(p, kExpectPercent);
      if (value < 0.0 || value > 1.0) fail(p, "must be between 0% and 100%");
      ks.ttl_jitter = value;
    });
    field(node, path, "negative_ttl",
          [&](const auto& n, const auto& p) { ks.negative_ttl = readDuration(n, p, true); });
    field(node, path, "write", [&](const auto& n, const auto& p) {
      ks.write = readChoice<WriteMode>(n, p,
                                       {{"behind", WriteMode::Behind},
                                        {"through", WriteMode::Through},
                                        {"none", WriteMode::None}});
    });
    field(node, path, "near_cache",
          [&](const auto& n, const auto& p) { readNearCache(n, p, ks.near_cache); });
    field(node, path, "stampede",
          [&](const auto& n, const auto& p) { readStampede(n, p, ks.stampede); });
    if (ks.shape == KeyShape::String && ks.columns.size() > 1) {
      fail(joinPath(path, "columns"), "string shape needs exactly one column");
    }
    return ks;
  }

  std::string source_;
};

}  // namespace

std::string formatDuration(Millis value) {
  long long ms = value.count();
  if (ms == 0) return "0";
  constexpr std::pair<long long, const char*> units[] = {
      {86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
  for (const auto& [size, suffix] : units) {
    if (ms % size == 0) return std::to_string(ms / size) + suffix;
  }
  return std::to_string(ms) + "ms";
}

std::string formatSize(std::size_t value) {
  constexpr std::pair<std::size_t, const char*> units[] = {
      {1024ull * 1024 * 1024, "gb"}, {1024 * 1024, "mb"}, {1024, "kb"}};
  for (const auto& [size, suffix] : units) {
    if (value != 0 && value % size == 0) return std::to_string(value / size) + suffix;
  }
  return std::to_string(value);
}

std::string formatPercent(double fraction) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g%%", fraction * 100.0);
  return buffer;
}

Config loadConfigFile(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr)
    throw ConfigError(path, "", "cannot read file: " + std::string(std::strerror(errno)));
  std::string text;
  char buffer[8192];
  std::size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0) text.append(buffer, got);
  // Reading a directory opens fine and fails here with EISDIR.
  int error = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (error != 0)
    throw ConfigError(path, "", "cannot read file: " + std::string(std::strerror(error)));
  return Loader(path).load(text);
}

Config loadConfigString(const std::string& yaml, const std::string& source) {
  return Loader(source).load(yaml);
}

std::string redactedSummary(const Config& config) {
  auto secret = [](const std::string& value) {
    return value.empty() ? std::string("(none)") : std::string(kRedacted);
  };
  std::string out;
  out += "source: " + config.source + "\n";
  out += "listen: " + config.listen.toString() + "\n";
  out +=
      "threads: " + (config.threads == 0 ? std::string("auto") : std::to_string(config.threads)) +
      "\n";
  out += "admin: " + (config.admin ? config.admin->toString() : std::string("off"));
  if (config.admin) out += " token=" + secret(config.admin_token);
  out += "\n";
  out += "backlog: " + std::to_string(config.backlog) + "\n";
  out += "idle_timeout: " + formatDuration(config.idle_timeout) + "\n";
  out += "requirepass: " + secret(config.requirepass) + "\n";
  if (hasAclUsers(config.users)) {
    out += "users:\n";
    for (const UserConfig& user : config.users) {
      if (user.implicit) continue;
      std::string commands, keys, channels;
      for (const auto& rule : user.commands) commands += (commands.empty() ? "" : " ") + rule;
      for (const auto& rule : user.keys) keys += (keys.empty() ? "" : " ") + rule;
      for (const auto& rule : user.channels) channels += (channels.empty() ? "" : " ") + rule;
      out += "  " + user.name + ": enabled=" + (user.enabled ? "true" : "false") + " password=" +
             (user.nopass ? std::string("nopass")
                          : std::to_string(user.passwords.size()) + " sha256 digest(s), *****") +
             " commands=\"" + commands + "\" keys=\"" + keys + "\" channels=\"" + channels + "\"\n";
    }
  }
  out += "log: level=" + config.log_level +
         " format=" + (config.log_format == LogFormat::Json ? "json" : "text") + "\n";

  const TlsListenerConfig& tls = config.tls;
  if (tls.listen) {
    out += "tls: listen=" + tls.listen->toString() + " cert_file=" + tls.cert_file +
           " ca_file=" + (tls.ca_file.empty() ? std::string("(none)") : tls.ca_file) +
           " verify_clients=" +
           (tls.verify_clients == TlsVerifyClients::None       ? "none"
            : tls.verify_clients == TlsVerifyClients::Optional ? "optional"
                                                               : "required") +
           " min_version=" + (tls.min_version == TlsVersion::Tls13 ? "TLS1.3" : "TLS1.2") +
           " handshake_timeout=" + formatDuration(tls.handshake_timeout) + "\n";
  }

  const RedisConfig& redis = config.redis;
  if (redis.clusterMode()) {
    out += "redis: cluster seeds=";
    for (std::size_t i = 0; i < redis.cluster.seeds.size(); ++i) {
      out += (i ? "," : "") + redis.cluster.seeds[i].toString();
    }
    out += std::string(" read_from_replicas=") +
           (redis.cluster.read_from_replicas ? "true" : "false") +
           " redirect_limit=" + std::to_string(redis.cluster.redirect_limit) +
           " retry_timeout=" + formatDuration(redis.cluster.retry_timeout) +
           " refresh_interval=" + formatDuration(redis.cluster.refresh_interval);
  } else {
    out += "redis: address=" + redis.address.toString();
  }
  out += " db=" + std::to_string(redis.db);
  if (!redis.username.empty()) out += " username=" + redis.username;
  out += " password=" + secret(redis.password);
  if (redis.tls.enabled) {
    out += " tls=on ca_file=" + (redis.tls.ca_file.empty() ? "(system)" : redis.tls.ca_file) +
           (redis.tls.cert_file.empty() ? "" : " cert_file=" + redis.tls.cert_file) +
           " server_name=" +
           (redis.tls.server_name.empty() ? redis.address.host : redis.tls.server_name);
  }
  out += " connections_per_worker=" + std::to_string(redis.connections_per_worker) +
         " max_pinned_per_worker=" + std::to_string(redis.max_pinned_per_worker) +
         " connect_timeout=" + formatDuration(redis.connect_timeout) +
         " reconnect=" + formatDuration(redis.reconnect_min) + ".." +
         formatDuration(redis.reconnect_max) +
         " request_timeout=" + formatDuration(redis.request_timeout) +
         " keepalive=" + formatDuration(redis.keepalive) + "\n";

  const PostgresConfig& pg = config.postgres;
  out += "postgres: dsn=" +
         (pg.dsn.empty() ? std::string("(none)") : "\"" + redactDsn(pg.dsn) + "\"") +
         (pg.sslmode.empty() ? std::string() : " sslmode=" + pg.sslmode) +
         (pg.sslrootcert.empty() ? std::string() : " sslrootcert=" + pg.sslrootcert) +
         (pg.sslcert.empty() ? std::string() : " sslcert=" + pg.sslcert) +
         " pool_size=" + std::to_string(pg.pool_size) +
         " connect_timeout=" + formatDuration(pg.connect_timeout) +
         " statement_timeout=" + formatDuration(pg.statement_timeout) +
         " keepalive=" + formatDuration(pg.keepalive) + "\n";

  const LimitsConfig& limits = config.limits;
  out += "limits: max_array_len=" + std::to_string(limits.max_array_len) +
         " max_bulk_len=" + formatSize(limits.max_bulk_len) +
         " max_inline_len=" + formatSize(limits.max_inline_len) +
         " max_inflight_per_client=" + std::to_string(limits.max_inflight_per_client) +
         " client_output_limit=" + formatSize(limits.client_output_limit) +
         " maxclients=" + std::to_string(limits.maxclients) + "\n";

  const WriteBehindConfig& wb = config.write_behind;
  out +=
      "write_behind: flush_interval=" + formatDuration(wb.flush_interval) +
      " max_batch=" + std::to_string(wb.max_batch) + " max_queue=" + std::to_string(wb.max_queue) +
      " on_full=" + (wb.on_full == QueueFullPolicy::Error ? "error" : "block") +
      " block_timeout=" + formatDuration(wb.block_timeout) +
      " retry_min=" + formatDuration(wb.retry_min) + " retry_max=" + formatDuration(wb.retry_max) +
      " drain_timeout=" + formatDuration(wb.drain_timeout) +
      " apply_connections=" + std::to_string(wb.apply_connections) +
      " state_table=" + wb.state_table +
      " require_durable_redis=" + (wb.require_durable_redis ? "true" : "false") +
      " wait_replicas=" + std::to_string(wb.wait_replicas) +
      " wait_timeout=" + formatDuration(wb.wait_timeout) + "\n";

  if (!config.invalidation.listen_channel.empty() || !config.invalidation.publish_channel.empty()) {
    out += "invalidation: listen=" + config.invalidation.listen_channel +
           " publish=" + config.invalidation.publish_channel + "\n";
  }
  out += "keyspaces:";
  if (config.keyspaces.empty()) out += " (none)";
  out += "\n";
  for (const KeyspaceConfig& ks : config.keyspaces) {
    std::string columns = "all";
    if (!ks.columns.empty()) {
      columns = "[";
      for (const std::string& column : ks.columns) {
        if (columns.size() > 1) columns += ",";
        columns += column;
      }
      columns += "]";
    }
    const char* write = ks.write == WriteMode::Behind    ? "behind"
                        : ks.write == WriteMode::Through ? "through"
                                                         : "none";
    out += "  " + ks.name + ": key=" + ks.key + " table=" + ks.table +
           " shape=" + (ks.shape == KeyShape::Hash ? "hash" : "string") + " columns=" + columns +
           " ttl=" + formatDuration(ks.ttl) + " ttl_jitter=" + formatPercent(ks.ttl_jitter) +
           " negative_ttl=" + formatDuration(ks.negative_ttl) + " write=" + write +
           (ks.near_cache.enabled ? " near_cache=" + formatSize(ks.near_cache.max_bytes) + "/" +
                                        formatDuration(ks.near_cache.max_ttl)
                                  : "") +
           " lease=" + formatDuration(ks.stampede.lease) +
           (ks.stampede.early_refresh > 0
                ? " early_refresh=" + fmt::format("{:g}", ks.stampede.early_refresh)
                : "") +
           (ks.stampede.stale_while_revalidate.count() > 0
                ? " stale_while_revalidate=" + formatDuration(ks.stampede.stale_while_revalidate)
                : "") +
           "\n";
  }
  return out;
}

bool parseDuration(const std::string& text, Millis& out) {
  std::uint64_t number = 0;
  std::string_view unit;
  if (!splitNumber(text, number, unit)) return false;
  std::uint64_t scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1000;  // a bare number is seconds, as in Redis' own config
  } else if (unit == "ms") {
    scale = 1;
  } else if (unit == "m") {
    scale = 60 * 1000;
  } else if (unit == "h") {
    scale = 3600 * 1000;
  } else if (unit == "d") {
    scale = 86400 * 1000;
  } else {
    return false;
  }
  constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<Millis::rep>::max());
  if (number > max / scale) return false;
  out = Millis(static_cast<Millis::rep>(number * scale));
  return true;
}

bool parseSize(const std::string& text, std::size_t& out) {
  std::uint64_t number = 0;
  std::string_view unit;
  if (!splitNumber(text, number, unit)) return false;
  std::string name = lower(unit);
  std::uint64_t scale = 0;
  if (name.empty() || name == "b") {
    scale = 1;
  } else if (name == "k" || name == "kb") {
    scale = 1024;
  } else if (name == "m" || name == "mb") {
    scale = 1024 * 1024;
  } else if (name == "g" || name == "gb") {
    scale = 1024ull * 1024 * 1024;
  } else {
    return false;
  }
  constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::size_t>::max());
  if (number > max / scale) return false;
  out = static_cast<std::size_t>(number * scale);
  return true;
}

}  // namespace larder::config
