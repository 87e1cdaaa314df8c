#pragma once
// The PostgreSQL side of writes, on the PostgreSQL thread: one Flusher per
// keyspace in `behind` mode, the write-through batches of keyspaces in
// `through` mode, and the operator commands (LARDER FLUSH / PENDING /
// DEADLETTERS, FLUSHALL through Larder).
//
// Write-through: a keyspace's writes are applied in batches, one at a time, in
// arrival order: BEGIN, each write's statements, COMMIT (a write PostgreSQL
// refuses is answered with the error and the rest committed without it).
// After COMMIT the Loader forgets any load in flight for those keys, then the
// cache is updated on the fill connection, whose FIFO order puts the update
// after any fill already sent: a fill can never land on top of it.
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
#include "larder/common/slots.hpp"
#include "larder/config/config.hpp"
#include "larder/pg/pool.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::cache {

// One write of a `through` keyspace: the row change, and the write script's
// op and arguments for the cache update that follows the commit.
struct ThroughWrite {
  const Keyspace* ks = nullptr;
  std::string key;
  std::vector<std::string> key_values;
  Change change;
  std::string op;
  std::vector<std::string> op_args;
};

// A complete RESP reply. Called on the PostgreSQL thread.
using ReplyFn = std::function<void(std::string)>;

struct ThroughStats {
  Counter writes;
  Counter refused;  // PostgreSQL refused the row
  Counter failed;   // PostgreSQL unavailable
  Histogram latency;
};

class WriteService {
 public:
  WriteService(boost::asio::io_context& context, pg::Pool& pool, Loader& loader,
               const KeyspaceRegistry& registry, const config::Config& config,
               std::shared_ptr<redis::BackendConnection> redis,
               std::shared_ptr<redis::BackendConnection> cache);
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
  // Any thread: why writes to the keyspace are refused now (redis_audit.hpp).
  WriteRefusal refusal(int keyspace) const { return audit_->refusal(keyspace); }
  // Any thread: queues nothing will flush, for /readyz; empty: none.
  std::string strandedQueues() const { return audit_->strandedSummary(); }
  const ThroughStats& throughStats(int keyspace) const { return *through_stats_[keyspace]; }

 private:
  struct ThroughItem {
    ThroughWrite write;
    ReplyFn done;
    std::chrono::steady_clock::time_point since;
  };

  void enqueueThrough(ThroughWrite write, ReplyFn done);
  boost::asio::awaitable<void> runThrough(int keyspace);
  // Flushes the given keyspaces (all behind ones when empty).
  void flushKeyspaces(std::vector<int> keyspaces, std::chrono::steady_clock::time_point deadline,
                      std::function<void(bool)> done);
  boost::asio::awaitable<void> pending(ReplyFn done);
  boost::asio::awaitable<void> deadLetters(std::vector<std::string> args, ReplyFn done);
  boost::asio::awaitable<void> wipe(bool all_dbs, ReplyFn done);
  void drainOldQueue(int keyspace);

  boost::asio::io_context& context_;
  pg::Pool& pool_;
  Loader& loader_;
  const KeyspaceRegistry& registry_;
  const config::Config& config_;
  std::shared_ptr<redis::BackendConnection> redis_;
  std::shared_ptr<redis::BackendConnection> cache_;
  Slots<Flusher, config::kMaxKeyspaces> flushers_;
  std::unique_ptr<RedisAudit> audit_;
  bool started_ = false;
  std::vector<std::deque<ThroughItem>> through_;
  std::vector<bool> through_running_;
  std::vector<std::unique_ptr<ThroughStats>> through_stats_;
};

}  // namespace larder::cache
