#pragma once
// Per-worker counters: written only by their worker, read by anyone (INFO,
// /metrics), summed at read time.
#include "larder/common/counter.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::server {

struct WorkerStats {
  Counter connections_total;     // accepted on this worker
  Counter connections_current;
  Counter commands;              // requests executed (forwarded or answered)
  Counter protocol_errors;
  Counter output_limit_closes;   // clients closed for not reading their replies
  Counter idle_closes;
  Counter pinned_current;        // dedicated backend connections in use
  Counter pinned_total;
  redis::BackendStats backend;
};

}  // namespace larder::server
