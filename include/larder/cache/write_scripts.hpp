#pragma once
// The Lua scripts that keep Redis, the write queue and the pending-write
// markers consistent. Each runs atomically in Redis; see change.hpp for the
// field encoding they share with the Flusher.
//
//   write  (worker, every behind write of one event-loop turn on a connection,
//          WriteCall): check the key is known, refuse when the queue is full,
//          XADD the change, merge it into the marker, update the cached value,
//          and answer as Redis would, one reply per write.
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
// Keys with a dead letter and no write since: only those are re-queued by
// LARDER DEADLETTERS RETRY (write_scripts.cpp, kRequeueLua).
std::string deadKeysKey(std::string_view keyspace);  // __larder:deadkeys:<keyspace>
inline constexpr std::string_view kInstanceIdKey = "__larder:id";

// Replies the write script gives instead of a client reply.
inline constexpr std::string_view kMissReply = "+LARDERMISS\r\n";  // load the row, then retry
inline constexpr std::string_view kFullReply = "+LARDERFULL\r\n";  // the queue is at its bound

using redis::Script;

// One call of the write script with any number of writes, built straight
// into RESP: the per-write cost is a few appends, not a vector of strings.
class WriteCall {
 public:
  // mode: 'b' (behind: queue and marker) or 'c' (cache only, after a
  // write-through commit); channel: where changes are PUBLISHed ("" none).
  WriteCall(char mode, std::string_view channel, std::size_t max_queue);
  void add(std::string_view key, std::string_view keyspace, std::string_view op, bool absent,
           long long ttl_ms, const std::vector<std::string>& op_args);
  std::size_t size() const { return writes_; }
  bool empty() const { return writes_ == 0; }
  // EVALSHA (EVAL with the body when `body`) of every write added.
  std::string request(bool body) const;

 private:
  void appendOneRedisNames(std::string_view key, std::string_view keyspace);

  std::string header_args_;  // mode, channel, bound: RESP bulks
  std::string keys_;         // RESP bulks, 3 per write
  std::string args_;         // RESP bulks
  std::size_t writes_ = 0;
  std::size_t arg_count_ = 3;
};

const Script& writeScript();
const Script& fillScript();
const Script& pendingScript();
const Script& wipeCacheScript();
const Script& requeueScript();
const Script& dropDeadLettersScript();
// A cluster's queues per slot, over a chunk of slots of one node
// (operator_scripts.cpp): LARDER PENDING's sums, and the dead-letter
// streams with entries.
const Script& pendingSlotsScript();
const Script& deadLetterSlotsScript();

// The write script's *N reply as its N elements (each a complete reply);
// empty when `frame` is not an array (an error for the whole call) or broken.
std::vector<std::string_view> splitWriteReplies(std::string_view frame);

// SCRIPT LOAD requests for BackendConnection::setPreload.
std::vector<std::string> preloadRequests(std::initializer_list<const Script*> scripts);

}  // namespace larder::cache
