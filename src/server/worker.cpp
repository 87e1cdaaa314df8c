#include "larder/server/worker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>

#include "larder/cache/near_cache_tracking.hpp"
#include "larder/cache/write_scripts.hpp"
#include "larder/cluster/near_tracking.hpp"
#include "larder/common/logging.hpp"
#include "larder/redis/call.hpp"
#include "larder/server/session.hpp"

namespace larder::server {

namespace asio = boost::asio;

namespace {

constexpr std::size_t kMaxIdlePinned = 8;
// Once a client has needed a dedicated connection, this many wait ready in
// the pool: a blocking call on a connection still being made would reach
// Redis after calls other clients sent later, and Redis serves blocked
// clients in the order their calls arrived.
constexpr std::size_t kSparePinned = 2;

}  // namespace

Worker::Worker(int index, const config::Config& config, ServerContext& server)
    : index_(index), config_(config), server_(server), sweep_(context_) {
  // One per keyspace a reload may add: the counters are read from other threads.
  for (std::size_t i = 0; i < config::kMaxKeyspaces; ++i) {
    stats_.keyspaces.push_back(std::make_unique<proxy::KeyspaceCounters>());
  }
  // With keyspaces, client traffic runs as the restricted client user.
  if (!server.keyspaces().empty() && !config.redis.client_acl_user.empty()) {
    client_identity_ = std::make_shared<const redis::ClientIdentity>(
        redis::makeClientIdentity(config.redis, cache::kReservedPrefix));
  }
  if (config.redis.clusterMode()) {
    // One router instead of shared connections (docs/cluster.md).
    router_ = std::make_unique<cluster::Router>(context_.get_executor(), config_.redis, stats_,
                                                server.redisTls(), server.clusterTopology(), index);
    router_->setClientIdentity(client_identity_);
    cache_route_ = std::make_unique<cluster::ClusterRoute>(*router_);
    if (!server.keyspaces().empty()) {
      router_->setPreload(cache::preloadRequests({&cache::writeScript()}));
    }
  }
  const int n = router_ ? 0 : std::max(1, config.redis.connections_per_worker);
  for (int i = 0; i < n; ++i) {
    shared_.push_back(std::make_shared<redis::BackendConnection>(
        context_.get_executor(), config_.redis, redis::ConnectionKind::Shared, stats_.backend,
        server.redisTls()));
    shared_.back()->setClientIdentity(client_identity_);
    if (!server.keyspaces().empty()) {
      shared_.back()->setPreload(cache::preloadRequests({&cache::writeScript()}));
    }
  }
  // Near cache: only for keyspaces known at start (a reload cannot add prefixes).
  std::vector<cache::NearCache::Keyspace> near;
  bool any_near = false;
  for (std::size_t i = 0; i < server.keyspaces().size(); ++i) {
    const cache::Keyspace& ks = server.keyspaces().at(i);
    near.push_back({ks.config.near_cache, ks.key.prefix()});
    any_near = any_near || ks.config.near_cache.enabled;
  }
  scripts_ = std::make_unique<ScriptWatch>(
      context_.get_executor(), server.busyScripts(), [this](std::function<void(std::string)> done) {
        asio::co_spawn(
            context_,
            [this, done = std::move(done)]() -> asio::awaitable<void> {
              static const std::string ping = "*1\r\n$4\r\nPING\r\n";
              done(co_await redis::call(outOfBandConnection(), ping));
            },
            logEscaped("busy script probe"));
      });
  if (any_near) {
    near_cache_ = std::make_unique<cache::NearCache>(std::move(near), stats_);
    if (router_) {  // one tracking per primary
      cluster_near_ = std::make_unique<cluster::ClusterNearTracking>(
          context_.get_executor(), config_.redis, server.redisTls(), stats_.backend, *near_cache_,
          index_, *router_);
    } else {
      near_tracking_ = std::make_shared<cache::NearCacheTracking>(
          context_.get_executor(), config_.redis, server.redisTls(), stats_.backend, *near_cache_,
          index_);
    }
  }
}

Worker::~Worker() { join(); }

void Worker::start() {
  guard_ = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
      context_.get_executor());
  for (auto& c : shared_) c->start();
  if (router_) {
    router_->start();  // a cluster's dedicated connections follow their key's node
  } else {
    // Dedicated connections wait ready from the start: the first blocking calls
    // of two clients must not reach Redis in the order their connects finish.
    while (idle_pinned_.size() < kSparePinned) idle_pinned_.push_back(newPinned());
  }
  if (near_tracking_) near_tracking_->start();
  if (cluster_near_) cluster_near_->start();
  sweepIdle();
  thread_ = std::thread([this] {
    try {
      context_.run();
    } catch (const std::exception& e) {
      spdlog::critical("worker {} stopped by an exception: {}", index_, e.what());
    }
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::beginShutdown() {
  asio::post(context_, [this] {
    shutting_down_ = true;
    for (auto& s : liveSessions()) s->shutdown();
  });
}

void Worker::stop() {
  asio::post(context_, [this] {
    for (auto& s : liveSessions()) s->close();
    for (auto& c : shared_) c->stop();
    if (router_) router_->stop();
    if (near_tracking_) near_tracking_->stop();
    if (cluster_near_) cluster_near_->stop();
    for (auto& c : idle_pinned_) c->stop();
    idle_pinned_.clear();
    scripts_->stop();
    if (out_of_band_) out_of_band_->stop();
    sweep_.cancel();
    guard_.reset();
  });
}

redis::BackendConnection& Worker::sharedConnection(std::uint64_t session_id) {
  return *shared_[session_id % shared_.size()];
}

bool Worker::backendReady() const {
  if (router_) return router_->ready();
  for (const auto& c : shared_) {
    if (!c->ready()) return false;
  }
  return true;
}

std::shared_ptr<redis::BackendConnection> Worker::acquirePinned() {
  if (stats_.pinned_current.get() >=
      static_cast<std::uint64_t>(config_.redis.max_pinned_per_worker)) {
    return nullptr;
  }
  stats_.pinned_current.add();
  stats_.pinned_total.add();
  std::erase_if(idle_pinned_, [](const auto& c) {
    if (!c->closed()) return false;
    c->stop();
    return true;
  });
  // A ready connection first; else the one that began connecting first.
  std::shared_ptr<redis::BackendConnection> c;
  auto ready = std::find_if(idle_pinned_.rbegin(), idle_pinned_.rend(),
                            [](const auto& conn) { return conn->ready(); });
  if (ready != idle_pinned_.rend()) {
    c = std::move(*ready);
    idle_pinned_.erase(std::next(ready).base());
  } else if (!idle_pinned_.empty()) {
    c = std::move(idle_pinned_.front());
    idle_pinned_.erase(idle_pinned_.begin());
  } else {
    c = newPinned();
  }
  while (!shutting_down_ && idle_pinned_.size() < kSparePinned) {
    idle_pinned_.push_back(newPinned());
  }
  return c;
}

std::shared_ptr<redis::BackendConnection> Worker::newPinned() {
  auto c = std::make_shared<redis::BackendConnection>(context_.get_executor(), config_.redis,
                                                      redis::ConnectionKind::Pinned, stats_.backend,
                                                      server_.redisTls());
  c->setClientIdentity(client_identity_);
  c->start();
  return c;
}

redis::BackendConnection& Worker::outOfBandConnection() {
  if (!out_of_band_) {
    // Shared kind: it reconnects by itself. As the client user, so that a
    // client may kill only what it could kill directly.
    out_of_band_ = std::make_shared<redis::BackendConnection>(
        context_.get_executor(), config_.redis, redis::ConnectionKind::Shared, stats_.backend,
        server_.redisTls());
    out_of_band_->setClientIdentity(client_identity_);
    out_of_band_->start();
  }
  return *out_of_band_;
}

std::vector<std::shared_ptr<Session>> Worker::liveSessions() const {
  std::vector<std::shared_ptr<Session>> live;
  live.reserve(sessions_.size());
  for (const auto& [id, weak] : sessions_) {
    if (auto s = weak.lock()) live.push_back(std::move(s));
  }
  return live;
}

void Worker::releasePinned(std::shared_ptr<redis::BackendConnection> connection, bool clean) {
  stats_.pinned_current.sub();
  if (clean && !shutting_down_ && connection->ready() && idle_pinned_.size() < kMaxIdlePinned) {
    // Known clean, not just believed clean: RESET and the handshake again.
    connection->resetForPool();
    idle_pinned_.push_back(std::move(connection));
    return;
  }
  connection->stop();
}

void Worker::adopt(asio::ip::tcp::socket socket, std::shared_ptr<asio::ssl::context> tls,
                   std::uint64_t id) {
  stats_.connections_total.add();
  stats_.connections_current.add();
  auto session = std::make_shared<Session>(*this, std::move(socket), std::move(tls), id);
  sessions_.emplace(id, session);
  if (shutting_down_) {
    session->close();
    return;
  }
  session->start();
}

cache::Loader* Worker::loader() { return server_.loader(); }

cache::WriteService* Worker::writes() { return server_.writes(); }

void Worker::forget(std::uint64_t id) {
  if (sessions_.erase(id) > 0) {
    stats_.connections_current.sub();
    server_.clientClosed();
  }
}

void Worker::flushLater(std::shared_ptr<Session> session) {
  if (flushes_.empty()) {
    asio::post(context_, [this] {
      flushing_.swap(flushes_);
      for (auto& s : flushing_) s->flushDeferred();
      flushing_.clear();
    });
  }
  flushes_.push_back(std::move(session));
}

void Worker::sweepIdle() {
  sweep_.expires_after(std::chrono::seconds(1));
  sweep_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    if (near_cache_) {
      const auto now = std::chrono::steady_clock::now();
      if (near_tracking_) near_tracking_->tick(now);
      if (cluster_near_) cluster_near_->tick(now);
      near_cache_->sweep(now);
    }
    if (users_checked_ != &config()) {
      // A reload may have removed or disabled users: their clients go.
      users_checked_ = &config();
      std::vector<std::shared_ptr<Session>> all;
      for (auto& [id, weak] : sessions_) {
        if (auto s = weak.lock()) all.push_back(std::move(s));
      }
      for (auto& s : all) s->recheckUser();
    }
    const auto timeout = config().idle_timeout;
    if (timeout.count() > 0) {
      const auto now = std::chrono::steady_clock::now();
      std::vector<std::shared_ptr<Session>> idle;
      for (auto& [id, weak] : sessions_) {
        auto s = weak.lock();
        if (s && !s->exemptFromIdleTimeout() && now - s->lastActive() > timeout) {
          idle.push_back(std::move(s));
        }
      }
      for (auto& s : idle) {
        stats_.idle_closes.add();
        s->close();
      }
    }
    sweepIdle();
  });
}

}  // namespace larder::server
