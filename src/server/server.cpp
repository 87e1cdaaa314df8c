#include "larder/server/server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <thread>

#include "larder/cache/key_names.hpp"
#include "larder/cache/write_scripts.hpp"
#include "larder/cluster/cluster_route.hpp"
#include "larder/cluster/discovery.hpp"
#include "larder/common/logging.hpp"
#include "larder/redis/tls_client.hpp"
#include "larder/server/tls_context.hpp"

namespace larder::server {

namespace asio = boost::asio;
using asio::ip::tcp;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr auto kShutdownGrace = std::chrono::seconds(10);
constexpr auto kStopGrace = std::chrono::seconds(3);

tcp::endpoint resolveListen(const config::Endpoint& ep) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(ep.host, ec);
  if (ec) {
    asio::io_context tmp;
    tcp::resolver resolver(tmp);
    auto results = resolver.resolve(ep.host, std::to_string(ep.port));
    return results.begin()->endpoint();
  }
  return {address, ep.port};
}

}  // namespace

Server::Server(const config::Config& config)
    : config_(config),
      current_(&config),
      acceptor_(context_),
      tls_acceptor_(context_),
      monitors_(config.limits.client_output_limit),
      started_(std::chrono::steady_clock::now()) {
  redis_tls_ = redis::makeClientTlsContext(config_.redis.tls);  // throws naming the file
  // Before any thread that names an internal key runs.
  cache::setNameLayout(config_.redis.clusterMode() ? cache::NameLayout::Cluster
                                                   : cache::NameLayout::OneRedis);
  buildKeyspaces();
  discoverCluster();
  int threads =
      config.threads > 0 ? config.threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::max(1, threads);
  for (int i = 0; i < threads; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, config_, *this));
  }
  std::vector<Worker*> workers;
  for (auto& w : workers_) workers.push_back(w.get());
  clients_directory_.setWorkers(std::move(workers));
}

Server::~Server() {
  for (auto& w : workers_) w->join();
  if (pg_thread_.joinable()) {
    asio::post(pg_context_, [this] {
      if (invalidator_) invalidator_->stop();
      if (writes_) writes_->stop();
      if (queue_conn_) queue_conn_->stop();
      if (filler_) filler_->stop();
      if (cache_router_) cache_router_->stop();
      if (pg_pool_) pg_pool_->close();
      pg_guard_.reset();
    });
    pg_thread_.join();
  }
}

void Server::buildKeyspaces() {
  if (config_.keyspaces.empty()) return;
  // Start-up only: a short-lived io_context reads the catalog.
  asio::io_context io;
  std::vector<cache::Keyspace> built;
  std::string failure;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        failure = co_await readKeyspaces(config_.postgres, config_.keyspaces, 0, built);
      },
      asio::detached);
  io.run();
  if (!failure.empty()) throw std::runtime_error(failure);
  for (auto& ks : built) keyspaces_.add(std::move(ks));
  for (std::size_t i = 0; i < keyspaces_.size(); ++i) {
    const auto& ks = keyspaces_.at(i);
    spdlog::info("keyspace {}: {} -> {}.{} ({} shape, {} value column(s))", ks.name(),
                 ks.config.key, ks.schema, ks.table, ks.isHash() ? "hash" : "string",
                 ks.value_columns.size());
  }
}

void Server::discoverCluster() {
  if (!config_.redis.clusterMode()) return;
  cluster::Discovery found = cluster::discover(config_.redis, redis_tls_);
  if (found.topology) {
    spdlog::info("redis cluster: {}", found.topology->describe());
    cluster_map_ = std::move(found.topology);
    return;
  }
  // Not fatal, as a Redis that is down at start is not: the workers keep
  // asking, and requests wait (retry_timeout) or fail until a map is agreed.
  std::string why;
  for (const auto& p : found.problems) why += (why.empty() ? "" : "; ") + p;
  spdlog::warn("redis cluster: no map agreed at start-up ({}); retrying in the background", why);
}

void Server::startPostgresSide() {
  if (keyspaces_.empty()) return;
  pg_guard_ = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
      pg_context_.get_executor());
  pg_pool_ = std::make_unique<pg::Pool>(pg_context_.get_executor(), config_.postgres);
  loader_ = std::make_unique<cache::Loader>(pg_context_, *pg_pool_, config_.read_through);
  loader_->setFillWindow(cache::loadWindow(config_));
  if (config_.redis.clusterMode()) {
    startClusterCacheSide();
  } else {
    startOneRedisCacheSide();
  }
  pg_thread_ = std::thread([this] {
    try {
      pg_context_.run();
    } catch (const std::exception& e) {
      spdlog::critical("PostgreSQL thread stopped by an exception: {}", e.what());
    }
  });
}

void Server::startOneRedisCacheSide() {
  filler_ = std::make_shared<redis::BackendConnection>(pg_context_.get_executor(), config_.redis,
                                                       redis::ConnectionKind::Shared, filler_stats_,
                                                       redis_tls_);
  loader_->setFiller(filler_);
  queue_conn_ = std::make_shared<redis::BackendConnection>(
      pg_context_.get_executor(), config_.redis, redis::ConnectionKind::Shared, queue_stats_,
      redis_tls_);
  filler_->setPreload(cache::preloadRequests({&cache::fillScript(), &cache::writeScript()}));
  queue_conn_->setPreload(cache::preloadRequests(
      {&cache::ackScript(), &cache::deadLetterScript(), &cache::readBatchScript(),
       &cache::pendingScript(), &cache::wipeCacheScript(), &cache::requeueScript()}));
  writes_ = std::make_unique<cache::WriteService>(pg_context_, *pg_pool_, *loader_, keyspaces_,
                                                  config_, queue_conn_, filler_);
  // Invalidations go on the fill connection: its FIFO order puts an UNLINK
  // after any fill sent before it.
  invalidator_ =
      std::make_unique<cache::Invalidator>(pg_context_, *loader_, keyspaces_, config_, filler_);
  asio::post(pg_context_, [this] {
    filler_->start();
    queue_conn_->start();
    writes_->start();
    invalidator_->start();
  });
}

// Keyspaces on a cluster: fills, leases, write-through's cache updates,
// invalidations and the flushers' per-slot queues go by a router of this
// thread's own to each key's slot owner; no queue connection; the persistence
// audit asks every primary.
void Server::startClusterCacheSide() {
  cache_router_ = std::make_unique<cluster::OwnRouter>(pg_context_.get_executor(), config_.redis,
                                                       redis_tls_, clusterTopology());
  cache_router_->router().setPreload(cache::preloadRequests(
      {&cache::fillScript(), &cache::writeScript(), &cache::readBatchScript(), &cache::ackScript(),
       &cache::deadLetterScript(), &cache::sweepScript()}));
  loader_->setFiller(cache_router_->route());
  loader_->setRedisWait(config_.redis.cluster.retry_timeout);
  // Write-behind: a queue per slot, swept range by range (flusher_slots.cpp).
  auto slot_ranges = [&router = cache_router_->router()] {
    std::vector<std::pair<int, int>> out;
    int first = 0;
    for (int slot = 1; slot <= cluster::kSlots; ++slot) {
      const int owner = router.ownerOf(first);
      if (slot < cluster::kSlots && router.ownerOf(slot) == owner) continue;
      if (owner >= 0) out.emplace_back(first, slot - 1);
      first = slot;
    }
    return out;
  };
  // The persistence audit asks each primary of the map on its own connection.
  auto primaries = [&router = cache_router_->router()] {
    std::vector<cache::PrimaryNode> out;
    for (const config::Endpoint& address : router.primaryAddresses()) {
      out.push_back(cache::PrimaryNode{address.toString(), router.outOfBandTo(address)});
    }
    return out;
  };
  writes_ = std::make_unique<cache::WriteService>(pg_context_, *pg_pool_, *loader_, keyspaces_,
                                                  config_, nullptr, cache_router_->route(),
                                                  std::move(slot_ranges), std::move(primaries));
  // One route for both: per slot, its order puts an UNLINK after any fill of
  // that key sent before it (one connection per node).
  invalidator_ = std::make_unique<cache::Invalidator>(pg_context_, *loader_, keyspaces_, config_,
                                                      cache_router_->route());
  asio::post(pg_context_, [this] {
    cache_router_->start();
    writes_->start();
    invalidator_->start();
  });
}

void Server::listen(tcp::acceptor& acceptor, const config::Endpoint& where) {
  const tcp::endpoint endpoint = resolveListen(where);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  acceptor.bind(endpoint);
  acceptor.listen(config_.backlog);
}

std::shared_ptr<asio::ssl::context> Server::tlsContext() const {
  std::lock_guard lock(tls_mutex_);
  return tls_context_;
}

std::string Server::reloadTlsContext(const config::TlsListenerConfig& tls) {
  if (!config_.tls.listen) return "";  // no TLS listener was started
  try {
    auto fresh = makeServerTlsContext(tls);
    std::lock_guard lock(tls_mutex_);
    tls_context_ = std::move(fresh);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

int Server::run() {
  listen(acceptor_, config_.listen);
  if (config_.tls.listen) {
    tls_context_ = makeServerTlsContext(config_.tls);  // throws naming the file: start-up
    listen(tls_acceptor_, *config_.tls.listen);
  }

  if (config_.admin) {
    admin_ =
        std::make_unique<admin::AdminServer>(context_, *config_.admin, *this, config_.admin_token);
    admin_->start();
    spdlog::info("admin HTTP on {} (/metrics /healthz /readyz /config)", config_.admin->toString());
  }
  startPostgresSide();
  for (auto& w : workers_) w->start();
  spdlog::info("larder {} listening on {} with {} worker thread(s); redis backend {} db {}",
               LARDER_VERSION, config_.listen.toString(), workers_.size(),
               config_.redis.clusterMode()
                   ? "cluster (seed " + config_.redis.cluster.seeds.front().toString() + ")"
                   : config_.redis.address.toString(),
               config_.redis.db);
  if (config_.tls.listen) spdlog::info("TLS listener on {}", config_.tls.listen->toString());

  // First signal: drain and stop. A second one: stop now.
  asio::signal_set signals(context_, SIGINT, SIGTERM);
  signals_ = &signals;
  asio::co_spawn(context_, watchSignals(), logEscaped("signal watcher"));
  asio::signal_set hangup(context_, SIGHUP);
  hangup_ = &hangup;
  asio::co_spawn(context_, watchReloadSignal(), logEscaped("SIGHUP watcher"));
  asio::co_spawn(context_, acceptLoop(acceptor_, false), logEscaped("listener"));
  if (tls_acceptor_.is_open()) {
    asio::co_spawn(context_, acceptLoop(tls_acceptor_, true), logEscaped("TLS listener"));
  }
  asio::co_spawn(context_, sampleOps(), logEscaped("ops sampler"));
  context_.run();
  for (auto& w : workers_) w->join();
  spdlog::info("larder stopped");
  return 0;
}

asio::awaitable<void> Server::watchSignals() {
  auto [ec, signo] = co_await signals_->async_wait(kUseTuple);
  if (ec) co_return;
  spdlog::info("signal {} received: no new connections; finishing in-flight requests", signo);
  // Deferred, so that the wait below is registered before the drain can
  // finish and cancel it (co_spawn may otherwise run the drain inline).
  asio::post(context_,
             [this] { asio::co_spawn(context_, drainAndStop(), logEscaped("shutdown")); });
  auto [ec2, again] = co_await signals_->async_wait(kUseTuple);
  if (ec2 || stopped_) co_return;  // the drain finished first
  spdlog::warn("signal {} received again: stopping now", again);
  stopNow();
}

asio::awaitable<void> Server::watchReloadSignal() {
  for (;;) {
    auto [ec, signo] = co_await hangup_->async_wait(kUseTuple);
    if (ec) co_return;
    spdlog::info("signal {} received: reloading {}", signo, config().source);
    reload([](const ReloadResult&) {});  // the outcome is logged
  }
}

asio::awaitable<void> Server::drainAndStop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  tls_acceptor_.close(ignored);
  for (auto& w : workers_) w->beginShutdown();
  asio::steady_timer timer(context_);
  const auto deadline = std::chrono::steady_clock::now() + kShutdownGrace;
  while (clients_.load(std::memory_order_relaxed) > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(kUseTuple);
  }
  if (const auto left = clients_.load(std::memory_order_relaxed); left > 0) {
    spdlog::warn("shutdown grace period over; closing {} client(s)", left);
  }
  if (writes_ && config_.write_behind.drain_timeout.count() > 0) {
    // Every acknowledged write is safe in Redis' stream already; draining just
    // means PostgreSQL is current when Larder is gone.
    auto outcome = std::make_shared<std::atomic<int>>(0);  // 0 running, 1 drained, 2 not
    writes_->drain(std::chrono::steady_clock::now() + config_.write_behind.drain_timeout,
                   [outcome](bool ok) { outcome->store(ok ? 1 : 2); });
    while (outcome->load() == 0) {
      timer.expires_after(std::chrono::milliseconds(10));
      co_await timer.async_wait(kUseTuple);
    }
    if (outcome->load() == 1) {
      spdlog::info("write queues drained to PostgreSQL");
    } else {
      spdlog::warn("write queues not drained within {} ms; the rest stays queued in Redis",
                   config_.write_behind.drain_timeout.count());
    }
  }
  for (auto& w : workers_) w->stop();
  // A worker's loop ends once its last operation completes; one still busy
  // after kStopGrace is stopped outright rather than left to hang the exit.
  const auto stop_deadline = std::chrono::steady_clock::now() + kStopGrace;
  auto all_stopped = [this] {
    for (auto& w : workers_) {
      if (!w->context().stopped()) return false;
    }
    return true;
  };
  while (!all_stopped() && std::chrono::steady_clock::now() < stop_deadline) {
    timer.expires_after(std::chrono::milliseconds(10));
    co_await timer.async_wait(kUseTuple);
  }
  if (!all_stopped()) spdlog::warn("a worker did not wind down in time; stopping it");
  stopNow();
}

void Server::stopNow() {
  stopped_ = true;
  if (admin_) admin_->stop();
  for (auto& w : workers_) w->context().stop();
  signals_->cancel();
  hangup_->cancel();
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  tls_acceptor_.close(ignored);
}

asio::awaitable<void> Server::acceptLoop(tcp::acceptor& acceptor, bool tls) {
  std::size_t next_worker = 0;
  while (acceptor.is_open()) {
    Worker& worker = *workers_[next_worker];
    auto [ec, socket] = co_await acceptor.async_accept(
        asio::any_io_executor(worker.context().get_executor()), kUseTuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      accept_errors_.add();
      // Out of descriptors or memory: pause instead of spinning on accept.
      if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
          ec == asio::error::no_memory || ec.value() == ENFILE) {
        spdlog::error("accept failed: {}; pausing 100 ms", ec.message());
        asio::steady_timer pause(context_, std::chrono::milliseconds(100));
        co_await pause.async_wait(kUseTuple);
      }
      continue;
    }
    if (clients_.load(std::memory_order_relaxed) >= config().limits.maxclients) {
      // A TLS client could not read the plain error; it is just closed.
      if (tls) {
        rejected_.add();
        socket.close(ec);
      } else {
        reject(socket);
      }
      continue;
    }
    clients_.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t id = next_id_++;
    std::shared_ptr<asio::ssl::context> context = tls ? tlsContext() : nullptr;
    asio::post(worker.context(), [&worker, s = std::move(socket), c = std::move(context),
                                  id]() mutable { worker.adopt(std::move(s), std::move(c), id); });
    next_worker = (next_worker + 1) % workers_.size();
  }
}

void Server::reject(tcp::socket& socket) {
  rejected_.add();
  static const std::string error = "-ERR max number of clients reached\r\n";
  boost::system::error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(asio::buffer(error), ec);
  socket.close(ec);
}

}  // namespace larder::server
