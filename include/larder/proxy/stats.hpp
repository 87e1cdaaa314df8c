#pragma once
// Per-worker counters: written only by their worker, read by anyone (INFO,
// /metrics), summed at read time.
#include <memory>
#include <vector>

#include "larder/cache/read_stats.hpp"
#include "larder/common/counter.hpp"
#include "larder/proxy/command_stats.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::proxy {

using cache::KeyspaceCounters;

// Everything a worker counts; the read path's part is cache::ReadPathStats.
struct WorkerStats : cache::ReadPathStats {
  Counter connections_total;  // accepted on this worker
  Counter connections_current;
  Counter commands;  // requests executed (forwarded or answered)
  Counter protocol_errors;
  Counter output_limit_closes;  // clients closed for not reading their replies
  Counter idle_closes;
  Counter backend_waits;   // a session paused because its backend connection was full
  Counter pinned_current;  // dedicated backend connections in use
  Counter pinned_total;
  redis::BackendStats backend;
  CommandStats by_command;
};

}  // namespace larder::proxy
