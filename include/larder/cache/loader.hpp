#pragma once
// The Loader answers cache misses from PostgreSQL, on the PostgreSQL thread.
//
//   worker: load(ks, key) --post--> flights_[key] exists?  join it (single-flight)
//                                   negative_[key] fresh?   answer Missing
//                                   else queue in its keyspace's batch
//   batch window (~0.5 ms) or max_batch reached:
//       one SELECT ... JOIN unnest($1::type[]) WITH ORDINALITY  (bound arrays)
//       -> answer every waiter -> fill Redis (conditional Lua) -> drop the flight
//
// A flight stays until shortly after its fill is acknowledged, so a request
// that missed Redis just before the fill landed joins the known result instead
// of querying again. Waiters are answered by their deadline (load_timeout) even if
// PostgreSQL never replies.
//
// Across instances (stampede.hpp): before its SELECT a batch takes a Redis
// lease per key; a key whose lease another instance holds waits for that
// instance's fill instead. Refreshes (XFetch, stale-while-revalidate) are
// flights without waiters that replace the cached value.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "larder/cache/keyspace.hpp"
#include "larder/common/counter.hpp"
#include "larder/common/histogram.hpp"
#include "larder/pg/pool.hpp"
#include "larder/redis/backend_connection.hpp"
#include "larder/resp/reply_value.hpp"

namespace larder::cache {

struct LoadResult {
  enum class Status { Found, Missing, Error };
  Status status = Status::Missing;
  std::vector<std::optional<std::string>> values;  // per value column, when Found
  std::string error;                               // error reply text, when Error
  long long ttl_ms = -1;                           // TTL the fill used; -1 = none
};

// Runs on the loader thread; post back to your own executor from it.
using LoadCallback = std::function<void(const LoadResult&)>;

struct LoaderStats {
  Counter queries;       // SELECTs sent
  Counter keys_queried;  // keys in them
  Counter rows_found;
  Counter joins;             // requests that joined a flight in progress
  Counter negative_hits;     // answered from the negative cache
  Counter errors;            // waiters answered with an error
  Counter timeouts;          // ... of which because load_timeout passed
  Counter fills;             // rows stored in Redis
  Counter fills_skipped;     // fill lost to a newer write
  Counter pending_overlays;  // misses answered with pending writes laid over the row
  Counter leases_won;        // loads this instance ran under a lease
  Counter leases_waited;     // loads left to another instance's lease
  Counter peer_fills;        // ... answered from that instance's fill
  Counter refreshes;         // refreshes run (early or stale)
  Counter refreshes_stored;  // ... that replaced the cached value
  Histogram latency;         // from enqueue to answer
};

class Loader {
 public:
  Loader(boost::asio::io_context& context, pg::Pool& pool, const config::ReadThroughConfig& config);
  ~Loader();

  // Fills go through this connection (on the loader's context). Without one,
  // rows are returned but not stored.
  void setFiller(std::shared_ptr<redis::Route> filler) { filler_ = std::move(filler); }
  // A row read longer ago than this is answered but never stored: a flushed
  // write's marker may be gone by then (flusher.hpp, markerLinger).
  void setFillWindow(std::chrono::milliseconds window) { fill_window_ = window; }
  // How long the filler's Redis steps (lease, fill) may wait beyond
  // read_through.load_timeout: a cluster's router holds requests for a shard
  // in failover up to redis.cluster.retry_timeout; one Redis answers at once.
  void setRedisWait(std::chrono::milliseconds wait) { redis_wait_ = wait; }

  // Any thread. `fill`: store the row in Redis (false when Redis is down).
  // Who asks: a writer's load (a write that needs the row) is followed by its
  // write at once, so a missing row is not remembered as absent (neither in
  // the negative cache nor as an "absent" lease in Redis: the write's marker
  // may be gone, flushed, before such a lease would expire).
  enum class For { Read, Write };
  void load(const Keyspace& ks, std::string key, std::vector<std::string> key_values, bool fill,
            LoadCallback done, For purpose = For::Read);
  // Any thread: a write changed the row. Forget that it was missing, and let
  // no load of it in flight (or lingering) answer anyone else or be stored.
  void forgetAsync(std::string key);
  // Any thread: a hit decided to refresh `key` (stampede.hpp). Runs one
  // background load unless one is in flight; the cached value is replaced.
  void refresh(const Keyspace& ks, std::string key, std::vector<std::string> key_values);

  const LoaderStats& stats(int keyspace) const { return *stats_[keyspace]; }

  // Loader thread: a write to `key` committed. A load in flight must not store
  // what it read before, and a later miss must query again.
  void forget(const std::string& key);
  // Loader thread: rows may exist now that were missing (dead letters retried).
  void forgetAllMissing() { negative_.clear(); }
  // forget() for every key of a keyspace now loading, and every missing row.
  void forgetKeyspace(int keyspace);

 private:
  struct Waiter {
    LoadCallback done;
    std::chrono::steady_clock::time_point since;
  };
  struct Flight {
    const Keyspace* ks = nullptr;
    std::string key;
    std::vector<std::string> key_values;
    bool fill = false;  // Redis is up: ask it (pending writes, newer values) and fill
    bool store = true;  // false once a write makes what was loaded stale
    bool answered = false;
    bool refresh = false;    // replaces a cached value; waiters only if a miss joined
    bool leased = false;     // holds this key's lease in Redis
    bool for_write = false;  // a writer waits on it: "absent" is not remembered
    std::chrono::steady_clock::duration took{};  // how long the SELECT took (XFetch's delta)
    std::optional<std::chrono::steady_clock::time_point> filled_at;  // fill acknowledged
    std::chrono::steady_clock::time_point queried_at;                // SELECT sent
    LoadResult loaded;  // what PostgreSQL said, before pending writes are laid over
    LoadResult result;  // what the waiters were told
    std::vector<Waiter> waiters;
  };
  using FlightPtr = std::shared_ptr<Flight>;

  void enqueue(const Keyspace& ks, std::string key, std::vector<std::string> key_values, bool fill,
               LoadCallback done, For purpose);
  // A new flight for `key`, its first waiter `done`, in flights_.
  FlightPtr takeOff(const Keyspace& ks, std::string key, std::vector<std::string> key_values,
                    bool fill, bool for_write, LoadCallback done);
  void schedule(FlightPtr flight);  // into its keyspace's next batch
  void dispatch(int keyspace);
  // Takes the leases, leaves keys other instances load to awaitPeer, then loadBatch.
  boost::asio::awaitable<void> runBatch(std::vector<FlightPtr> batch);
  boost::asio::awaitable<void> loadBatch(std::vector<FlightPtr> batch);
  // False when Redis could not be asked: load without a lease.
  // What leaseScript said for a flight (its reply integers), or NotAsked (no
  // fill, no lease configured, or Redis could not be asked).
  enum class Lease : long long { NotAsked = -1, Held = 0, Won = 1, Absent = 2, Present = 3 };
  boost::asio::awaitable<std::vector<Lease>> takeLeases(const std::vector<FlightPtr>& batch);
  // Polls Redis until the lease holder's fill lands, the row is known absent,
  // or the lease is gone (then tries to take it).
  boost::asio::awaitable<void> awaitPeer(FlightPtr flight, std::chrono::milliseconds first);
  boost::asio::awaitable<void> releaseLease(const FlightPtr& flight, const char* outcome,
                                            long long ttl_ms);
  LoadResult decodeRow(const Keyspace& ks, const resp::ReplyValue& reply, std::size_t from) const;
  void drop(const FlightPtr& flight);  // removes the flight from flights_ if it is still there
  boost::asio::awaitable<void> query(pg::Connection& connection,
                                     const std::vector<FlightPtr>& batch, pg::PgError& error);
  void answer(const FlightPtr& flight, const LoadResult& result);
  // Stores the row (the fill script lays pending writes over it), then answers.
  boost::asio::awaitable<void> settle(FlightPtr flight);
  void sweepDeadlines();
  bool negativeHit(const std::string& key, const Keyspace& ks);
  // The negative cache learns that the flight's key has no row (not for a writer's load).
  void rememberMissing(const Flight& flight);
  long long ttlWithJitter(const Keyspace& ks);
  long long cacheTtl(const Keyspace& ks);  // with jitter and the stale window; -1: none
  long long absentLeaseMs(const Keyspace& ks) const;

  boost::asio::io_context& context_;
  pg::Pool& pool_;
  const config::ReadThroughConfig& config_;
  std::shared_ptr<redis::Route> filler_;
  std::chrono::milliseconds fill_window_{7000};
  std::chrono::milliseconds redis_wait_{0};
  std::string lease_token_;  // this instance's value in the leases it holds
  std::vector<std::unique_ptr<LoaderStats>> stats_;
  std::unordered_map<std::string, FlightPtr> flights_;
  std::vector<std::vector<FlightPtr>> queued_;  // per keyspace
  std::vector<std::unique_ptr<boost::asio::steady_timer>> windows_;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> negative_;
  // Keys refreshed (or left to another instance) a moment ago: hits in the
  // stale window ask again and again until the new value lands.
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> refresh_quiet_;
  boost::asio::steady_timer sweep_;
  bool sweeping_ = false;
};

}  // namespace larder::cache
