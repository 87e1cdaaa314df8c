#pragma once
// The admin HTTP listener (Boost.Beast): /metrics (Prometheus text), /healthz
// (the process is up), /readyz (backends reachable), /config (effective
// config, secrets redacted). Runs on the io_context it is given.
#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "larder/config/config.hpp"

namespace larder::admin {

// What the admin endpoints report; implemented by the Server.
class AdminSource {
 public:
  virtual ~AdminSource() = default;
  virtual std::string metricsText() const = 0;  // Prometheus text exposition format
  // true when ready; otherwise `why` says what is missing (one line per reason)
  virtual bool ready(std::string& why) const = 0;
  virtual std::string effectiveConfig() const = 0;  // secrets redacted
};

class AdminServer {
 public:
  // Binds at once: throws std::system_error at start-up when it cannot.
  AdminServer(boost::asio::io_context& context, const config::Endpoint& endpoint,
              AdminSource& source, std::string auth_token = {});
  ~AdminServer();
  void start();
  void stop();
  unsigned short port() const;  // the bound port (useful with port 0 in tests)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace larder::admin
