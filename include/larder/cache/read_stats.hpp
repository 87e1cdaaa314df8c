#pragma once
// Read-path counters of one worker (mapped reads and writes, the near cache):
// written only by their worker, read by anyone (INFO, /metrics).
#include <memory>
#include <vector>

#include "larder/common/counter.hpp"

namespace larder::cache {

// Read-path counters of one keyspace, as seen by one worker.
struct KeyspaceCounters {
  Counter hits;
  Counter misses;           // went to the Loader
  Counter fallbacks;        // Redis down: answered from PostgreSQL alone
  Counter refused;          // -WRONGTYPE and refused writes
  Counter writes;           // writes acknowledged (behind: queued; through: committed)
  Counter queue_full;       // writes that found the queue at its bound
  Counter stale_hits;       // hits past their soft TTL (stale-while-revalidate), each refreshing
  Counter early_refreshes;  // hits that started an XFetch early refresh
  // Near cache (docs/near_cache.md): reads served in the worker, reads that
  // were eligible but went to Redis, entries dropped and why, whole-cache
  // flushes, and the gauges of what it holds now.
  Counter near_hits;
  Counter near_misses;
  Counter near_evicted_invalidation;
  Counter near_evicted_capacity;
  Counter near_evicted_ttl;
  Counter near_flushes;
  Counter near_bytes;
  Counter near_entries;
};

struct ReadPathStats {
  Counter near_tracking_up;  // 1 while this worker's near-cache invalidation is established
  std::vector<std::unique_ptr<KeyspaceCounters>> keyspaces;  // by keyspace id

  KeyspaceCounters& keyspace(int id) { return *keyspaces[static_cast<std::size_t>(id)]; }
  const KeyspaceCounters& keyspace(int id) const {
    return *keyspaces[static_cast<std::size_t>(id)];
  }
};

}  // namespace larder::cache
