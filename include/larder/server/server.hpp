#pragma once
// The process: a listener on the main thread that hands accepted sockets to
// worker threads round-robin, the workers, and an orderly shutdown on
// SIGTERM/SIGINT (stop accepting, let sessions finish, then stop).
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <vector>

#include "larder/common/counter.hpp"
#include "larder/config/config.hpp"
#include "larder/server/worker.hpp"

namespace larder::server {

class Server : public ServerContext {
 public:
  explicit Server(const config::Config& config);
  ~Server() override;

  // Binds the listener (throws on failure: start-up), runs until a stop signal
  // and the drain that follows. Returns the process exit code.
  int run();

  std::string larderInfoSection() const override;
  void clientClosed() override { clients_.fetch_sub(1, std::memory_order_relaxed); }

 private:
  boost::asio::awaitable<void> acceptLoop();
  void reject(boost::asio::ip::tcp::socket& socket);
  void beginShutdown();

  const config::Config& config_;
  boost::asio::io_context context_{1};
  boost::asio::ip::tcp::acceptor acceptor_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<std::size_t> clients_{0};
  std::uint64_t next_id_ = 1;
  Counter rejected_;
  Counter accept_errors_;
  std::chrono::steady_clock::time_point started_;
  bool stopping_ = false;
};

}  // namespace larder::server
