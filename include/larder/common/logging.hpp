#pragma once
#include <string>

namespace larder {

// Sets up the process-wide spdlog logger. `format` is "text" or "json" (one JSON
// object per line). Throws std::invalid_argument on an unknown level.
void setupLogging(const std::string& level, bool json);
void setLogLevel(const std::string& level);

}  // namespace larder
