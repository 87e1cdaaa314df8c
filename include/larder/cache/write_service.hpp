#pragma once
// The PostgreSQL side of writes, on the PostgreSQL thread: one Flusher per
// keyspace in `behind` mode, the write-through group commits of keyspaces in
// `through` mode (write_through.hpp), the checks of Redis (redis_audit.hpp),
// and the operator commands (LARDER FLUSH / PENDING / DEADLETTERS, FLUSHALL
// through Larder).
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "larder/cache/change.hpp"
#include "larder/cache/flusher.hpp"
#include "larder/cache/keyspace.hpp"
#include "larder/cache/loader.hpp"
#include "larder/cache/redis_audit.hpp"
#include "larder/cache/slot_operator.hpp"
#include "larder/cache/write_through.hpp"
#include "larder/common/slots.hpp"
#include "larder/config/config.hpp"
#include "larder/pg/pool.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::cache {

class WriteService {
 public:
  // `redis`: the queue connection (flushers, the persistence audit, LARDER
  // PENDING and DEADLETTERS); null on a cluster, where those read the
  // queues per slot through `cache` (write_service_slots.cpp). `cache`: where write-through
  // updates the cache, and, on a cluster, where the flushers read their
  // per-slot queues; `slot_ranges` (a cluster only): the slot ranges of the
  // map, each owned whole by one node (SlotQueues); `primaries` (a cluster
  // only): the nodes whose persistence and write queues the audit checks.
  WriteService(boost::asio::io_context& context, pg::Pool& pool, Loader& loader,
               const KeyspaceRegistry& registry, const config::Config& config,
               std::shared_ptr<redis::BackendConnection> redis, std::shared_ptr<redis::Route> cache,
               std::function<std::vector<std::pair<int, int>>()> slot_ranges = {},
               std::function<std::vector<PrimaryNode>()> primaries = {});
  ~WriteService();

  void start();
  void stop();
  // A keyspace a reload added to the registry: its flusher starts. On the
  // PostgreSQL thread.
  void addKeyspace(const Keyspace& ks);

  // Any thread.
  void writeThrough(ThroughWrite write, ReplyFn done);
  // LARDER FLUSH [ks] | PENDING | DEADLETTERS ks LIST|RETRY|DROP ...; args
  // without "LARDER".
  void command(std::vector<std::string> args, ReplyFn done);
  // FLUSHALL/FLUSHDB: pending writes to PostgreSQL first, then every cache key
  // except Larder's own (and, for FLUSHALL, every other db).
  void flushAllThenWipe(bool all_dbs, ReplyFn done);
  // Shutdown: flushes every queue until `deadline`; done(true) when all are empty.
  void drain(std::chrono::steady_clock::time_point deadline, std::function<void(bool)> done);

  // nullptr for keyspaces not in `behind` mode (unless an old queue drains).
  const Flusher* flusher(int keyspace) const { return flushers_.get(keyspace); }
  // Any thread, a cluster: a write of `key` was queued (its slot's queue
  // has entries; DirtySlots).
  void queued(int keyspace, std::string_view key) const;
  // Any thread: why writes to the keyspace are refused now (redis_audit.hpp).
  WriteRefusal refusal(int keyspace) const {
    return audit_ ? audit_->refusal(keyspace) : WriteRefusal::None;
  }
  // Any thread: queues nothing will flush, for /readyz; empty: none.
  std::string strandedQueues() const { return audit_ ? audit_->strandedSummary() : std::string(); }
  const ThroughStats& throughStats(int keyspace) const { return through_.stats(keyspace); }

 private:
  // Flushes the given keyspaces (all behind ones when empty).
  void flushKeyspaces(std::vector<int> keyspaces, std::chrono::steady_clock::time_point deadline,
                      std::function<void(bool)> done);
  boost::asio::awaitable<void> pending(ReplyFn done);
  boost::asio::awaitable<void> deadLetters(std::vector<std::string> args, ReplyFn done);

  // One queue family: one Redis's, or one slot's on a cluster (slot >= 0).
  struct QueueNames {
    std::string queue, dead, dead_keys;
    int slot = -1;
  };
  // DEADLETTERS RETRY on one queue family: the dead letter `id`, or every one
  // present when it began (`all`). `error`: a reply frame, when Redis failed.
  struct Retried {
    long long requeued = 0, skipped = 0;
    std::string error;
  };
  boost::asio::awaitable<Retried> retryDead(redis::Route& route, QueueNames names, std::string id,
                                            bool all);
  // A cluster (write_service_slots.cpp): the same commands over every slot's
  // queue family, each slot's on its owner.
  boost::asio::awaitable<void> pendingSlots(ReplyFn done);
  boost::asio::awaitable<void> deadLettersSlots(std::vector<std::string> args, ReplyFn done);
  // The non-empty dead-letter streams of `ks` over every slot; `error`: a
  // reply frame, when a node failed.
  struct DeadHeads {
    std::vector<SlotHead> heads;
    std::string error;
  };
  boost::asio::awaitable<DeadHeads> deadLetterHeads(const Keyspace& ks);
  QueueNames slotNames(const Keyspace& ks, int slot) const;
  boost::asio::awaitable<void> wipe(bool all_dbs, ReplyFn done);
  // Unlinks every key of `node` but Larder's own, a SCAN step per script
  // call; Redis' error, or "" when done.
  boost::asio::awaitable<std::string> wipeNode(redis::Route& node);
  // The keyspace's flusher: one Redis's queue, or a cluster's slot queues.
  std::unique_ptr<Flusher> makeFlusher(const Keyspace& ks);
  // A keyspace no longer `behind` whose old queue(s) hold writes: a flusher
  // empties them, then tells the audit (RedisAudit::drained).
  void drainOldQueue(int keyspace);

  boost::asio::io_context& context_;
  pg::Pool& pool_;
  Loader& loader_;
  const KeyspaceRegistry& registry_;
  const config::Config& config_;
  std::shared_ptr<redis::BackendConnection> redis_;
  std::shared_ptr<redis::Route> cache_;
  Slots<Flusher, config::kMaxKeyspaces> flushers_;
  std::function<std::vector<std::pair<int, int>>()> slot_ranges_;  // a cluster only
  std::function<std::vector<PrimaryNode>()> primaries_;            // a cluster only
  Slots<DirtySlots, config::kMaxKeyspaces> dirty_;                 // a cluster's behind keyspaces
  std::unique_ptr<RedisAudit> audit_;  // persistence and stranded queues
  bool started_ = false;
  WriteThrough through_;
};

}  // namespace larder::cache
