// What the admin endpoints show: Prometheus metrics summed over workers at
// scrape time (the hot path only bumps single-writer counters), readiness,
// and the effective config with secrets redacted.
#include "larder/admin/metrics_writer.hpp"
#include "larder/config/loader.hpp"
#include "larder/server/server.hpp"

namespace larder::server {

namespace {

template <typename Get>
double sum(const std::vector<std::unique_ptr<Worker>>& workers, Get get) {
  double total = 0;
  for (const auto& w : workers) total += static_cast<double>(get(w->stats()));
  return total;
}

// The near cache of one keyspace, summed over workers (docs/near_cache.md).
template <typename Per>
void nearCacheMetrics(admin::MetricsWriter& m, const admin::Labels& labels, Per per) {
  using K = const proxy::KeyspaceCounters&;
  m.counter("larder_near_cache_hits_total", "Reads answered from a worker's near cache.", labels,
            per([](K k) { return k.near_hits.get(); }));
  m.counter("larder_near_cache_misses_total",
            "Near-cacheable reads that went to Redis (not cached, or near cache bypassed).", labels,
            per([](K k) { return k.near_misses.get(); }));
  const std::pair<const char*, Counter proxy::KeyspaceCounters::*> reasons[] = {
      {"invalidation", &proxy::KeyspaceCounters::near_evicted_invalidation},
      {"capacity", &proxy::KeyspaceCounters::near_evicted_capacity},
      {"ttl", &proxy::KeyspaceCounters::near_evicted_ttl}};
  for (const auto& [reason, field] : reasons) {
    admin::Labels with_reason = labels;
    with_reason.emplace("reason", reason);
    m.counter("larder_near_cache_evictions_total", "Near-cache entries dropped, by reason.",
              with_reason, per([field = field](K k) { return (k.*field).get(); }));
  }
  m.counter("larder_near_cache_flushes_total",
            "Whole near-cache flushes (invalidation connection lost, FLUSHALL), per worker.",
            labels, per([](K k) { return k.near_flushes.get(); }));
  m.gauge("larder_near_cache_bytes", "Bytes held by the near caches (all workers).", labels,
          per([](K k) { return k.near_bytes.get(); }));
  m.gauge("larder_near_cache_entries", "Keys held by the near caches (all workers).", labels,
          per([](K k) { return k.near_entries.get(); }));
}

}  // namespace

std::string Server::metricsText() const {
  admin::MetricsWriter m;
  using S = const proxy::WorkerStats&;
  m.gauge("larder_connections", "Connected clients.", {},
          static_cast<double>(clients_.load(std::memory_order_relaxed)));
  m.counter("larder_connections_total", "Client connections accepted.", {},
            sum(workers_, [](S s) { return s.connections_total.get(); }));
  m.counter("larder_connections_rejected_total", "Connections refused at maxclients.", {},
            static_cast<double>(rejected_.get()));
  m.counter("larder_commands_total", "Requests executed (forwarded or answered).", {},
            sum(workers_, [](S s) { return s.commands.get(); }));
  // Only commands seen so far: the label set stays small and bounded anyway.
  const std::size_t slots = workers_.empty() ? 0 : workers_.front()->stats().by_command.size();
  for (std::size_t c = 0; c < slots; ++c) {
    Histogram total;
    for (const auto& w : workers_) total.merge(w->stats().by_command[c].latency);
    if (total.count() == 0) continue;
    const admin::Labels labels{{"command", std::string(proxy::CommandStats::label(c))}};
    m.counter("larder_command_calls_total", "Requests answered, by command.", labels,
              static_cast<double>(total.count()));
    m.histogram("larder_command_duration_seconds",
                "Time from reading a request to its complete reply, by command.", labels, total);
  }
  m.counter("larder_config_reloads_total", "Config reloads applied (SIGHUP, LARDER RELOAD).", {},
            static_cast<double>(reloads_.get()));
  m.counter("larder_protocol_errors_total", "Clients closed for malformed requests.", {},
            sum(workers_, [](S s) { return s.protocol_errors.get(); }));
  m.counter("larder_limit_disconnections_total", "Clients closed by a limit.",
            {{"limit", "output_buffer"}},
            sum(workers_, [](S s) { return s.output_limit_closes.get(); }));
  m.counter("larder_limit_disconnections_total", "Clients closed by a limit.",
            {{"limit", "idle_timeout"}}, sum(workers_, [](S s) { return s.idle_closes.get(); }));
  m.counter("larder_backend_waits_total",
            "Times a client waited because its Redis connection had too much in flight.", {},
            sum(workers_, [](S s) { return s.backend_waits.get(); }));
  m.gauge("larder_redis_pinned_connections",
          "Dedicated Redis connections in use (MULTI, pub/sub, blocking).", {},
          sum(workers_, [](S s) { return s.pinned_current.get(); }));
  m.gauge("larder_near_cache_tracking_up",
          "Workers whose near cache has Redis invalidation established (and is in use).", {},
          sum(workers_, [](S s) { return s.near_tracking_up.get(); }));
  bool redis_up = true;
  for (const auto& w : workers_) redis_up = redis_up && w->backendReady();
  m.gauge("larder_redis_up", "1 when every shared Redis connection is connected.", {},
          redis_up ? 1 : 0);
  m.counter("larder_redis_connects_total", "Redis connections established.", {},
            sum(workers_, [](S s) { return s.backend.connects.get(); }));
  m.counter("larder_redis_connect_failures_total", "Failed attempts to connect to Redis.", {},
            sum(workers_, [](S s) { return s.backend.connect_failures.get(); }));
  m.counter("larder_redis_failed_requests_total",
            "Requests answered with an error because Redis was unreachable.", {},
            sum(workers_, [](S s) { return s.backend.failed_requests.get(); }));

  if (invalidator_) {
    const auto& inv = invalidator_->stats();
    m.gauge("larder_invalidation_listening",
            "1 while LISTENing for row changes from PostgreSQL (invalidation.listen).", {},
            static_cast<double>(inv.listening.get()));
    m.counter("larder_invalidation_notifications_total", "Row-change notifications received.", {},
              static_cast<double>(inv.notifications.get()));
    m.counter("larder_invalidation_ignored_total",
              "Notifications that named no mapped row (bad payload or unmapped table).", {},
              static_cast<double>(inv.bad_payloads.get()));
    m.counter("larder_invalidation_keys_dropped_total",
              "Cache keys dropped by invalidation (notifications, LARDER INVALIDATE, resyncs).", {},
              static_cast<double>(inv.keys_dropped.get()));
    m.counter("larder_invalidation_resyncs_total",
              "Times the mapped keyspaces were dropped because LISTEN (re)started.", {},
              static_cast<double>(inv.resyncs.get()));
    m.counter("larder_invalidation_listen_errors_total", "Failed attempts to LISTEN.", {},
              static_cast<double>(inv.listen_errors.get()));
  }
  if (pg_pool_) {
    const auto& p = pg_pool_->stats();
    m.gauge("larder_postgres_connections", "Open PostgreSQL connections.", {},
            static_cast<double>(p.open.get()));
    m.gauge("larder_postgres_connections_in_use", "PostgreSQL connections lent out.", {},
            static_cast<double>(p.in_use.get()));
    m.counter("larder_postgres_connect_failures_total", "Failed PostgreSQL connects.", {},
              static_cast<double>(p.connect_failures.get()));
    m.counter("larder_postgres_acquire_timeouts_total",
              "Waits for a PostgreSQL connection that timed out.", {},
              static_cast<double>(p.acquire_timeouts.get()));
  }
  for (std::size_t i = 0; i < keyspaces_.size(); ++i) {
    const auto& ks = keyspaces_.at(i);
    const admin::Labels labels{{"keyspace", ks.name()}};
    auto per = [&](auto field) {
      double total = 0;
      for (const auto& w : workers_)
        total += static_cast<double>(field(w->stats().keyspace(ks.id)));
      return total;
    };
    using K = const proxy::KeyspaceCounters&;
    m.counter("larder_keyspace_hits_total", "Reads of mapped keys served from Redis.", labels,
              per([](K k) { return k.hits.get(); }));
    m.counter("larder_keyspace_misses_total", "Reads of mapped keys that went to the Loader.",
              labels, per([](K k) { return k.misses.get(); }));
    m.counter("larder_keyspace_fallbacks_total",
              "Reads answered from PostgreSQL alone because Redis was down.", labels,
              per([](K k) { return k.fallbacks.get(); }));
    m.counter("larder_keyspace_refused_total",
              "Commands refused on mapped keys (-WRONGTYPE, writes not supported).", labels,
              per([](K k) { return k.refused.get(); }));
    const auto& l = loader_->stats(ks.id);
    m.counter("larder_load_queries_total", "SELECTs sent by the Loader.", labels,
              static_cast<double>(l.queries.get()));
    m.counter("larder_load_keys_total", "Keys asked for in those SELECTs.", labels,
              static_cast<double>(l.keys_queried.get()));
    m.counter("larder_load_rows_found_total", "Rows found by the Loader.", labels,
              static_cast<double>(l.rows_found.get()));
    m.counter("larder_load_singleflight_joins_total",
              "Misses that joined a load already in flight.", labels,
              static_cast<double>(l.joins.get()));
    m.counter("larder_load_negative_hits_total", "Misses answered by the negative cache.", labels,
              static_cast<double>(l.negative_hits.get()));
    m.counter("larder_load_errors_total", "Misses answered with an error.", labels,
              static_cast<double>(l.errors.get()));
    m.counter("larder_load_timeouts_total", "Misses answered with an error after load_timeout.",
              labels, static_cast<double>(l.timeouts.get()));
    m.counter("larder_fills_total", "Rows stored in Redis after a load.", labels,
              static_cast<double>(l.fills.get()));
    m.counter("larder_fills_skipped_total", "Fills skipped for a newer or pending write.", labels,
              static_cast<double>(l.fills_skipped.get()));
    m.histogram("larder_load_duration_seconds", "Time from a miss to its answer.", labels,
                l.latency);
    m.counter("larder_load_pending_overlays_total",
              "Misses answered with pending writes laid over the loaded row.", labels,
              static_cast<double>(l.pending_overlays.get()));
    m.counter("larder_stale_hits_total",
              "Hits served past their soft TTL (stale-while-revalidate), each asking a refresh.",
              labels, per([](K k) { return k.stale_hits.get(); }));
    m.counter("larder_early_refresh_triggers_total",
              "Hits that asked an XFetch early refresh before the soft TTL.", labels,
              per([](K k) { return k.early_refreshes.get(); }));
    m.counter("larder_refreshes_total", "Background refreshes this instance started.", labels,
              static_cast<double>(l.refreshes.get()));
    m.counter("larder_refreshes_stored_total", "Refreshes that replaced the cached value.", labels,
              static_cast<double>(l.refreshes_stored.get()));
    m.counter("larder_load_leases_won_total",
              "Loads this instance ran holding the key's cross-instance lease.", labels,
              static_cast<double>(l.leases_won.get()));
    m.counter("larder_load_leases_waited_total",
              "Loads left to another instance holding the lease.", labels,
              static_cast<double>(l.leases_waited.get()));
    m.counter("larder_load_peer_fills_total",
              "Misses answered from another instance's fill after waiting on its lease.", labels,
              static_cast<double>(l.peer_fills.get()));
    m.counter("larder_writes_total", "Writes to mapped keys acknowledged.", labels,
              per([](K k) { return k.writes.get(); }));
    m.counter("larder_write_queue_full_total", "Writes that found the write queue full.", labels,
              per([](K k) { return k.queue_full.get(); }));
    if (ks.config.near_cache.enabled) nearCacheMetrics(m, labels, per);
    writeMetrics(m, ks, labels);
  }
  return m.text();
}

void Server::writeMetrics(admin::MetricsWriter& m, const cache::Keyspace& ks,
                          const admin::Labels& labels) const {
  if (!writes_) return;
  if (const cache::Flusher* f = writes_->flusher(ks.id)) {
    const auto& s = f->stats();
    auto value = [](const Counter& c) { return static_cast<double>(c.get()); };
    m.gauge("larder_write_queue_depth", "Writes queued in Redis, not yet in PostgreSQL.", labels,
            value(s.queue_depth));
    m.gauge("larder_write_queue_oldest_age_seconds", "Age of the oldest queued write.", labels,
            value(s.oldest_age_ms) / 1000.0);
    m.gauge("larder_flusher_active", "1 while this instance flushes the keyspace.", labels,
            value(s.lock_held));
    m.counter("larder_flush_batches_total", "Batches committed to PostgreSQL.", labels,
              value(s.batches));
    m.counter("larder_flush_entries_total", "Queue entries flushed and acknowledged.", labels,
              value(s.entries));
    m.counter("larder_flush_rows_total", "Rows written or deleted in PostgreSQL.", labels,
              value(s.rows));
    m.counter("larder_writes_coalesced_total", "Queued writes folded into a later one.", labels,
              value(s.coalesced));
    m.counter("larder_flush_retries_total",
              "Batches given up on by a pause (an error that is not the row's) and retried.",
              labels, value(s.retries));
    m.gauge("larder_flush_paused",
            "1 while the keyspace's flush waits after an error that is not the row's.", labels,
            value(s.paused));
    m.counter("larder_flush_replayed_total", "Queue entries skipped: PostgreSQL applied them.",
              labels, value(s.replayed));
    m.counter("larder_redis_behind_total",
              "Times Redis' queue was found behind what PostgreSQL applied.", labels,
              value(s.redis_behind));
    m.counter("larder_dead_letters_total", "Rows PostgreSQL refused for good.", labels,
              value(s.dead_letters));
    m.histogram("larder_flush_duration_seconds", "Time to read, apply and acknowledge a batch.",
                labels, s.latency);
  }
  const auto& t = writes_->throughStats(ks.id);
  if (ks.config.write == config::WriteMode::Through) {
    m.counter("larder_write_through_total", "Writes committed in write-through mode.", labels,
              static_cast<double>(t.writes.get()));
    m.counter("larder_write_through_commits_total",
              "Write-through transactions committed (several clients' writes share one).", labels,
              static_cast<double>(t.commits.get()));
    m.counter("larder_write_through_refused_total", "Write-through rows PostgreSQL refused.",
              labels, static_cast<double>(t.refused.get()));
    m.counter("larder_write_through_failed_total",
              "Write-through writes failed: PostgreSQL unavailable.", labels,
              static_cast<double>(t.failed.get()));
    m.histogram("larder_write_through_duration_seconds", "Time to commit a write-through write.",
                labels, t.latency);
  }
}

bool Server::ready(std::string& why) const {
  for (const auto& w : workers_) {
    if (!w->backendReady()) {
      why += config_.redis.clusterMode()
                 ? std::string("redis cluster: not every slot has a connected owner\n")
                 : "redis: not connected to " + config_.redis.address.toString() + "\n";
      break;
    }
  }
  if (pg_pool_ && pg_pool_->stats().open.get() == 0 && pg_pool_->lastConnectFailed()) {
    why += "postgres: cannot connect\n";
  }
  if (writes_) why += writes_->strandedQueues();
  for (std::size_t i = 0; writes_ && i < keyspaces_.size(); ++i) {
    const cache::Flusher* f = writes_->flusher(static_cast<int>(i));
    if (const auto refusal = writes_->refusal(static_cast<int>(i));
        refusal != cache::WriteRefusal::None) {
      why += "writes to keyspace " + keyspaces_.at(i).name() + ": refused (" +
             cache::refusalText(refusal, keyspaces_.at(i).name()).substr(12) + ")\n";
    }
    if (f && f->stats().queue_depth.get() >= config().write_behind.max_queue) {
      why += "write queue of keyspace " + keyspaces_.at(i).name() + ": full\n";
    }
    if (f && f->stats().paused.get() != 0) {
      const std::string state = cache::unpackSqlstate(f->stats().pause_state.get());
      why += "flush of keyspace " + keyspaces_.at(i).name() + ": paused (" +
             (state.empty() ? std::string("PostgreSQL unreachable") : "SQLSTATE " + state) + ")\n";
    }
  }
  return why.empty();
}

std::string Server::effectiveConfig() const { return config::redactedSummary(config()); }

}  // namespace larder::server
