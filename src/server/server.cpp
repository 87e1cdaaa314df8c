#include "larder/server/server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <thread>

namespace larder::server {

namespace asio = boost::asio;
using asio::ip::tcp;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr auto kShutdownGrace = std::chrono::seconds(10);

tcp::endpoint resolveListen(const config::Endpoint& ep) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(ep.host, ec);
  if (ec) {
    asio::io_context tmp;
    tcp::resolver resolver(tmp);
    auto results = resolver.resolve(ep.host, std::to_string(ep.port));
    return results.begin()->endpoint();
  }
  return {address, ep.port};
}

}  // namespace

Server::Server(const config::Config& config)
    : config_(config), acceptor_(context_), started_(std::chrono::steady_clock::now()) {
  int threads = config.threads > 0 ? config.threads
                                   : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::max(1, threads);
  for (int i = 0; i < threads; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, config_, *this));
  }
}

Server::~Server() {
  for (auto& w : workers_) w->join();
}

int Server::run() {
  const tcp::endpoint endpoint = resolveListen(config_.listen);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(config_.backlog);

  for (auto& w : workers_) w->start();
  spdlog::info("larder {} listening on {} with {} worker thread(s); redis backend {} db {}",
               LARDER_VERSION, config_.listen.toString(), workers_.size(),
               config_.redis.address.toString(), config_.redis.db);

  asio::signal_set signals(context_, SIGINT, SIGTERM);
  signals.async_wait([this](boost::system::error_code ec, int signo) {
    if (ec) return;
    spdlog::info("signal {} received: no new connections; finishing in-flight requests", signo);
    beginShutdown();
  });
  asio::co_spawn(context_, acceptLoop(), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::critical("listener stopped by an exception: {}", ex.what());
    }
  });
  context_.run();
  for (auto& w : workers_) w->join();
  spdlog::info("larder stopped");
  return 0;
}

void Server::beginShutdown() {
  if (stopping_) return;
  stopping_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (auto& w : workers_) w->beginShutdown();
  // Poll until every client is gone or the grace period ends, then stop.
  auto deadline = std::chrono::steady_clock::now() + kShutdownGrace;
  auto timer = std::make_shared<asio::steady_timer>(context_);
  auto poll = std::make_shared<std::function<void()>>();
  *poll = [this, timer, deadline, poll] {
    const bool drained = clients_.load(std::memory_order_relaxed) == 0;
    if (drained || std::chrono::steady_clock::now() >= deadline) {
      if (!drained) {
        spdlog::warn("shutdown grace period over; closing {} client(s)",
                     clients_.load(std::memory_order_relaxed));
      }
      for (auto& w : workers_) w->stop();
      *poll = nullptr;  // break the self-reference
      return;
    }
    timer->expires_after(std::chrono::milliseconds(20));
    timer->async_wait([poll](boost::system::error_code) {
      if (*poll) (*poll)();
    });
  };
  (*poll)();
}

asio::awaitable<void> Server::acceptLoop() {
  std::size_t next_worker = 0;
  while (acceptor_.is_open()) {
    Worker& worker = *workers_[next_worker];
    auto [ec, socket] =
        co_await acceptor_.async_accept(
            asio::any_io_executor(worker.context().get_executor()), kUseTuple);
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      accept_errors_.add();
      // Out of descriptors or memory: pause instead of spinning on accept.
      if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
          ec == asio::error::no_memory || ec.value() == ENFILE) {
        spdlog::error("accept failed: {}; pausing 100 ms", ec.message());
        asio::steady_timer pause(context_, std::chrono::milliseconds(100));
        co_await pause.async_wait(kUseTuple);
      }
      continue;
    }
    if (clients_.load(std::memory_order_relaxed) >= config_.limits.maxclients) {
      reject(socket);
      continue;
    }
    clients_.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t id = next_id_++;
    asio::post(worker.context(), [&worker, s = std::move(socket), id]() mutable {
      worker.adopt(std::move(s), id);
    });
    next_worker = (next_worker + 1) % workers_.size();
  }
}

void Server::reject(tcp::socket& socket) {
  rejected_.add();
  static const std::string error = "-ERR max number of clients reached\r\n";
  boost::system::error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(asio::buffer(error), ec);
  socket.close(ec);
}

std::string Server::larderInfoSection() const {
  std::uint64_t connections_total = 0, commands = 0, protocol_errors = 0, output_closes = 0,
                idle_closes = 0, pinned = 0, pinned_total = 0, backend_connects = 0,
                backend_failed = 0;
  bool backend_up = true;
  for (const auto& w : workers_) {
    const auto& s = w->stats();
    connections_total += s.connections_total.get();
    commands += s.commands.get();
    protocol_errors += s.protocol_errors.get();
    output_closes += s.output_limit_closes.get();
    idle_closes += s.idle_closes.get();
    pinned += s.pinned_current.get();
    pinned_total += s.pinned_total.get();
    backend_connects += s.backend.connects.get();
    backend_failed += s.backend.failed_requests.get();
    backend_up = backend_up && w->backendReady();
  }
  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now() - started_)
                          .count();
  std::string s = "# Larder\r\n";
  auto line = [&s](std::string_view key, const auto& value) {
    s.append(key);
    s += ':';
    if constexpr (std::is_convertible_v<decltype(value), std::string_view>) {
      s.append(value);
    } else {
      s += std::to_string(value);
    }
    s += "\r\n";
  };
  line("larder_version", LARDER_VERSION);
  line("uptime_in_seconds", uptime);
  line("worker_threads", workers_.size());
  line("connected_clients", clients_.load(std::memory_order_relaxed));
  line("total_connections_received", connections_total);
  line("rejected_connections", rejected_.get());
  line("total_commands_processed", commands);
  line("protocol_errors", protocol_errors);
  line("output_limit_disconnections", output_closes);
  line("idle_disconnections", idle_closes);
  line("pinned_backend_connections", pinned);
  line("pinned_backend_connections_total", pinned_total);
  line("backend_redis_address", config_.redis.address.toString());
  line("backend_redis_status", backend_up ? "ok" : "down");
  line("backend_redis_connects", backend_connects);
  line("backend_redis_failed_requests", backend_failed);
  return s;
}

}  // namespace larder::server
