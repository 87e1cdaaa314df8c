#include "larder/cluster/discovery.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>

#include "larder/redis/backend_connection.hpp"

namespace larder::cluster {

namespace asio = boost::asio;

namespace {

constexpr std::string_view kClusterShards = "*2\r\n$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n";

// Keeps the one reply (or failure) and wakes the waiting coroutine.
class Capture : public redis::ReplySink {
 public:
  explicit Capture(asio::steady_timer& wake) : wake_(wake) {}
  void deliver(std::uint64_t, std::string_view frame) override {
    frame_.assign(frame);
    done_ = true;
    wake_.cancel();
  }
  void fail(std::uint64_t, const redis::BackendFailure& failure) override {
    error_ = failure.errorText();
    done_ = true;
    wake_.cancel();
  }
  bool done() const { return done_; }
  const std::string& frame() const { return frame_; }
  const std::string& error() const { return error_; }

 private:
  asio::steady_timer& wake_;
  std::string frame_;
  std::string error_;
  bool done_ = false;
};

}  // namespace

Discovery discover(const config::RedisConfig& config, std::shared_ptr<asio::ssl::context> tls) {
  asio::io_context io;
  Discovery out;
  redis::BackendStats stats;
  std::deque<config::RedisConfig> configs;  // each connection keeps a reference
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        TopologyVote vote(config.cluster.seeds);
        while (const std::optional<config::Endpoint> node = vote.next()) {
          configs.push_back(config);
          configs.back().address = *node;
          configs.back().cluster = {};
          asio::steady_timer wake(io);
          auto capture = std::make_shared<Capture>(wake);
          auto c = std::make_shared<redis::BackendConnection>(
              io.get_executor(), configs.back(), redis::ConnectionKind::Pinned, stats, tls);
          c->start();
          c->send(kClusterShards, capture, 1, redis::As::Larder);
          if (!capture->done()) {
            wake.expires_after(config.connect_timeout + std::chrono::seconds(1));
            co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
          }
          c->stop();
          if (!capture->done()) {
            out.problems.push_back(node->toString() + ": no answer");
            vote.answer(*node, std::nullopt);
            continue;
          }
          if (!capture->error().empty()) {
            out.problems.push_back(node->toString() + ": " + capture->error());
            vote.answer(*node, std::nullopt);
            continue;
          }
          Topology t;
          if (std::string error = parseShards(capture->frame(), *node, config.tls.enabled, t);
              !error.empty()) {
            out.problems.push_back(node->toString() + ": " + error);
            vote.answer(*node, std::nullopt);
            continue;
          }
          vote.answer(*node, std::move(t));
        }
        if (vote.agreed()) {
          out.topology = vote.topology();
        } else if (vote.answers() > 0) {
          out.problems.push_back("the nodes that answered did not agree on the slots");
        }
      },
      asio::detached);
  io.run();
  return out;
}

}  // namespace larder::cluster
