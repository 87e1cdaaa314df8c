#pragma once
// What a reload (SIGHUP, LARDER RELOAD) does with a newly loaded config: which
// changes apply to the running process, which need a restart (reported, and
// the running value kept), and which keyspaces are new. Pure, so the rules are
// unit-tested; the server (server/reload.cpp) carries the plan out.
//
// Applied live: log.level, log.format, idle_timeout, requirepass, users, limits.*,
// write_behind.max_queue / on_full / block_timeout, each keyspace's ttl,
// ttl_jitter and negative_ttl, new keyspaces, and tls.* but tls.listen (the
// TLS listener re-reads its certificate files on every reload). Everything else (listen,
// threads, admin, backlog, redis.*, postgres.*, read_through.*, the flusher's
// timing, a keyspace's key, table, shape, columns or write mode, removing a
// keyspace) needs a restart.
#include <cstddef>
#include <string>
#include <vector>

#include "larder/config/config.hpp"

namespace larder::config {

struct ReloadPlan {
  Config effective;                      // what runs once the reload is applied
  std::vector<std::string> applied;      // "keyspaces.users.ttl: 1h -> 1m"
  std::vector<std::string> not_applied;  // "listen: 127.0.0.1:6380 -> ...: needs a restart"
  std::vector<std::size_t> added;        // indexes into effective.keyspaces

  bool changed() const { return !applied.empty(); }
};

// `live` is the config in force, `next` the one just loaded (and validated).
ReloadPlan planReload(const Config& live, const Config& next);

}  // namespace larder::config
