#pragma once
// The Flusher moves one keyspace's queued writes into PostgreSQL, on the
// PostgreSQL thread.
//
//   Redis  __larder:q:<ks>  (stream, appended by the write script)
//     |  XRANGE - + COUNT max_batch          (oldest first; nothing is removed yet)
//     v
//   coalesce per key (Change::then: last write wins, HSET fields merge,
//   DEL is a tombstone) -> one transaction: DELETE ... USING unnest(...),
//   INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE, COMMIT
//     |  refused for good (22xxx, 23xxx...): split the batch in halves until
//     |  the row is alone, then move it to __larder:dead:<ks>
//     v
//   ack script: XDEL the entries, drop each marker whose last write is flushed
//
// One flusher per keyspace at a time, also across Larder instances sharing a
// Redis: the flusher holds a PostgreSQL advisory lock, named after the Redis
// instance id (__larder:id) and the keyspace, on the very connection that
// applies the batches. If that connection dies the lock goes with it, and so
// does any transaction it had open: a second flusher can never interleave
// with it. A crashed instance's entries simply stay in the stream until the
// next lock holder reads them; every apply is an idempotent upsert/delete, so
// a replay after a crash between COMMIT and XDEL is harmless.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "larder/cache/change.hpp"
#include "larder/cache/keyspace.hpp"
#include "larder/common/counter.hpp"
#include "larder/common/histogram.hpp"
#include "larder/config/config.hpp"
#include "larder/pg/connection.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::cache {

struct FlusherStats {
  Counter queue_depth;    // entries in the queue at the last read (gauge)
  Counter oldest_age_ms;  // age of the oldest entry at the last read (gauge)
  Counter batches;        // transactions committed
  Counter entries;        // queue entries acknowledged
  Counter rows;           // rows written or deleted
  Counter coalesced;      // entries folded into another write to the same key
  Counter retries;        // batches retried after a retryable error
  Counter dead_letters;   // rows PostgreSQL refused for good
  Counter lock_held;      // 1 while this instance flushes the keyspace (gauge)
  Histogram latency;      // read-to-ack time of a batch
};

class Flusher {
 public:
  Flusher(boost::asio::io_context& context, const Keyspace& ks, const config::Config& config,
          std::shared_ptr<redis::BackendConnection> redis);
  ~Flusher();

  void start();
  // Stops after the current step; the lock goes with the connection.
  void stop();

  // PostgreSQL thread. `done(true)` once every entry queued before the call is
  // in PostgreSQL (or dead-lettered); `done(false)` at the deadline.
  void flush(std::chrono::steady_clock::time_point deadline, std::function<void(bool)> done);

  const Keyspace& keyspace() const { return ks_; }
  const FlusherStats& stats() const { return stats_; }

 private:
  struct Waiter {
    std::uint64_t id;
    std::chrono::steady_clock::time_point deadline;
    std::function<void(bool)> done;
    std::string target;  // last entry id when first seen; "" until then
    bool has_target = false;
    std::shared_ptr<boost::asio::steady_timer> timer;  // fires at the deadline
  };
  struct Entry {
    std::string id;
    std::string key;
    Change change;
  };

  boost::asio::awaitable<void> run();
  boost::asio::awaitable<void> pause(std::chrono::milliseconds d);
  boost::asio::awaitable<bool> holdLock(const std::string& instance);
  // Applies rows[which] in one transaction; on a permanent error splits them.
  boost::asio::awaitable<pg::PgError> apply(const std::vector<PendingRow>& rows,
                                            std::vector<std::size_t> which,
                                            std::vector<std::pair<std::size_t, pg::PgError>>& dead);
  boost::asio::awaitable<pg::PgError> transaction(const std::vector<PendingRow>& rows,
                                                  const std::vector<std::size_t>& which);
  void settleWaiters(const std::vector<Entry>* entries, const std::string& last_id, bool acked);
  void dropConnection();

  boost::asio::io_context& context_;
  const Keyspace& ks_;
  const config::Config& config_;
  std::shared_ptr<redis::BackendConnection> redis_;
  std::unique_ptr<pg::Connection> pg_;
  std::string locked_for_;  // instance id the advisory lock was taken for; "" none
  std::string candidate_id_;
  boost::asio::steady_timer timer_;
  std::vector<Waiter> waiters_;
  std::uint64_t next_waiter_ = 0;
  FlusherStats stats_;
  std::chrono::milliseconds backoff_{0};
  bool stopping_ = false;
  bool running_ = false;
};

// True for errors worth retrying later (connection loss, 40001, 40P01, a lock
// or statement timeout...); false when PostgreSQL refuses the row for good.
bool retryableForFlush(const pg::PgError& error);

// A load older than loadWindow() is never stored; a flushed marker lingers
// markerLinger() > loadWindow(), so a load that read a row before a flush
// committed always finds the marker and lays the flushed writes over it.
std::chrono::milliseconds loadWindow(const config::Config& config);
std::chrono::milliseconds markerLinger(const config::Config& config);

}  // namespace larder::cache
