// larder: a caching proxy that speaks the Redis protocol.
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "larder/cache/invalidator.hpp"
#include "larder/cluster/discovery.hpp"
#include "larder/common/logging.hpp"
#include "larder/config/loader.hpp"
#include "larder/redis/tls_client.hpp"
#include "larder/server/server.hpp"

namespace {

void usage(std::FILE* out) {
  std::fputs(
      "usage: larder --config FILE [--check-config | --install-triggers] [--log-level LEVEL]\n"
      "       larder --version\n"
      "  --config FILE     YAML configuration (see config/larder.yaml)\n"
      "  --check-config    validate the configuration, print a summary and exit\n"
      "  --install-triggers  create the triggers that NOTIFY invalidation.listen of row\n"
      "                    changes on every keyspace's table, then exit\n"
      "  --log-level LEVEL trace|debug|info|warn|error|critical|off (overrides log.level)\n",
      out);
}

// --install-triggers: reads the keyspaces' tables, then runs the trigger SQL
// (docs/invalidation.md) in one transaction.
int installTriggers(const larder::config::Config& config) {
  namespace asio = boost::asio;
  if (config.keyspaces.empty()) {
    std::fprintf(stderr, "larder: %s: no keyspaces: nothing to install\n", config.source.c_str());
    return 2;
  }
  if (config.invalidation.listen_channel.empty()) {
    std::fprintf(stderr, "larder: %s: invalidation.listen: set the channel the triggers notify\n",
                 config.source.c_str());
    return 2;
  }
  asio::io_context io;
  std::string failure;
  std::vector<larder::cache::Keyspace> built;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        failure =
            co_await larder::server::readKeyspaces(config.postgres, config.keyspaces, 0, built);
        if (!failure.empty()) co_return;
        std::vector<const larder::cache::Keyspace*> keyspaces;
        for (const auto& ks : built) keyspaces.push_back(&ks);
        const std::string sql =
            "BEGIN;\n" + larder::cache::triggerSql(keyspaces, config.invalidation.listen_channel) +
            "COMMIT;";
        larder::pg::Connection connection(co_await asio::this_coro::executor,
                                          larder::pg::connectParams(config.postgres),
                                          config.postgres.connect_timeout, larder::pg::Millis(0));
        if (auto error = co_await connection.connect()) {
          failure = "cannot connect to PostgreSQL: " + error.message;
          co_return;
        }
        auto outcome = co_await connection.script(sql);
        if (!outcome.ok()) failure = "installing the triggers failed: " + outcome.error.message;
      },
      asio::detached);
  io.run();
  if (!failure.empty()) {
    spdlog::error("{}", failure);
    return 1;
  }
  for (const auto& ks : built) {
    spdlog::info("keyspace {}: trigger on {}.{} notifies channel {}", ks.name(), ks.schema,
                 ks.table, config.invalidation.listen_channel);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string log_level;
  bool check_only = false;
  bool install_triggers = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg == "--log-level" && i + 1 < argc) {
      log_level = argv[++i];
    } else if (arg == "--check-config") {
      check_only = true;
    } else if (arg == "--install-triggers") {
      install_triggers = true;
    } else if (arg == "--version") {
      std::printf("larder %s\n", LARDER_VERSION);
      return 0;
    } else if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "larder: unknown argument '%s'\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "larder: no configuration given\n");
    usage(stderr);
    return 2;
  }

  larder::config::Config config;
  try {
    config = larder::config::loadConfigFile(config_path);
  } catch (const larder::config::ConfigError& e) {
    std::fprintf(stderr, "larder: %s\n", e.what());
    return 2;
  }
  if (check_only) {
    std::printf("%s: ok\n%s", config_path.c_str(), larder::config::redactedSummary(config).c_str());
    if (config.redis.clusterMode()) {
      // Which nodes and slots the seeds lead to; an unreachable cluster is
      // reported, not an invalid config.
      spdlog::set_level(spdlog::level::off);
      try {
        const auto found = larder::cluster::discover(
            config.redis, larder::redis::makeClientTlsContext(config.redis.tls));
        if (found.topology) {
          std::printf("cluster: %s\n", found.topology->describe().c_str());
        } else {
          std::string why;
          for (const auto& p : found.problems) why += (why.empty() ? "" : "; ") + p;
          std::printf("cluster: no map agreed: %s\n", why.c_str());
        }
      } catch (const std::exception& e) {
        std::printf("cluster: not checked: %s\n", e.what());
      }
    }
    return 0;
  }

  try {
    larder::setupLogging(log_level.empty() ? config.log_level : log_level,
                         config.log_format == larder::config::LogFormat::Json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "larder: --log-level: %s\n", e.what());
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  if (install_triggers) return installTriggers(config);

  try {
    larder::server::Server server(config);
    return server.run();
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return 1;
  }
}
