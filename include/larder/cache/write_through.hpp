#pragma once
// Write-through on the PostgreSQL thread: many clients' writes share one
// commit (group commit), then the cache takes them all in one script call.
//
//   writeThrough() --post--> queue per keyspace (arrival order)
//   batch: the longest prefix of distinct keys (a key written twice waits
//          for the next batch, so its writes commit in order), <= max_batch
//   BEGIN; one DELETE .. RETURNING (which rows existed: DEL's reply) and one
//          INSERT .. ON CONFLICT per set of columns, for every row; COMMIT
//     a row refused (22xxx/23xxx): bisect with savepoints in the same
//     transaction; that row is answered with PostgreSQL's error, the rest commit
//   after COMMIT: the Loader forgets loads in flight for those keys; one
//   write-script call ('c' mode) updates the cache on the fill connection,
//   whose FIFO order puts it after any fill already sent
//
// Admission: a keyspace switched from `behind` may still have queued writes
// in Redis that its drain will apply; a write committed before the audit
// has looked (RedisAudit::queuesChecked) could be overwritten by an older
// one. So until it has, through writes wait (up to kFirstAuditWait, 5 s),
// then are refused; afterwards a keyspace the audit
// refuses (draining, stranded) is refused here too.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "larder/cache/change.hpp"
#include "larder/cache/keyspace.hpp"
#include "larder/cache/loader.hpp"
#include "larder/common/counter.hpp"
#include "larder/common/histogram.hpp"
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
// Whether a keyspace's writes may commit now: nullopt while not known yet
// (Redis' queues not looked for), "" when they may, else the error reply text.
using AdmissionFn = std::function<std::optional<std::string>(int keyspace)>;

struct ThroughStats {
  Counter writes;
  Counter refused;  // PostgreSQL refused the row
  Counter failed;   // PostgreSQL unavailable
  Counter commits;  // transactions committed (writes / commits: the group size)
  Histogram latency;
};

class WriteThrough {
 public:
  WriteThrough(boost::asio::io_context& context, pg::Pool& pool, Loader& loader,
               const KeyspaceRegistry& registry, const config::Config& config,
               std::shared_ptr<redis::Route> cache);

  // Before start, on the PostgreSQL thread; unset: every write is admitted.
  void setAdmission(AdmissionFn admission) { admission_ = std::move(admission); }

  // Any thread.
  void write(ThroughWrite write, ReplyFn done);
  const ThroughStats& stats(int keyspace) const { return *stats_[keyspace]; }

 private:
  struct Item {
    ThroughWrite write;
    ReplyFn done;
    std::chrono::steady_clock::time_point since;
  };
  // Per row of a batch: refused (an error reply), or whether a DELETE found it.
  struct Outcome {
    std::string refused;
    bool existed = false;
  };

  boost::asio::awaitable<void> run(int keyspace);
  // "" when the keyspace's writes may commit (waiting, if need be, for the
  // first audit), else the error reply text they get.
  boost::asio::awaitable<std::string> admission(const Keyspace& ks);
  boost::asio::awaitable<pg::PgError> commit(pg::Connection& c, const Keyspace& ks,
                                             const std::vector<PendingRow>& rows,
                                             std::vector<Outcome>& out);
  boost::asio::awaitable<pg::PgError> statements(pg::Connection& c, const Keyspace& ks,
                                                 const std::vector<PendingRow>& rows,
                                                 const std::vector<std::size_t>& which,
                                                 std::vector<Outcome>& out);
  boost::asio::awaitable<pg::PgError> bisect(pg::Connection& c, const Keyspace& ks,
                                             const std::vector<PendingRow>& rows,
                                             std::vector<std::size_t> which,
                                             std::vector<Outcome>& out);
  boost::asio::awaitable<void> updateCache(const Keyspace& ks, std::vector<Item>& batch,
                                           std::vector<Outcome>& out,
                                           std::vector<std::string>& replies);

  boost::asio::io_context& context_;
  pg::Pool& pool_;
  Loader& loader_;
  const KeyspaceRegistry& registry_;
  const config::Config& config_;
  std::shared_ptr<redis::Route> cache_;
  AdmissionFn admission_;
  std::vector<std::deque<Item>> queues_;
  std::vector<bool> running_;
  std::vector<std::unique_ptr<ThroughStats>> stats_;
};

}  // namespace larder::cache
