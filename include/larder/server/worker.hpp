#pragma once
// A worker thread: its own io_context, its shared backend connections, the
// sessions accepted onto it, and its counters. Nothing here is touched by
// another thread except through asio::post and the Counter reads.
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "larder/cache/invalidator.hpp"
#include "larder/cache/keyspace.hpp"
#include "larder/cache/loader.hpp"
#include "larder/cache/near_cache.hpp"
#include "larder/cache/read_through_host.hpp"
#include "larder/cache/write_service.hpp"
#include "larder/cluster/cluster_route.hpp"
#include "larder/cluster/near_tracking.hpp"
#include "larder/cluster/router.hpp"
#include "larder/config/config.hpp"
#include "larder/proxy/info.hpp"
#include "larder/proxy/stats.hpp"
#include "larder/redis/backend_connection.hpp"
#include "larder/server/script_watch.hpp"

namespace boost::asio::ssl {
class context;
}

namespace larder::cache {
class NearCacheTracking;
}

namespace larder::server {

class Session;
class ServerContext;
class MonitorFeed;
class ClientDirectory;

// Also the host of the mapped reads and writes that run on its thread.
class Worker final : public cache::ReadThroughHost {
 public:
  Worker(int index, const config::Config& config, ServerContext& server);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();  // runs the io_context on a new thread
  void join();
  // Stops accepting work: sessions finish what they have in flight and close.
  void beginShutdown();
  // Closes everything still open and lets the thread end.
  void stop();

  boost::asio::io_context& context() override { return context_; }
  int index() const { return index_; }
  // The current configuration (a reload may replace it between two calls).
  // Backend connections keep the start-up one.
  const config::Config& config() const override;
  ServerContext& server() { return server_; }
  proxy::WorkerStats& stats() { return stats_; }
  const proxy::WorkerStats& stats() const { return stats_; }
  // nullptr when no keyspace has near_cache enabled (docs/near_cache.md).
  cache::NearCache* nearCache() override { return near_cache_.get(); }
  cache::ReadPathStats& readStats() override { return stats_; }
  cache::Loader* loader() override;
  cache::WriteService* writes() override;

  redis::BackendConnection& sharedConnection(std::uint64_t session_id);
  // With redis.cluster.seeds: the worker's cluster router (and no shared
  // connections); null otherwise.
  cluster::Router* router() { return router_.get(); }
  // With redis.cluster.seeds: mapped reads' way to the slot owners.
  redis::Route& cacheRoute() { return *cache_route_; }
  bool backendReady() const;
  // nullptr when redis.max_pinned_per_worker connections are already in use.
  std::shared_ptr<redis::BackendConnection> acquirePinned();
  // Takes back a dedicated connection whose state is clean (no MULTI, no
  // subscriptions, default db); it may serve the next pinned session.
  void releasePinned(std::shared_ptr<redis::BackendConnection> connection, bool clean);
  // SCRIPT KILL, FUNCTION KILL and the busy probe: a connection no client's
  // script can hold up; made on first use, runs as the client user.
  redis::BackendConnection& outOfBandConnection();
  ScriptWatch& scripts() { return *scripts_; }
  // The sessions still open, on the worker's thread.
  std::vector<std::shared_ptr<Session>> liveSessions() const;

  // Called on the worker's thread.
  // `tls` null: a plain client; else the TLS listener's context.
  void adopt(boost::asio::ip::tcp::socket socket, std::shared_ptr<boost::asio::ssl::context> tls,
             std::uint64_t id);
  void forget(std::uint64_t id);
  // Runs session->flushDeferred() at the end of this loop turn; one posted
  // handler serves every session that asks during the turn.
  void flushLater(std::shared_ptr<Session> session);

 private:
  void sweepIdle();
  std::shared_ptr<redis::BackendConnection> newPinned();

  int index_;
  const config::Config& config_;  // at start-up
  ServerContext& server_;
  boost::asio::io_context context_{1};
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_;
  std::thread thread_;
  proxy::WorkerStats stats_;
  std::shared_ptr<const redis::ClientIdentity> client_identity_;  // null: no keyspaces
  std::vector<std::shared_ptr<redis::BackendConnection>> shared_;
  std::unique_ptr<cluster::Router> router_;             // cluster mode only
  std::unique_ptr<cluster::ClusterRoute> cache_route_;  // cluster mode only, on router_
  std::vector<std::shared_ptr<redis::BackendConnection>> idle_pinned_;
  std::shared_ptr<redis::BackendConnection> out_of_band_;
  std::unique_ptr<ScriptWatch> scripts_;
  std::unordered_map<std::uint64_t, std::weak_ptr<Session>> sessions_;
  std::vector<std::shared_ptr<Session>> flushes_;   // sessions to flush at the end of the turn
  std::vector<std::shared_ptr<Session>> flushing_;  // the list being run (kept for its capacity)
  boost::asio::steady_timer sweep_;
  bool shutting_down_ = false;
  const config::Config* users_checked_ = nullptr;  // sessions rechecked against it (reload)
  std::unique_ptr<cache::NearCache> near_cache_;
  std::shared_ptr<cache::NearCacheTracking> near_tracking_;     // one Redis
  std::unique_ptr<cluster::ClusterNearTracking> cluster_near_;  // a cluster: per primary
};

// The outcome of a config reload (SIGHUP, LARDER RELOAD).
struct ReloadResult {
  bool ok = false;
  std::string source;                    // the file re-read
  std::string error;                     // why it was rejected (the old config stays)
  std::vector<std::string> applied;      // changes in force now
  std::vector<std::string> not_applied;  // changes that need a restart
};

// What a session may ask of the server as a whole.
class ServerContext {
 public:
  virtual ~ServerContext() = default;
  // The configuration now in force; any thread. References stay valid for
  // the life of the process.
  virtual const config::Config& config() const = 0;
  // Larder's TLS context for its connections to Redis; null when redis.tls is off.
  virtual std::shared_ptr<boost::asio::ssl::context> redisTls() const = 0;
  // Larder's INFO fields for "server", "clients", "stats" or "larder".
  virtual proxy::InfoFields infoFields(std::string_view section) const = 0;
  virtual void clientClosed() = 0;
  // MONITOR, CLIENT LIST/KILL/PAUSE and busy scripts, across workers.
  virtual MonitorFeed& monitors() = 0;
  virtual ClientDirectory& clients() = 0;
  virtual BusyScripts& busyScripts() = 0;
  virtual const cache::KeyspaceRegistry& keyspaces() const = 0;
  virtual cache::Loader* loader() = 0;            // nullptr when no keyspace is configured
  virtual cache::WriteService* writes() = 0;      // likewise
  virtual cache::Invalidator* invalidator() = 0;  // likewise
  // The cluster's map found at start-up (redis.cluster.seeds); null: none.
  virtual const cluster::Topology* clusterTopology() const { return nullptr; }
  // Re-reads the config file; `done` runs on another thread.
  virtual void reload(std::function<void(ReloadResult)> done) = 0;
};

inline const config::Config& Worker::config() const { return server_.config(); }

}  // namespace larder::server
