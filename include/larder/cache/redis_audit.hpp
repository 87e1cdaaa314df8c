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
//   stranded      SCAN __larder:q:*: a queue with entries whose keyspace is no
//   queues        longer `behind` (removed, renamed, switched to through/none)
//                 is reported by name. Switched: drained by a flusher of its
//                 own while that keyspace's writes are refused. Removed or
//                 renamed: refused (not applied, not dropped) until an operator
//                 acts; /readyz says so. Not on a cluster yet.
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
  // A cluster: the primaries of the current map (persistence only).
  RedisAudit(boost::asio::io_context& context, const KeyspaceRegistry& registry,
             const config::Config& config, std::function<std::vector<PrimaryNode>()> primaries);

  void start();
  void stop();
  void drained(int keyspace);

  // Any thread.
  WriteRefusal refusal(int keyspace) const;
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
  boost::asio::awaitable<bool> checkQueues();

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
  mutable std::mutex stranded_mutex_;  // /readyz reads it from the admin thread
  std::string stranded_;
  std::map<std::string, std::string> logged_risks_;  // by Redis address
  std::uint64_t audited_connect_ = 0;
  std::chrono::steady_clock::time_point
      next_queue_check_{};  // the queue connection's connect count last audited
  bool stopping_ = false;
};

}  // namespace larder::cache
