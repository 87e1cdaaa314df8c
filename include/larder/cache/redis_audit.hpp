#pragma once
// What Larder checks about Redis whenever its queue connection (re)connects,
// on the PostgreSQL thread (docs/writes.md, "Durability is Redis' durability"):
//
//   persistence   CONFIG GET appendonly appendfsync maxmemory-policy, INFO
//                 replication: each setting that can lose acknowledged behind
//                 writes is logged by name; under
//                 write_behind.require_durable_redis behind writes are refused
//                 (on a cluster: of every primary, every few seconds and at
//                 once when the primaries change; any one at risk refuses)
//   stranded      SCAN __larder:q:* (on a cluster: __larder:q:{*}:* on every
//   queues        primary, the slot queues grouped by keyspace name): queues
//                 with entries whose keyspace is no longer `behind` (removed,
//                 renamed, switched to through/none) are reported by name.
//                 Switched: drained by a flusher of its own while that
//                 keyspace's writes are refused. Removed or renamed: refused
//                 (not applied, not dropped) until an operator acts; /readyz
//                 says so. After every (re)connect (a cluster: at start and
//                 when the primaries change), and every 5 s while a queue is
//                 stranded or draining (redis_audit_queues.cpp).
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "larder/cache/keyspace.hpp"
#include "larder/config/config.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::cache {

// Redis' answers, and what each risky one loses (pure, unit-tested).
struct RedisPersistence {
  std::string appendonly;   // "yes" | "no"; "" unknown
  std::string appendfsync;  // always | everysec | no
  std::string maxmemory_policy;
  std::string role;  // master | slave
};
// One line per setting that can lose acknowledged behind writes; empty: none.
std::vector<std::string> persistenceRisks(const RedisPersistence& p);

// Why behind writes of a keyspace are refused right now; each text defined once.
enum class WriteRefusal : int { None = 0, NotDurable, Draining, Stranded };
std::string refusalText(WriteRefusal why, const std::string& keyspace);

// A cluster's primary: its name for the log and a connection to it.
struct PrimaryNode {
  std::string name;
  std::shared_ptr<redis::Route> route;
};

class RedisAudit {
 public:
  // `drain(keyspace id)`: start a flusher that empties the keyspace's old
  // queue; it calls `drained(id)` once the queue is empty.
  RedisAudit(boost::asio::io_context& context, const KeyspaceRegistry& registry,
             const config::Config& config, std::shared_ptr<redis::BackendConnection> redis,
             std::function<void(int)> drain);
  // A cluster: the primaries of the current map, each asked on its own
  // connection; `drain` as above, for the keyspace's slot queues.
  RedisAudit(boost::asio::io_context& context, const KeyspaceRegistry& registry,
             const config::Config& config, std::function<std::vector<PrimaryNode>()> primaries,
             std::function<void(int)> drain);

  void start();
  void stop();
  void drained(int keyspace);

  // Any thread.
  WriteRefusal refusal(int keyspace) const;
  // Whether a switched keyspace's old queue has been looked for since start
  // (one Redis: each keyspace's own queue, one XLEN; a cluster: its slot
  // queues, one script per primary; both before the SCAN for removed ones):
  // until then its Draining is not known yet.
  bool queuesChecked() const { return queues_checked_.load(std::memory_order_acquire); }
  // Not ready: queues no keyspace of this config will ever flush; empty: none.
  std::string strandedSummary() const;

 private:
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<bool> audit();
  boost::asio::awaitable<bool> checkPersistence();
  boost::asio::awaitable<bool> checkClusterPersistence();
  // CONFIG GET and INFO replication into `p`; false when the connection
  // went away.
  boost::asio::awaitable<bool> readPersistence(redis::Route& route, RedisPersistence& p);
  // Logs `name`'s risks once per distinct finding.
  void report(const std::string& name, const RedisPersistence& p,
              const std::vector<std::string>& risks);
  bool anyBehind() const;

  // --- stranded queues (redis_audit_queues.cpp) ---
  // One keyspace name's write queues with entries: one Redis's queue, or a
  // cluster's slot queues of that name over every primary.
  struct FoundQueues {
    std::string keyspace;    // the name in the queues' keys
    std::size_t queues = 0;  // streams with entries
    long long writes = 0;    // their entries, summed
    std::string first_key;   // the `k` of a first entry: whose keys they hold
  };
  // One audit of the queues: what it found stranded, for the summary and
  // to accept writes again where nothing is stranded any more.
  struct QueueAudit {
    std::vector<bool> stranded_now = std::vector<bool>(config::kMaxKeyspaces, false);
    std::string summary;
    std::string seed;  // a cluster: a primary's address, for the log's command
  };
  boost::asio::awaitable<bool> checkQueues();
  // One Redis: each configured keyspace that is not `behind`, its own queue
  // (XLEN), judged at once; false when Redis failed.
  boost::asio::awaitable<bool> checkSwitchedQueues();
  // A cluster: the same over every slot queue of such a keyspace, one script
  // per primary (each counts the ones it holds).
  boost::asio::awaitable<bool> checkSwitchedSlotQueues(const std::vector<PrimaryNode>& nodes);
  // A cluster: at start, when the primaries change, and every 5 s while a
  // queue is stranded or draining.
  boost::asio::awaitable<bool> checkClusterQueues();
  bool queueRecheckDue() const;
  // SCANs one Redis (or one primary) for queues whose keyspace is not
  // `behind` and adds those with entries to `found`; false when Redis failed.
  boost::asio::awaitable<bool> scanQueues(redis::Route& route,
                                          std::map<std::string, FoundQueues>& found);
  // Judges every finding, then accepts writes again where no stranded
  // queue holds keys any more; `seed`: a cluster's primary, for the log.
  void decide(const std::map<std::string, FoundQueues>& found, std::string seed);
  // The decision about one keyspace name's queues, the same for both
  // backends: nothing (`behind`), drain them while refusing the keyspace's
  // writes (switched), or refuse the keys' owner and log the fix (removed).
  void judge(const FoundQueues& found, QueueAudit& audit);

  boost::asio::io_context& context_;
  const KeyspaceRegistry& registry_;
  const config::Config& config_;
  std::shared_ptr<redis::BackendConnection> redis_;
  std::function<void(int)> drain_;
  std::function<std::vector<PrimaryNode>()> primaries_;  // set on a cluster
  std::string audited_primaries_;                        // their names, last audit
  std::chrono::steady_clock::time_point next_cluster_audit_{};
  boost::asio::steady_timer timer_;
  std::unique_ptr<std::atomic<int>[]> refusals_;  // WriteRefusal per keyspace id
  std::atomic<bool> not_durable_{false};
  std::atomic<bool> queues_checked_{false};
  mutable std::mutex stranded_mutex_;  // /readyz reads it from the admin thread
  std::string stranded_;
  std::map<std::string, std::string> logged_risks_;  // by Redis address
  std::uint64_t audited_connect_ = 0;  // the queue connection's connect count last audited
  std::chrono::steady_clock::time_point next_queue_check_{};
  std::string queues_audited_on_;  // a cluster: the primaries' names at the last queue audit
  bool stopping_ = false;
};

}  // namespace larder::cache
