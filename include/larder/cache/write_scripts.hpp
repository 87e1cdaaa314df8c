#pragma once
// The Lua scripts that keep Redis, the write queue and the pending-write
// markers consistent. Each runs atomically in Redis; see change.hpp for the
// field encoding they share with the Flusher.
//
//   write  (worker, per mapped key):  check the key is known, refuse when the
//          queue is full, XADD the change, merge it into the marker, update the
//          cached value, and answer as Redis would.
//   fill   (Loader): store a loaded row unless the key exists; when a marker
//          exists, overlay the pending changes first and return the result.
// The Flusher's own scripts are in flush_scripts.hpp.
#include <string>
#include <string_view>
#include <vector>

#include "larder/cache/flush_scripts.hpp"
#include "larder/redis/script.hpp"

namespace larder::cache {

// Redis keys Larder owns. Clients can reach none of them through Larder.
inline constexpr std::string_view kReservedPrefix = "__larder:";
std::string queueKey(std::string_view keyspace);       // __larder:q:<keyspace>
std::string deadLetterKey(std::string_view keyspace);  // __larder:dead:<keyspace>
std::string pendingMarker(std::string_view key);       // __larder:pending:<key>
inline constexpr std::string_view kInstanceIdKey = "__larder:id";

// Replies the write script gives instead of a client reply.
inline constexpr std::string_view kMissReply = "+LARDERMISS\r\n";  // load the row, then retry
inline constexpr std::string_view kFullReply = "+LARDERFULL\r\n";  // the queue is at its bound

using redis::Script;

const Script& writeScript();
const Script& fillScript();
const Script& pendingScript();
const Script& wipeCacheScript();
const Script& requeueScript();

// SCRIPT LOAD requests for BackendConnection::setPreload.
std::vector<std::string> preloadRequests(std::initializer_list<const Script*> scripts);

}  // namespace larder::cache
