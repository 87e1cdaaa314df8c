// What INFO and LARDER STATS report about the process (server/info.hpp).
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "larder/server/server.hpp"

namespace larder::server {

namespace asio = boost::asio;

namespace {

struct Totals {
  std::uint64_t connections_total = 0, commands = 0, protocol_errors = 0, output_closes = 0,
                idle_closes = 0, pinned = 0, pinned_total = 0, backend_connects = 0,
                backend_failed = 0;
  bool backend_up = true;
};

template <typename T>
void field(proxy::InfoFields& out, std::string key, const T& value) {
  if constexpr (std::is_convertible_v<T, std::string>) {
    out.emplace_back(std::move(key), std::string(value));
  } else {
    out.emplace_back(std::move(key), std::to_string(value));
  }
}

std::string executable() {
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  return n > 0 ? std::string(path, static_cast<std::size_t>(n)) : std::string("larder");
}

}  // namespace

std::uint64_t Server::totalCommands() const {
  std::uint64_t n = 0;
  for (const auto& w : workers_) n += w->stats().commands.get();
  return n;
}

asio::awaitable<void> Server::sampleOps() {
  // As Redis: the rate over the last 16 samples taken every 100 ms.
  constexpr std::size_t kSamples = 16;
  std::array<std::pair<std::chrono::steady_clock::time_point, std::uint64_t>, kSamples> ring{};
  std::size_t taken = 0;
  asio::steady_timer timer(context_);
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    ring[taken % kSamples] = {now, totalCommands()};
    ++taken;
    if (taken > 1) {
      const auto& oldest = ring[taken > kSamples ? taken % kSamples : 0];
      const auto& newest = ring[(taken - 1) % kSamples];
      const double seconds = std::chrono::duration<double>(newest.first - oldest.first).count();
      if (seconds > 0) {
        ops_per_sec_.store(static_cast<std::uint64_t>(
                               static_cast<double>(newest.second - oldest.second) / seconds),
                           std::memory_order_relaxed);
      }
    }
    timer.expires_after(std::chrono::milliseconds(100));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || stopped_) co_return;
  }
}

void Server::clusterFields(proxy::InfoFields& out) const {
  // Summed over the workers' routers (docs/cluster.md, "Watching it").
  std::uint64_t moved = 0, ask = 0, retries = 0, timeouts = 0, refreshes = 0, changes = 0;
  int known = cluster::kSlots;
  for (const auto& w : workers_) {
    const cluster::Router* r = w->router();
    if (r == nullptr) continue;
    const cluster::ClusterStats& s = r->clusterStats();
    moved += s.moved.get();
    ask += s.ask.get();
    retries += s.retries.get();
    timeouts += s.retry_timeouts.get();
    refreshes += s.refreshes.get();
    changes += s.map_changes.get();
    known = std::min(known, r->slotsKnown());
  }
  field(out, "cluster_slots_known", known);
  field(out, "cluster_moved", moved);
  field(out, "cluster_ask", ask);
  field(out, "cluster_retries", retries);
  field(out, "cluster_retry_timeouts", timeouts);
  field(out, "cluster_topology_refreshes", refreshes);
  field(out, "cluster_map_changes", changes);
}

proxy::InfoFields Server::infoFields(std::string_view section) const {
  Totals t;
  for (const auto& w : workers_) {
    const auto& s = w->stats();
    t.connections_total += s.connections_total.get();
    t.commands += s.commands.get();
    t.protocol_errors += s.protocol_errors.get();
    t.output_closes += s.output_limit_closes.get();
    t.idle_closes += s.idle_closes.get();
    t.pinned += s.pinned_current.get();
    t.pinned_total += s.pinned_total.get();
    t.backend_connects += s.backend.connects.get();
    t.backend_failed += s.backend.failed_requests.get();
    t.backend_up = t.backend_up && w->backendReady();
  }
  const auto uptime =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count();
  const config::Config& c = config();
  proxy::InfoFields out;
  if (section == "server") {
    field(out, "larder_version", LARDER_VERSION);
    field(out, "process_id", static_cast<long long>(::getpid()));
    field(out, "tcp_port", c.listen.port);
    field(out, "uptime_in_seconds", uptime);
    field(out, "uptime_in_days", uptime / 86400);
    field(out, "executable", executable());
    field(out, "config_file", c.source);
  } else if (section == "clients") {
    field(out, "connected_clients", clients_.load(std::memory_order_relaxed));
    field(out, "maxclients", c.limits.maxclients);
  } else if (section == "stats") {
    field(out, "total_connections_received", t.connections_total);
    field(out, "total_commands_processed", t.commands);
    field(out, "instantaneous_ops_per_sec", ops_per_sec_.load(std::memory_order_relaxed));
    field(out, "rejected_connections", rejected_.get());
  } else if (section == "larder") {
    field(out, "larder_version", LARDER_VERSION);
    field(out, "uptime_in_seconds", uptime);
    field(out, "config_file", c.source);
    field(out, "config_reloads", reloads_.get());
    field(out, "worker_threads", workers_.size());
    field(out, "connected_clients", clients_.load(std::memory_order_relaxed));
    field(out, "total_connections_received", t.connections_total);
    field(out, "rejected_connections", rejected_.get());
    field(out, "total_commands_processed", t.commands);
    field(out, "protocol_errors", t.protocol_errors);
    field(out, "output_limit_disconnections", t.output_closes);
    field(out, "idle_disconnections", t.idle_closes);
    field(out, "pinned_backend_connections", t.pinned);
    field(out, "pinned_backend_connections_total", t.pinned_total);
    field(out, "backend_redis_address",
          config_.redis.clusterMode() ? "cluster" : config_.redis.address.toString());
    field(out, "backend_redis_status", t.backend_up ? "ok" : "down");
    field(out, "backend_redis_connects", t.backend_connects);
    field(out, "backend_redis_failed_requests", t.backend_failed);
    if (config_.redis.clusterMode()) clusterFields(out);
    field(out, "keyspaces", keyspaces_.size());
    if (pg_pool_) {
      const auto& p = pg_pool_->stats();
      field(out, "backend_postgres_status",
            p.open.get() > 0 || !pg_pool_->lastConnectFailed() ? "ok" : "down");
      field(out, "backend_postgres_connections", p.open.get());
      field(out, "backend_postgres_connect_failures", p.connect_failures.get());
    }
    if (invalidator_) {
      const auto& inv = invalidator_->stats();
      field(out, "invalidation_listening", inv.listening.get());
      field(out, "invalidation_notifications", inv.notifications.get());
      field(out, "invalidation_keys_dropped", inv.keys_dropped.get());
      field(out, "invalidation_resyncs", inv.resyncs.get());
    }
    keyspaceFields(out);
  }
  return out;
}

void Server::keyspaceFields(proxy::InfoFields& out) const {
  for (std::size_t i = 0; i < keyspaces_.size(); ++i) {
    const auto& ks = keyspaces_.at(i);
    std::uint64_t hits = 0, misses = 0, fallbacks = 0, refused = 0, writes = 0;
    for (const auto& w : workers_) {
      const auto& k = w->stats().keyspace(ks.id);
      hits += k.hits.get();
      misses += k.misses.get();
      fallbacks += k.fallbacks.get();
      refused += k.refused.get();
      writes += k.writes.get();
    }
    const auto& l = loader_->stats(ks.id);
    std::string s =
        "hits=" + std::to_string(hits) + ",misses=" + std::to_string(misses) +
        ",fallbacks=" + std::to_string(fallbacks) + ",refused=" + std::to_string(refused) +
        ",queries=" + std::to_string(l.queries.get()) +
        ",keys_queried=" + std::to_string(l.keys_queried.get()) +
        ",rows_found=" + std::to_string(l.rows_found.get()) +
        ",joins=" + std::to_string(l.joins.get()) +
        ",negative_hits=" + std::to_string(l.negative_hits.get()) +
        ",fills=" + std::to_string(l.fills.get()) +
        ",fills_skipped=" + std::to_string(l.fills_skipped.get()) +
        ",load_errors=" + std::to_string(l.errors.get()) +
        ",load_timeouts=" + std::to_string(l.timeouts.get()) +
        ",leases_won=" + std::to_string(l.leases_won.get()) +
        ",leases_waited=" + std::to_string(l.leases_waited.get()) +
        ",peer_fills=" + std::to_string(l.peer_fills.get()) +
        ",refreshes=" + std::to_string(l.refreshes.get()) +
        ",refreshes_stored=" + std::to_string(l.refreshes_stored.get()) +
        ",writes=" + std::to_string(writes) + ",ttl_ms=" + std::to_string(ks.ttl_ms.get());
    if (const cache::Flusher* f = writes_ ? writes_->flusher(ks.id) : nullptr) {
      const auto& fs = f->stats();
      s += ",queue_depth=" + std::to_string(fs.queue_depth.get()) +
           ",oldest_pending_ms=" + std::to_string(fs.oldest_age_ms.get()) +
           ",flushed_rows=" + std::to_string(fs.rows.get()) +
           ",coalesced=" + std::to_string(fs.coalesced.get()) +
           ",flush_retries=" + std::to_string(fs.retries.get()) +
           ",dead_letters=" + std::to_string(fs.dead_letters.get()) +
           ",flusher_active=" + std::to_string(fs.lock_held.get()) +
           ",flush_paused=" + std::to_string(fs.paused.get()) +
           ",replayed=" + std::to_string(fs.replayed.get());
    }
    out.emplace_back("keyspace_" + ks.name(), std::move(s));
  }
}

}  // namespace larder::server
