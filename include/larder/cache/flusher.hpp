#pragma once
// The Flusher moves one keyspace's queued writes into PostgreSQL, on the
// PostgreSQL thread.
//
//   own the queue   pg_try_advisory_lock('larder:<redis id>:<ks>') on apply
//                   connection 0, then read the applied marks (flush_state.hpp);
//                   no batch is read before both
//        |
//   read            XRANGE (cursor COUNT max_batch ----------+ a full batch: the
//   plan            replays skipped, keys to partitions       | next read runs while
//        |          (flush_plan.hpp)                          | this one applies, and
//   apply           per partition, on its own connection, in  | the previous ack too
//                   parallel: BEGIN; move the partition's mark (a fence); DELETE
//                   and INSERT .. ON CONFLICT; COMMIT
//                     a row refused (22xxx/23xxx): bisect with savepoints in the
//                     same transaction, record the dead letter in Redis, then
//                     COMMIT the rest: a crash can re-apply, never lose it
//                     anything else: ROLLBACK; the keyspace pauses with backoff,
//                     queue and cache untouched, /readyz not ready
//        |
//   ack             markers linger, replayed keys' stale markers go, XTRIM MINID
//
// One flusher per keyspace at a time, also across Larder instances sharing a
// Redis: the advisory lock names the Redis instance id (__larder:id) and the
// keyspace. The marks make every apply idempotent besides: an entry at or
// below its partition's mark is never applied again, so neither a replay
// (Redis restored from a snapshot, a lagging replica, a crash between COMMIT
// and the ack) nor a second flusher can put an older value over a newer one.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "larder/cache/change.hpp"
#include "larder/cache/dirty_slots.hpp"
#include "larder/cache/flush_plan.hpp"
#include "larder/cache/flush_state.hpp"
#include "larder/cache/keyspace.hpp"
#include "larder/common/counter.hpp"
#include "larder/common/histogram.hpp"
#include "larder/config/config.hpp"
#include "larder/pg/connection.hpp"
#include "larder/redis/route.hpp"
#include "larder/resp/reply_value.hpp"

namespace larder::cache {

struct FlusherStats {
  Counter queue_depth;    // entries in the queue at the last read (gauge)
  Counter oldest_age_ms;  // age of the oldest entry at the last read (gauge)
  Counter batches;        // transactions committed
  Counter entries;        // queue entries acknowledged
  Counter rows;           // rows written or deleted
  Counter coalesced;      // entries folded into another write to the same key
  Counter retries;        // batches given up on by a pause (and tried again later)
  Counter dead_letters;   // rows PostgreSQL refused for good
  Counter lock_held;      // 1 while this instance flushes the keyspace (gauge)
  Counter paused;         // 1 while the flush waits after an error that is not the row's (gauge)
  Counter pause_state;    // SQLSTATE of that error, 5 bytes packed; 0: none (or no SQLSTATE)
  Counter replayed;       // entries skipped: already applied (a replay)
  Counter redis_behind;   // times Redis was found behind PostgreSQL (went back in time)
  Histogram latency;      // read-to-ack time of a batch
};

// The SQLSTATE packed in FlusherStats::pause_state, or "" when there is none.
std::string unpackSqlstate(std::uint64_t packed);

// A Redis Cluster's write queues: one per slot (key_names.hpp), found by the
// workers' marks and a periodic sweep (flusher_slots.cpp).
struct SlotQueues {
  DirtySlots* dirty = nullptr;  // marked by the workers; outlives the flusher
  // The slot ranges of the current map, each owned whole by one node.
  std::function<std::vector<std::pair<int, int>>()> ranges;
};

class Flusher {
 public:
  // `slots`: the queues are a cluster's, one per slot; otherwise one Redis's
  // single queue (queueKey).
  Flusher(boost::asio::io_context& context, const Keyspace& ks, const config::Config& config,
          std::shared_ptr<redis::Route> redis, std::optional<SlotQueues> slots = std::nullopt);
  ~Flusher();

  void start();
  // Stops after the current step; the lock goes with the connections.
  void stop();
  // Called (PostgreSQL thread) when Redis went back in time and the
  // keyspace's cached values were dropped: loads in flight must not store.
  void onCacheDropped(std::function<void(int keyspace)> f) { cache_dropped_ = std::move(f); }
  // Before start(): a keyspace that is not `behind` any more has an old
  // queue; flush it until it is empty, call `done`, and stop.
  void drainThenStop(std::function<void()> done) { drained_ = std::move(done); }
  // A drain that has ended (its queue was empty) runs again, calling `done`
  // again when the queue is empty: it got entries since (another instance
  // still `behind`); nothing while it runs or once stopped.
  void drainAgain();

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
    std::optional<StreamId> target;  // the newest entry at the first read after the call
    bool has_target = false;
    std::shared_ptr<boost::asio::steady_timer> timer;  // fires at the deadline
    // A cluster: every slot's newest entry at the first sweep after the call.
    std::vector<std::pair<int, StreamId>> slot_targets;
  };
  // One slot's queue on a cluster.
  struct SlotQueue {
    std::string owner_for;  // the slot's instance id the marks are for; "" none
    AppliedMarks marks{1};
    std::unique_ptr<FlushState> state;
    StreamId acked;
  };
  // A slot's share of a round on a cluster.
  struct SlotBatch {
    int slot = 0;
    FlushBatch batch;
    std::size_t entries = 0;
  };
  using Fence = std::function<boost::asio::awaitable<pg::PgError>(pg::Connection&)>;
  using Read = QueueRead;
  struct Dead {
    PendingRow row;
    StreamId last;
    pg::PgError why;
  };
  enum class Own { Yes, Taken, Failed };

  // 32 random hex digits: an instance id to claim.
  static std::string randomId();
  // Runs the tasks concurrently on the current executor and waits for them all.
  static boost::asio::awaitable<void> runAll(
      std::vector<std::function<boost::asio::awaitable<void>()>> tasks);
  void spawnRun();
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<void> pause(std::chrono::milliseconds d);
  boost::asio::awaitable<std::string> claimInstance();
  boost::asio::awaitable<Own> own(const std::string& instance, pg::PgError& error);
  boost::asio::awaitable<std::optional<Read>> read(std::string start);
  boost::asio::awaitable<pg::PgError> applyAll(FlushBatch& batch);
  boost::asio::awaitable<pg::PgError> applyPart(std::size_t p, PartitionBatch& part);
  // BEGIN, fence(c) (moves the applied marks, a fence), the rows (refused
  // ones bisected out and dead-lettered), COMMIT.
  boost::asio::awaitable<pg::PgError> applyRows(pg::Connection& c, const PartitionBatch& part,
                                                const Fence& fence);
  boost::asio::awaitable<pg::PgError> bisect(pg::Connection& c, const PartitionBatch& part,
                                             std::vector<std::size_t> which,
                                             std::vector<Dead>& dead);
  boost::asio::awaitable<pg::PgError> statements(pg::Connection& c, const PartitionBatch& part,
                                                 const std::vector<std::size_t>& which);
  boost::asio::awaitable<pg::PgError> recordDead(std::vector<Dead>& dead);
  boost::asio::awaitable<bool> ack(const FlushBatch& batch);
  boost::asio::awaitable<bool> ackQueue(std::string queue, const FlushBatch& batch);
  // Redis' queue is behind what PostgreSQL applied: move its id generator on
  // and drop the keyspace's cached values, which may be older than PostgreSQL.
  boost::asio::awaitable<bool> resync();
  boost::asio::awaitable<bool> resyncQueue(std::string queue, StreamId top);
  bool alreadyApplied(std::string_view key, StreamId id) const;

  // A cluster's queues, one per slot (flusher_slots.cpp).
  boost::asio::awaitable<void> runSlots();
  // The owned ranges' queues with entries -> pending_, gauges, waiters' targets.
  boost::asio::awaitable<bool> sweep();
  // XRANGE (COUNT `count`) and the read script of each slot's queue; nullopt
  // for a slot whose reply did not decode (a node unreachable, say).
  // The slots' indices grouped by the node that owns them in the current map
  // (at most kSweepChunk per group; a slot outside the map alone).
  std::vector<std::vector<std::size_t>> byNode(const std::vector<int>& slots) const;
  boost::asio::awaitable<std::vector<std::optional<Read>>> readSlots(const std::vector<int>& slots,
                                                                     std::size_t count);
  // The marks of each (slot, its instance id in Redis), read from PostgreSQL.
  boost::asio::awaitable<pg::PgError> loadSlots(
      const std::vector<std::pair<int, std::string>>& found);
  boost::asio::awaitable<pg::PgError> applySlots(std::size_t p, std::vector<SlotBatch*> group);
  // After COMMIT: each slot's ack, one script per node; the slots not acked
  // are read again.
  boost::asio::awaitable<void> ackSlots(std::vector<SlotBatch>& batches);
  void settleSlotWaiters();
  boost::asio::awaitable<bool> dropCachedValues();
  boost::asio::awaitable<bool> dropAppliedMarkers();
  // SCAN MATCH `pattern` to the end (or until a stop); `page` gets each
  // page's keys; false when Redis or `page` fails.
  boost::asio::awaitable<bool> scanEach(
      std::string pattern,
      std::function<boost::asio::awaitable<bool>(const resp::ReplyValue&)> page);

  // The depth and age gauges between reads of the queue (flusher.cpp).
  boost::asio::awaitable<void> watchGauges();
  void showGauges(const Read& read);
  void settleWaiters(const Read* read);
  void failedStep(const pg::PgError& error);  // pause bookkeeping and the log line
  void recovered();
  std::chrono::milliseconds nextBackoff();
  void dropOwnership();

  boost::asio::io_context& context_;
  const Keyspace& ks_;
  const config::Config& config_;
  std::shared_ptr<redis::Route> redis_;  // one Redis's queue connection
  std::size_t partitions_;
  std::vector<std::unique_ptr<pg::Connection>> apply_;  // [0] holds the advisory lock
  std::unique_ptr<FlushState> state_;
  AppliedMarks marks_;
  std::string owner_for_;  // instance id the lock and marks are for; "" none
  std::string candidate_id_;
  std::string cursor_ = "-";   // XRANGE start of the next read
  StreamId acked_;             // newest entry this flusher acknowledged
  std::size_t dead_rows_ = 0;  // rows of the batch being applied that were refused
  boost::asio::steady_timer timer_;
  boost::asio::steady_timer gauge_timer_;
  std::chrono::steady_clock::time_point gauges_at_{};  // when the queue was last read
  std::vector<Waiter> waiters_;
  std::uint64_t next_waiter_ = 0;
  FlusherStats stats_;
  std::chrono::milliseconds backoff_{0};
  std::string pause_logged_;  // the error last logged; "" while flushing
  std::chrono::steady_clock::time_point paused_since_;
  std::function<void(int)> cache_dropped_;
  std::function<void()> drained_;
  bool stopping_ = false;
  bool running_ = false;

  std::optional<SlotQueues> sharded_;
  std::unordered_map<int, SlotQueue> slots_;  // at most one per slot
  std::set<int> pending_;                     // slots to read next (at most every slot)
  std::chrono::steady_clock::time_point swept_{};
  bool sweep_now_ = true;
  bool table_ready_ = false;  // the state table exists (checked once per ownership)
};

// A load older than loadWindow() is never stored; a flushed marker lingers
// markerLinger() > loadWindow(), so a load that read a row before a flush
// committed always finds the marker and lays the flushed writes over it.
std::chrono::milliseconds loadWindow(const config::Config& config);
std::chrono::milliseconds markerLinger(const config::Config& config);

}  // namespace larder::cache
