#pragma once
// Keeps a worker's NearCache right: Redis server-assisted invalidation in
// broadcast mode, over two connections of the worker's own.
//
//   subscriber: CLIENT SETNAME, CLIENT ID -> id; SUBSCRIBE __redis__:invalidate
//   tracker:    CLIENT SETNAME; then CLIENT TRACKING on REDIRECT <id> BCAST
//               PREFIX <each near-cached keyspace's prefix> ... NOLOOP
//   +OK -> the near cache is usable; every key written under a prefix, by
//   anyone, comes back as an invalidation message on the subscriber.
//
// Either connection lost (or silent: a PING each second, three unanswered is
// a loss), or a handshake step refused: the near cache is flushed and
// bypassed, both connections are closed, and the whole handshake starts again
// after a backoff (redis.reconnect_min doubling up to reconnect_max).
// Everything runs on the worker's thread.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "larder/cache/near_cache.hpp"
#include "larder/config/config.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::cache {

class NearCacheTracking : public std::enable_shared_from_this<NearCacheTracking> {
 public:
  using Clock = std::chrono::steady_clock;

  // Told whether invalidation is up; NearCache::setUsable when null. A
  // cluster's tracking per primary tells its set (cluster/near_tracking.hpp).
  using UsableFn = std::function<void(bool)>;

  // `config.address` is the Redis whose writes are tracked.
  NearCacheTracking(boost::asio::any_io_executor executor, const config::RedisConfig& config,
                    std::shared_ptr<boost::asio::ssl::context> tls, redis::BackendStats& stats,
                    NearCache& cache, int worker, UsableFn on_usable = nullptr);
  NearCacheTracking(const NearCacheTracking&) = delete;
  NearCacheTracking& operator=(const NearCacheTracking&) = delete;

  void start();
  void stop();
  // Once a second: heartbeat and handshake deadline.
  void tick(Clock::time_point now);

  bool up() const { return state_ == State::Up; }

 private:
  enum class State { Off, Handshake, Up, Waiting };
  enum Role : std::uint64_t { kSubscriber = 0, kTracker = 1 };
  enum Tag : std::uint64_t { kSetName, kClientId, kTracking, kPing };
  class Link;

  void connect();
  void onReply(std::uint64_t generation, Role role, std::uint64_t tag, std::string_view frame);
  void onClosed(std::uint64_t generation);
  void onStreamFrame(std::string_view frame);
  void enableTracking();
  void lost(std::string_view why);
  void closeConnections();

  boost::asio::any_io_executor executor_;
  const config::RedisConfig& config_;
  std::shared_ptr<boost::asio::ssl::context> tls_;  // redis.tls; null when off
  redis::BackendStats& stats_;
  NearCache& cache_;
  int worker_;
  UsableFn on_usable_;
  std::string prefixes_;  // for the log
  State state_ = State::Off;
  std::uint64_t generation_ = 0;  // events of older connections are ignored
  std::shared_ptr<redis::BackendConnection> subscriber_;
  std::shared_ptr<redis::BackendConnection> tracker_;
  std::shared_ptr<Link> subscriber_link_;
  std::shared_ptr<Link> tracker_link_;
  std::string subscriber_id_;
  Clock::time_point since_{};  // start of the handshake
  int unanswered_ = 0;         // heartbeat ticks without both PINGs answered
  bool sub_pong_ = true;
  bool tracker_pong_ = true;
  std::chrono::milliseconds backoff_{0};
  boost::asio::steady_timer retry_;
};

}  // namespace larder::cache
