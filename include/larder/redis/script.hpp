#pragma once
// A Lua script for Redis with its SHA-1, so it can be run with EVALSHA.
#include <string>
#include <string_view>
#include <vector>

namespace larder::redis {

struct Script {
  std::string body;
  std::string sha1;  // hex, for EVALSHA
};

Script makeScript(std::string body);

// Appends EVALSHA <sha> <n> <keys...> <args...> (EVAL with the body when `body`).
void appendScriptCall(std::string& out, const Script& script, bool body,
                      const std::vector<std::string_view>& keys,
                      const std::vector<std::string_view>& args);

}  // namespace larder::redis
