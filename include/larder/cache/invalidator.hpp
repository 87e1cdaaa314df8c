#pragma once
// Invalidation on the PostgreSQL thread (docs/invalidation.md):
//
// - From PostgreSQL: LISTEN on `invalidation.listen`. The trigger that
//   `larder --install-triggers` puts on each mapped table NOTIFYs the primary
//   key of every row other programs insert, update or delete; each keyspace on
//   that table drops the key from Redis (the near caches follow through Redis'
//   tracking) and forgets any load of it in flight. Notifications missed while
//   the listening connection was down cannot be trusted away: on every
//   (re)connect the keyspaces' cached keys are dropped.
// - Explicit: LARDER INVALIDATE <ks> [key ...] | MATCH <pattern>, or the whole
//   keyspace, by SCAN + UNLINK in pages (Redis is never blocked by a big DEL).
// - Every key dropped is PUBLISHed on `invalidation.publish` when set.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "larder/cache/keyspace.hpp"
#include "larder/cache/loader.hpp"
#include "larder/common/counter.hpp"
#include "larder/config/config.hpp"
#include "larder/pg/connection.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::cache {

struct InvalidatorStats {
  Counter notifications;  // NOTIFYs received
  Counter bad_payloads;   // NOTIFYs that named no mapped row
  Counter keys_dropped;   // cache keys unlinked (all causes)
  Counter resyncs;        // whole-keyspace drops after (re)connecting LISTEN
  Counter listen_errors;  // LISTEN connection failures
  Counter listening;      // 1 while LISTENing (a gauge)
  Counter probes;         // SELECT 1 sent on a LISTEN connection silent for postgres.keepalive
};

// A NOTIFY payload from the trigger: {"t":"schema.table","k":{"col":"text",...}}.
struct RowChange {
  std::string table;                                     // schema.table
  std::vector<std::pair<std::string, std::string>> key;  // column -> text
};
// Parses a payload; nullopt when it is not one (bad payloads are counted, never fatal).
std::optional<RowChange> parseRowChange(std::string_view payload);
// The Redis key of `ks` for a row, or nullopt when the row lacks a key column.
std::optional<std::string> keyFor(const Keyspace& ks, const RowChange& change);

// The SQL `--install-triggers` runs for the keyspaces' tables (idempotent).
std::string triggerSql(const std::vector<const Keyspace*>& keyspaces, const std::string& channel);

class Invalidator {
 public:
  Invalidator(boost::asio::io_context& context, Loader& loader, const KeyspaceRegistry& registry,
              const config::Config& config, std::shared_ptr<redis::Route> redis);
  ~Invalidator();

  void start();
  void stop();

  // LARDER INVALIDATE args (without "LARDER"); any thread; `done` gets the
  // RESP reply, on the PostgreSQL thread.
  void command(std::vector<std::string> args, std::function<void(std::string)> done);
  const InvalidatorStats& stats() const { return stats_; }

 private:
  boost::asio::awaitable<void> listen();
  boost::asio::awaitable<void> apply(const std::vector<pg::Notification>& batch);
  // Drops `keys` (already checked against their keyspace) and publishes them.
  boost::asio::awaitable<bool> drop(std::vector<std::string> keys);
  // Drops every cached key of `ks` matching `pattern` (its prefix when empty);
  // returns the count, or -1 when Redis failed.
  boost::asio::awaitable<long long> dropMatching(const Keyspace& ks, std::string pattern);
  boost::asio::awaitable<void> runCommand(std::vector<std::string> args,
                                          std::function<void(std::string)> done);

  boost::asio::io_context& context_;
  Loader& loader_;
  const KeyspaceRegistry& registry_;
  const config::Config& config_;
  std::shared_ptr<redis::Route> redis_;
  std::unique_ptr<pg::Connection> listener_;
  boost::asio::steady_timer backoff_;
  bool stopping_ = false;
  InvalidatorStats stats_;
};

}  // namespace larder::cache
