#pragma once
#include <exception>
#include <functional>
#include <string>
#include <string_view>

namespace larder {

// Sets up the process-wide spdlog logger: text lines, or one JSON object per
// line. Throws std::invalid_argument on an unknown level.
void setupLogging(const std::string& level, bool json);
// Both may be called at any time, from any thread (reload).
void setLogLevel(const std::string& level);
void setLogFormat(bool json);
// The level in force, as the config spells it ("warn", not spdlog's "warning").
std::string logLevelName();

// `text` as the inside of a JSON string: quotes, backslashes and control
// characters escaped; bytes that are not valid UTF-8 become \ufffd.
std::string jsonEscape(std::string_view text);

// Completion handler for co_spawn: an exception that escaped the coroutine is
// logged (critical: it is a bug), never lost.
std::function<void(std::exception_ptr)> logEscaped(const char* what);

}  // namespace larder
