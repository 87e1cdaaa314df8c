#pragma once
// The process: a listener on the main thread that hands accepted sockets to
// worker threads round-robin, the workers, and an orderly shutdown on
// SIGTERM/SIGINT (stop accepting, let sessions finish, then stop).
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "larder/admin/admin_server.hpp"
#include "larder/admin/metrics_writer.hpp"
#include "larder/cache/keyspace.hpp"
#include "larder/cache/loader.hpp"
#include "larder/cache/write_service.hpp"
#include "larder/common/counter.hpp"
#include "larder/config/config.hpp"
#include "larder/pg/pool.hpp"
#include "larder/server/client_directory.hpp"
#include "larder/server/monitor_feed.hpp"
#include "larder/server/script_watch.hpp"
#include "larder/server/worker.hpp"

namespace boost::asio::ssl {
class context;
}

namespace larder::server {

// Reads the tables of `wanted` and builds their keyspaces, numbered from
// first_id. Returns "" or what went wrong, naming keyspace and table.
boost::asio::awaitable<std::string> readKeyspaces(const config::PostgresConfig& postgres,
                                                  const std::vector<config::KeyspaceConfig>& wanted,
                                                  int first_id, std::vector<cache::Keyspace>& out);

class Server : public ServerContext, public admin::AdminSource {
 public:
  explicit Server(const config::Config& config);
  ~Server() override;

  // Binds the listener (throws on failure: start-up), runs until a stop signal
  // and the drain that follows. Returns the process exit code.
  int run();

  const config::Config& config() const override {
    return *current_.load(std::memory_order_acquire);
  }
  std::shared_ptr<boost::asio::ssl::context> redisTls() const override { return redis_tls_; }
  void reload(std::function<void(ReloadResult)> done) override;
  proxy::InfoFields infoFields(std::string_view section) const override;  // server_info.cpp
  void clientClosed() override { clients_.fetch_sub(1, std::memory_order_relaxed); }
  MonitorFeed& monitors() override { return monitors_; }
  ClientDirectory& clients() override { return clients_directory_; }
  BusyScripts& busyScripts() override { return busy_scripts_; }
  const cache::KeyspaceRegistry& keyspaces() const override { return keyspaces_; }
  cache::Loader* loader() override { return loader_.get(); }
  cache::WriteService* writes() override { return writes_.get(); }
  cache::Invalidator* invalidator() override { return invalidator_.get(); }
  const cluster::Topology* clusterTopology() const override {
    return cluster_map_ ? &*cluster_map_ : nullptr;
  }

  // admin::AdminSource (server_metrics.cpp)
  std::string metricsText() const override;
  bool ready(std::string& why) const override;
  std::string effectiveConfig() const override;

 private:
  // Reads every mapped table's shape and checks the config against it; throws
  // (start-up) with a message naming keyspace, table and column.
  void buildKeyspaces();
  // redis.cluster.seeds: the map at start-up (logged; workers start from it).
  void discoverCluster();
  void startPostgresSide();
  void startOneRedisCacheSide();  // startPostgresSide: redis.address
  void startClusterCacheSide();   // startPostgresSide: redis.cluster.seeds
  void keyspaceFields(proxy::InfoFields& out) const;
  void clusterFields(proxy::InfoFields& out) const;  // server_info.cpp
  std::uint64_t totalCommands() const;
  boost::asio::awaitable<void> sampleOps();
  void writeMetrics(admin::MetricsWriter& m, const cache::Keyspace& ks,
                    const admin::Labels& labels) const;

  // `tls`: the TLS listener, whose sessions get the current tls_context_.
  boost::asio::awaitable<void> acceptLoop(boost::asio::ip::tcp::acceptor& acceptor, bool tls);
  void listen(boost::asio::ip::tcp::acceptor& acceptor, const config::Endpoint& where);
  std::shared_ptr<boost::asio::ssl::context> tlsContext() const;
  // Re-reads the TLS listener's files on reload; "" or why they cannot be used.
  std::string reloadTlsContext(const config::TlsListenerConfig& tls);
  void reject(boost::asio::ip::tcp::socket& socket);
  boost::asio::awaitable<void> watchSignals();
  boost::asio::awaitable<void> watchReloadSignal();
  boost::asio::awaitable<void> runReload(std::function<void(ReloadResult)> done);
  boost::asio::awaitable<void> drainAndStop();
  void stopNow();

  const config::Config& config_;  // at start-up; config() is the one in force
  std::shared_ptr<boost::asio::ssl::context> redis_tls_;  // redis.tls; set before anything connects
  // Every config a reload put in force, kept for the life of the process:
  // sessions hold references to the current one across their awaits.
  std::mutex generations_mutex_;
  std::vector<std::unique_ptr<const config::Config>> generations_;
  std::atomic<const config::Config*> current_;
  bool reloading_ = false;  // on the reload's executor only
  Counter reloads_;
  cache::KeyspaceRegistry keyspaces_;
  std::optional<cluster::Topology> cluster_map_;
  // The PostgreSQL side runs on its own thread (Loader, pool, fill connection).
  boost::asio::io_context pg_context_{1};
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
      pg_guard_;
  std::thread pg_thread_;
  std::unique_ptr<pg::Pool> pg_pool_;
  std::unique_ptr<cache::Loader> loader_;
  redis::BackendStats filler_stats_;
  std::shared_ptr<redis::BackendConnection> filler_;
  redis::BackendStats queue_stats_;
  std::shared_ptr<redis::BackendConnection> queue_conn_;  // flushers, operator commands
  std::unique_ptr<cluster::OwnRouter> cache_router_;      // instead of both, on a cluster
  std::unique_ptr<cache::WriteService> writes_;
  std::unique_ptr<cache::Invalidator> invalidator_;
  boost::asio::io_context context_{1};
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::ip::tcp::acceptor tls_acceptor_;  // open only with tls.listen
  mutable std::mutex tls_mutex_;                 // reload swaps the context
  std::shared_ptr<boost::asio::ssl::context> tls_context_;
  std::unique_ptr<admin::AdminServer> admin_;
  // Before the workers: their sessions use them until the workers are gone.
  MonitorFeed monitors_;
  ClientDirectory clients_directory_;
  BusyScripts busy_scripts_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<std::size_t> clients_{0};
  std::uint64_t next_id_ = 1;
  Counter rejected_;
  std::atomic<std::uint64_t> ops_per_sec_{0};
  Counter accept_errors_;
  std::chrono::steady_clock::time_point started_;
  boost::asio::signal_set* signals_ = nullptr;  // lives in run()
  boost::asio::signal_set* hangup_ = nullptr;   // SIGHUP; lives in run()
  bool stopped_ = false;                        // stopNow() has run
};

}  // namespace larder::server
