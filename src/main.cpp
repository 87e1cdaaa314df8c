// larder: a caching proxy that speaks the Redis protocol.
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "larder/common/logging.hpp"
#include "larder/config/loader.hpp"
#include "larder/server/server.hpp"

namespace {

void usage(std::FILE* out) {
  std::fputs(
      "usage: larder --config FILE [--check-config] [--log-level LEVEL]\n"
      "       larder --version\n"
      "  --config FILE     YAML configuration (see config/larder.yaml)\n"
      "  --check-config    validate the configuration, print a summary and exit\n"
      "  --log-level LEVEL trace|debug|info|warn|error|critical|off (overrides log.level)\n",
      out);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string log_level;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg == "--log-level" && i + 1 < argc) {
      log_level = argv[++i];
    } else if (arg == "--check-config") {
      check_only = true;
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

  try {
    larder::server::Server server(config);
    return server.run();
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return 1;
  }
}
