#include "larder/config/reload.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "larder/config/key_template.hpp"
#include "larder/config/loader.hpp"

namespace larder::config {

namespace {

std::string show(const Endpoint& e) { return e.toString(); }
std::string show(const std::optional<Endpoint>& e) { return e ? e->toString() : "(off)"; }
std::string show(const std::string& s) { return s.empty() ? "(empty)" : s; }
std::string show(int v) { return std::to_string(v); }
std::string show(bool v) { return v ? "true" : "false"; }
std::string show(std::size_t v) { return std::to_string(v); }
std::string show(Millis v) { return formatDuration(v); }
std::string show(std::chrono::microseconds v) { return std::to_string(v.count()) + "us"; }
std::string show(TlsVerifyClients v) {
  return v == TlsVerifyClients::None       ? "none"
         : v == TlsVerifyClients::Optional ? "optional"
                                           : "required";
}
std::string show(TlsVersion v) { return v == TlsVersion::Tls13 ? "TLS1.3" : "TLS1.2"; }
std::string show(LogFormat f) { return f == LogFormat::Json ? "json" : "text"; }
std::string show(QueueFullPolicy p) { return p == QueueFullPolicy::Block ? "block" : "error"; }
std::string show(KeyShape s) { return s == KeyShape::Hash ? "hash" : "string"; }
std::string show(WriteMode m) {
  return m == WriteMode::Behind ? "behind" : m == WriteMode::Through ? "through" : "none";
}
std::string show(const std::vector<std::string>& v) {
  if (v.empty()) return "(all)";
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

std::string show(const std::vector<Endpoint>& v) {
  std::string out;
  for (const auto& e : v) out += (out.empty() ? "" : ",") + e.toString();
  return out.empty() ? "(none)" : out;
}

bool overlaps(const std::string& a_key, const std::string& b_key) {
  KeyTemplate a, b;
  std::string error;
  if (!parseKeyTemplate(a_key, a, error) || !parseKeyTemplate(b_key, b, error)) return true;
  const std::string& pa = a.prefix();
  const std::string& pb = b.prefix();
  return pa.compare(0, pb.size(), pb) == 0 || pb.compare(0, pa.size(), pa) == 0;
}

class Planner {
 public:
  Planner(const Config& live, const Config& next) : live_(live), next_(next) {
    plan_.effective = live;
    plan_.effective.source = next.source;
  }

  ReloadPlan run() {
    Config& e = plan_.effective;
    restart("listen", live_.listen, next_.listen);
    restart("threads", live_.threads, next_.threads);
    restart("admin", live_.admin, next_.admin);
    restartSecret("admin.token", live_.admin_token, next_.admin_token);
    restart("backlog", live_.backlog, next_.backlog);
    restart("tls.listen", live_.tls.listen, next_.tls.listen);
    restart("redis.address", live_.redis.address, next_.redis.address);
    restart("redis.tls.enabled", live_.redis.tls.enabled, next_.redis.tls.enabled);
    restart("redis.tls.ca_file", live_.redis.tls.ca_file, next_.redis.tls.ca_file);
    restart("redis.tls.cert_file", live_.redis.tls.cert_file, next_.redis.tls.cert_file);
    restart("redis.tls.key_file", live_.redis.tls.key_file, next_.redis.tls.key_file);
    restart("redis.tls.server_name", live_.redis.tls.server_name, next_.redis.tls.server_name);
    restartSecret("redis.username", live_.redis.username, next_.redis.username);
    restartSecret("redis.password", live_.redis.password, next_.redis.password);
    restart("redis.db", live_.redis.db, next_.redis.db);
    restart("redis.connections_per_worker", live_.redis.connections_per_worker,
            next_.redis.connections_per_worker);
    restart("redis.max_pinned_per_worker", live_.redis.max_pinned_per_worker,
            next_.redis.max_pinned_per_worker);
    restart("redis.max_pending_per_connection", live_.redis.max_pending_per_connection,
            next_.redis.max_pending_per_connection);
    restart("redis.connect_timeout", live_.redis.connect_timeout, next_.redis.connect_timeout);
    restart("redis.reconnect_min", live_.redis.reconnect_min, next_.redis.reconnect_min);
    restart("redis.reconnect_max", live_.redis.reconnect_max, next_.redis.reconnect_max);
    restart("redis.cluster.seeds", live_.redis.cluster.seeds, next_.redis.cluster.seeds);
    restart("redis.cluster.read_from_replicas", live_.redis.cluster.read_from_replicas,
            next_.redis.cluster.read_from_replicas);
    restart("redis.cluster.redirect_limit", live_.redis.cluster.redirect_limit,
            next_.redis.cluster.redirect_limit);
    restart("redis.cluster.retry_timeout", live_.redis.cluster.retry_timeout,
            next_.redis.cluster.retry_timeout);
    restart("redis.cluster.refresh_interval", live_.redis.cluster.refresh_interval,
            next_.redis.cluster.refresh_interval);
    restartSecret("postgres.dsn", live_.postgres.dsn, next_.postgres.dsn);
    restart("postgres.sslmode", live_.postgres.sslmode, next_.postgres.sslmode);
    restart("postgres.sslrootcert", live_.postgres.sslrootcert, next_.postgres.sslrootcert);
    restart("postgres.sslcert", live_.postgres.sslcert, next_.postgres.sslcert);
    restart("postgres.sslkey", live_.postgres.sslkey, next_.postgres.sslkey);
    restart("postgres.pool_size", live_.postgres.pool_size, next_.postgres.pool_size);
    restart("postgres.connect_timeout", live_.postgres.connect_timeout,
            next_.postgres.connect_timeout);
    restart("postgres.statement_timeout", live_.postgres.statement_timeout,
            next_.postgres.statement_timeout);
    restart("read_through.batch_window", live_.read_through.batch_window,
            next_.read_through.batch_window);
    restart("read_through.max_batch", live_.read_through.max_batch, next_.read_through.max_batch);
    restart("read_through.load_timeout", live_.read_through.load_timeout,
            next_.read_through.load_timeout);
    restart("read_through.negative_cache_entries", live_.read_through.negative_cache_entries,
            next_.read_through.negative_cache_entries);
    const auto& lw = live_.write_behind;
    const auto& nw = next_.write_behind;
    restart("write_behind.flush_interval", lw.flush_interval, nw.flush_interval);
    restart("write_behind.max_batch", lw.max_batch, nw.max_batch);
    restart("write_behind.retry_min", lw.retry_min, nw.retry_min);
    restart("write_behind.retry_max", lw.retry_max, nw.retry_max);
    restart("write_behind.drain_timeout", lw.drain_timeout, nw.drain_timeout);
    restart("invalidation.listen", live_.invalidation.listen_channel,
            next_.invalidation.listen_channel);
    restart("invalidation.publish", live_.invalidation.publish_channel,
            next_.invalidation.publish_channel);

    // The TLS listener's context is rebuilt from these on every reload, which
    // also re-reads the files (rotated certificates); new connections use it.
    apply("tls.cert_file", e.tls.cert_file, next_.tls.cert_file);
    apply("tls.key_file", e.tls.key_file, next_.tls.key_file);
    apply("tls.ca_file", e.tls.ca_file, next_.tls.ca_file);
    apply("tls.verify_clients", e.tls.verify_clients, next_.tls.verify_clients);
    apply("tls.min_version", e.tls.min_version, next_.tls.min_version);
    apply("tls.handshake_timeout", e.tls.handshake_timeout, next_.tls.handshake_timeout);
    apply("log.level", e.log_level, next_.log_level);
    apply("log.format", e.log_format, next_.log_format);
    apply("idle_timeout", e.idle_timeout, next_.idle_timeout);
    applySecret("requirepass", e.requirepass, next_.requirepass);
    users();
    apply("limits.max_array_len", e.limits.max_array_len, next_.limits.max_array_len);
    applySize("limits.max_bulk_len", e.limits.max_bulk_len, next_.limits.max_bulk_len);
    applySize("limits.max_inline_len", e.limits.max_inline_len, next_.limits.max_inline_len);
    apply("limits.max_inflight_per_client", e.limits.max_inflight_per_client,
          next_.limits.max_inflight_per_client);
    applySize("limits.client_output_limit", e.limits.client_output_limit,
              next_.limits.client_output_limit);
    apply("limits.maxclients", e.limits.maxclients, next_.limits.maxclients);
    apply("write_behind.max_queue", e.write_behind.max_queue, nw.max_queue);
    apply("write_behind.on_full", e.write_behind.on_full, nw.on_full);
    apply("write_behind.block_timeout", e.write_behind.block_timeout, nw.block_timeout);

    keyspaces();
    return std::move(plan_);
  }

 private:
  template <typename T>
  void restart(const std::string& key, const T& running, const T& wanted) {
    if (running == wanted) return;
    plan_.not_applied.push_back(key + ": " + show(running) + " -> " + show(wanted) +
                                ": needs a restart; keeping " + show(running));
  }
  void restartSecret(const std::string& key, const std::string& running,
                     const std::string& wanted) {
    if (running == wanted) return;
    plan_.not_applied.push_back(key + ": changed: needs a restart; keeping the running value");
  }
  template <typename T>
  void apply(const std::string& key, T& running, const T& wanted) {
    if (running == wanted) return;
    plan_.applied.push_back(key + ": " + show(running) + " -> " + show(wanted));
    running = wanted;
  }
  void applySize(const std::string& key, std::size_t& running, std::size_t wanted) {
    if (running == wanted) return;
    plan_.applied.push_back(key + ": " + formatSize(running) + " -> " + formatSize(wanted));
    running = wanted;
  }
  void applySecret(const std::string& key, std::string& running, const std::string& wanted) {
    if (running == wanted) return;
    plan_.applied.push_back(key + ": changed");
    running = wanted;
  }

  // Users apply as a whole; the report names users, never their passwords.
  void users() {
    auto& running = plan_.effective.users;
    for (const UserConfig& user : running) {
      if (!user.implicit && !findUser(next_.users, user.name)) {
        plan_.applied.push_back("users." + user.name + ": removed (its clients are closed)");
      }
    }
    for (const UserConfig& wanted : next_.users) {
      if (wanted.implicit) {  // requirepass reports the implicit default user
        const UserConfig* had = findUser(running, wanted.name);
        if (had && !had->implicit) {
          plan_.applied.push_back("users." + wanted.name +
                                  ": removed from users: (requirepass applies again)");
        }
        continue;
      }
      const UserConfig* had = findUser(running, wanted.name);
      if (!had || had->implicit) {
        plan_.applied.push_back("users." + wanted.name + ": added");
      } else if (!(*had == wanted)) {
        std::string what;
        if (had->enabled != wanted.enabled) {
          what = wanted.enabled ? " (enabled)" : " (disabled: its clients are closed)";
        }
        plan_.applied.push_back("users." + wanted.name + ": changed" + what);
      }
    }
    running = next_.users;
  }

  void keyspaces() {
    auto& running = plan_.effective.keyspaces;
    for (const KeyspaceConfig& ks : running) {
      const bool kept = std::any_of(next_.keyspaces.begin(), next_.keyspaces.end(),
                                    [&](const KeyspaceConfig& n) { return n.name == ks.name; });
      if (!kept) {
        plan_.not_applied.push_back("keyspaces." + ks.name +
                                    ": removed from the file: needs a restart; it keeps serving");
      }
    }
    for (const KeyspaceConfig& wanted : next_.keyspaces) {
      const std::string path = "keyspaces." + wanted.name;
      auto it = std::find_if(running.begin(), running.end(),
                             [&](const KeyspaceConfig& r) { return r.name == wanted.name; });
      if (it != running.end()) {
        restart(path + ".key", it->key, wanted.key);
        restart(path + ".table", it->table, wanted.table);
        restart(path + ".shape", it->shape, wanted.shape);
        restart(path + ".columns", it->columns, wanted.columns);
        restart(path + ".write", it->write, wanted.write);
        restart(path + ".near_cache.enabled", it->near_cache.enabled, wanted.near_cache.enabled);
        restart(path + ".near_cache.max_bytes", it->near_cache.max_bytes,
                wanted.near_cache.max_bytes);
        restart(path + ".near_cache.max_ttl", it->near_cache.max_ttl, wanted.near_cache.max_ttl);
        apply(path + ".ttl", it->ttl, wanted.ttl);
        if (it->ttl_jitter != wanted.ttl_jitter) {
          plan_.applied.push_back(path + ".ttl_jitter: " + formatPercent(it->ttl_jitter) + " -> " +
                                  formatPercent(wanted.ttl_jitter));
          it->ttl_jitter = wanted.ttl_jitter;
        }
        apply(path + ".negative_ttl", it->negative_ttl, wanted.negative_ttl);
        apply(path + ".stampede.lease", it->stampede.lease, wanted.stampede.lease);
        if (it->stampede.early_refresh != wanted.stampede.early_refresh) {
          plan_.applied.push_back(fmt::format("{}.stampede.early_refresh: {:g} -> {:g}", path,
                                              it->stampede.early_refresh,
                                              wanted.stampede.early_refresh));
          it->stampede.early_refresh = wanted.stampede.early_refresh;
        }
        apply(path + ".stampede.stale_while_revalidate", it->stampede.stale_while_revalidate,
              wanted.stampede.stale_while_revalidate);
        continue;
      }
      addKeyspace(path, wanted);
    }
  }

  void addKeyspace(const std::string& path, const KeyspaceConfig& wanted) {
    auto& running = plan_.effective.keyspaces;
    if (live_.keyspaces.empty()) {
      plan_.not_applied.push_back(path +
                                  ": new, but Larder started without keyspaces (no PostgreSQL "
                                  "side): needs a restart");
      return;
    }
    for (const KeyspaceConfig& other : running) {
      if (overlaps(other.key, wanted.key)) {
        plan_.not_applied.push_back(path + ": new, but its key overlaps keyspace '" + other.name +
                                    "', which keeps serving: needs a restart");
        return;
      }
    }
    if (running.size() >= kMaxKeyspaces) {
      plan_.not_applied.push_back(path + ": new, but " + std::to_string(kMaxKeyspaces) +
                                  " keyspaces are running already: needs a restart");
      return;
    }
    plan_.applied.push_back(path + ": added (" + wanted.key + " -> " + wanted.table + ")");
    plan_.added.push_back(running.size());
    running.push_back(wanted);
  }

  const Config& live_;
  const Config& next_;
  ReloadPlan plan_;
};

}  // namespace

ReloadPlan planReload(const Config& live, const Config& next) { return Planner(live, next).run(); }

}  // namespace larder::config
