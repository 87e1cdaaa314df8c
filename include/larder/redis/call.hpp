#pragma once
// Awaitable request/reply on a Route (one Redis or a cluster), for the PostgreSQL-side
// services (Flusher, operator commands) that talk to Redis one step at a time.
// The coroutine must run on the route's executor.
#include <boost/asio/awaitable.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "larder/redis/backend_connection.hpp"
#include "larder/redis/script.hpp"

namespace larder::redis {

// Sends one request and returns its reply frame (an error frame when the
// connection is down).
boost::asio::awaitable<std::string> call(Route& route, std::string request);

// EVALSHA, then EVAL once if Redis does not have the script (NOSCRIPT).
boost::asio::awaitable<std::string> callScript(Route& route, const Script& script,
                                               std::vector<std::string> keys,
                                               std::vector<std::string> args);

// Sends every request at once (pipelined on one connection, in parallel to
// a cluster's nodes); their replies, in the requests' order.
boost::asio::awaitable<std::vector<std::string>> callAll(Route& route,
                                                         std::vector<std::string> requests);

struct ScriptCall {
  std::vector<std::string> keys;
  std::vector<std::string> args;
};
// callScript for several calls at once (one per slot, say); replies in order.
boost::asio::awaitable<std::vector<std::string>> callScriptEach(
    Route& route, const Script& script, const std::vector<ScriptCall>& calls);

}  // namespace larder::redis
