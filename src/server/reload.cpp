// Config reload (SIGHUP, LARDER RELOAD): re-read the file, keep what cannot
// change live (reported), apply the rest without dropping a connection. It
// runs on the PostgreSQL thread when there is one (new keyspaces need their
// table read, and their flushers live there), on the main thread otherwise.
#include "larder/config/reload.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "larder/common/logging.hpp"
#include "larder/config/loader.hpp"
#include "larder/server/server.hpp"

namespace larder::server {

namespace asio = boost::asio;

asio::awaitable<std::string> readKeyspaces(const config::PostgresConfig& postgres,
                                           const std::vector<config::KeyspaceConfig>& wanted,
                                           int first_id, std::vector<cache::Keyspace>& out) {
  pg::Connection connection(co_await asio::this_coro::executor, pg::connectParams(postgres),
                            postgres.connect_timeout, postgres.statement_timeout);
  if (auto error = co_await connection.connect()) {
    co_return "cannot reach PostgreSQL to read table shapes: " + error.message;
  }
  int id = first_id;
  for (const auto& ks : wanted) {
    std::string schema, table, split_error;
    if (!pg::splitTableName(ks.table, schema, table, split_error)) {
      co_return "keyspace '" + ks.name + "': table: " + split_error;
    }
    auto [info, error] = co_await pg::readTable(connection, schema, table);
    if (error)
      co_return "keyspace '" + ks.name + "': reading table " + ks.table + ": " + error.message;
    if (!info) co_return "keyspace '" + ks.name + "': table " + ks.table + " does not exist";
    try {
      out.push_back(cache::buildKeyspace(id++, ks, *info));
    } catch (const cache::KeyspaceError& e) {
      co_return e.what();
    }
  }
  co_return std::string();
}

void Server::reload(std::function<void(ReloadResult)> done) {
  asio::any_io_executor executor = pg_thread_.joinable()
                                       ? asio::any_io_executor(pg_context_.get_executor())
                                       : asio::any_io_executor(context_.get_executor());
  asio::co_spawn(executor, runReload(std::move(done)), asio::detached);
}

asio::awaitable<void> Server::runReload(std::function<void(ReloadResult)> done) {
  ReloadResult result;
  auto finish = [&](ReloadResult r) {
    if (r.ok) {
      spdlog::info("reloaded {}: {} change(s) applied, {} not applied", r.source, r.applied.size(),
                   r.not_applied.size());
      for (const auto& line : r.applied) spdlog::info("reload: applied {}", line);
      for (const auto& line : r.not_applied) spdlog::warn("reload: not applied {}", line);
    } else {
      spdlog::error("reload rejected, keeping the running config: {}", r.error);
    }
    done(std::move(r));
  };
  const config::Config& live = config();
  result.source = live.source;
  if (reloading_) {
    result.error = "a reload is already running";
    finish(std::move(result));
    co_return;
  }
  if (live.source.empty() || live.source.front() == '<') {
    result.error = "the running config was not loaded from a file";
    finish(std::move(result));
    co_return;
  }
  reloading_ = true;
  config::Config next;
  try {
    next = config::loadConfigFile(live.source);
  } catch (const std::exception& e) {  // ConfigError, or the file cannot be read
    result.error = e.what();
    reloading_ = false;
    finish(std::move(result));
    co_return;
  }
  config::ReloadPlan plan = config::planReload(live, next);

  // New keyspaces must fit their tables before anything is applied.
  std::vector<config::KeyspaceConfig> wanted;
  for (std::size_t i : plan.added) wanted.push_back(plan.effective.keyspaces[i]);
  std::vector<cache::Keyspace> built;
  if (!wanted.empty()) {
    std::string failure =
        co_await readKeyspaces(live.postgres, wanted, static_cast<int>(keyspaces_.size()), built);
    if (!failure.empty()) {
      result.error = live.source + ": " + failure;
      reloading_ = false;
      finish(std::move(result));
      co_return;
    }
  }
  // Every reload re-reads the TLS listener's files: rotated certificates take
  // effect for new connections. Unusable files reject the whole reload.
  if (std::string failure = reloadTlsContext(plan.effective.tls); !failure.empty()) {
    result.error = live.source + ": " + failure;
    reloading_ = false;
    finish(std::move(result));
    co_return;
  }
  if (config_.tls.listen) plan.applied.push_back("tls: certificate files re-read");
  if (plan.effective.log_level != live.log_level) setLogLevel(plan.effective.log_level);
  if (plan.effective.log_format != live.log_format) {
    setLogFormat(plan.effective.log_format == config::LogFormat::Json);
  }
  for (std::size_t i = 0; i < live.keyspaces.size(); ++i) {
    keyspaces_.mutableAt(i).retune(plan.effective.keyspaces[i]);
  }
  for (auto& ks : built) {
    const cache::Keyspace& added = keyspaces_.add(std::move(ks));
    if (writes_) writes_->addKeyspace(added);  // none on a cluster (read-only keyspaces)
    spdlog::info("keyspace {}: {} -> {}.{} ({} shape, {} value column(s)), added by reload",
                 added.name(), added.config.key, added.schema, added.table,
                 added.isHash() ? "hash" : "string", added.value_columns.size());
  }
  {
    std::lock_guard lock(generations_mutex_);
    generations_.push_back(std::make_unique<const config::Config>(std::move(plan.effective)));
    current_.store(generations_.back().get(), std::memory_order_release);
  }
  reloads_.add();
  result.ok = true;
  result.applied = std::move(plan.applied);
  result.not_applied = std::move(plan.not_applied);
  reloading_ = false;
  finish(std::move(result));
}

}  // namespace larder::server
