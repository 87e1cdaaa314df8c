#include "larder/common/logging.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

namespace larder {

void setLogLevel(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  // from_str maps unknown names to "off"; only "off" itself may mean off.
  if (parsed == spdlog::level::off && level != "off") {
    throw std::invalid_argument("unknown log level '" + level + "'");
  }
  spdlog::set_level(parsed);
}

void setupLogging(const std::string& level, bool json) {
  auto logger = spdlog::stderr_color_mt("larder");
  spdlog::set_default_logger(logger);
  if (json) {
    // One object per line. The message is not JSON-escaped yet: a message
    // holding a quote breaks the line's JSON (open work, issue #5).
    spdlog::set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","thread":%t,"msg":"%v"})",
                        spdlog::pattern_time_type::utc);
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%t] %v");
  }
  setLogLevel(level);
}

}  // namespace larder
