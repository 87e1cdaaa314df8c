#pragma once
#include <stdexcept>
#include <string>

#include "larder/config/config.hpp"

namespace larder::config {

// Thrown only at start-up (and on reload, where it is caught and the old config
// kept). what() reads "<file>: <key.path>: <reason>", e.g.
//   "config/larder.yaml: redis.address: port 70000 is out of range".
class ConfigError : public std::runtime_error {
 public:
  ConfigError(const std::string& file, const std::string& key, const std::string& reason)
      : std::runtime_error(file + ": " + (key.empty() ? "" : key + ": ") + reason),
        key_(key),
        reason_(reason) {}
  const std::string& key() const { return key_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string key_;
  std::string reason_;
};

// `${VAR}` in scalar values is replaced from the environment; an unset variable
// is an error naming the key. `source` names the text in error messages.
Config loadConfigFile(const std::string& path);
Config loadConfigString(const std::string& yaml, const std::string& source);

// Redacts secrets (passwords, dsn password=...) for logs and /config.
std::string redactedSummary(const Config& config);

// Parses "500ms", "30s", "5m", "1h", "1d" or a bare integer of seconds.
// Returns false on bad input.
bool parseDuration(const std::string& text, Millis& out);
// Parses "64mb", "512kb", "1gb", "100" (bytes). Returns false on bad input.
bool parseSize(const std::string& text, std::size_t& out);

// The inverse, in the largest exact unit: "30s", "1h", "250ms", "64mb", "10%".
std::string formatDuration(Millis value);
std::string formatSize(std::size_t value);
std::string formatPercent(double fraction);

}  // namespace larder::config
