#pragma once
// One connection to the backend Redis, shared by many client sessions.
//
//   sessions --send(bytes, sink, tag)--> out_ --(one write per loop turn)--> Redis
//                                        pending_: FIFO of (sink, tag)
//   Redis --read--> ReplyScanner --frame--> pending_.front().sink->deliver(tag, frame)
//
// Redis answers a connection's requests in order, so replies are matched to
// their callers by position alone. When the connection dies, every caller still
// waiting gets an error reply at once; a shared connection then reconnects with
// backoff, while a pinned one (MULTI, pub/sub, blocking) reports to its owner.
//
// Stream mode (pub/sub): frames are not matched to requests; all of them go to
// the stream sink in arrival order.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "larder/common/byte_buffer.hpp"
#include "larder/common/counter.hpp"
#include "larder/config/config.hpp"
#include "larder/resp/reply_scanner.hpp"

namespace larder::redis {

// Receives replies. `frame` is one complete RESP reply, valid during the call.
class ReplySink {
 public:
  virtual ~ReplySink() = default;
  virtual void deliver(std::uint64_t tag, std::string_view frame) = 0;
  // A pinned connection closed (only called for pinned connections).
  virtual void backendClosed() {}
};

// Gathers requests of one event-loop turn into one (the write batch of
// behind writes). The connection seals it before any other request goes out,
// so callers still see their requests in the order they made them; it seals
// itself at the end of the turn. seal() may call send() on the connection.
class RequestCoalescer {
 public:
  virtual ~RequestCoalescer() = default;
  virtual void seal() = 0;
};

struct BackendStats {
  Counter connects;
  Counter connect_failures;
  Counter disconnects;
  Counter requests;
  Counter failed_requests;  // answered with an error because the backend was gone
};

enum class ConnectionKind { Shared, Pinned };

class BackendConnection : public std::enable_shared_from_this<BackendConnection> {
 public:
  // `tls`: the context from makeClientTlsContext (redis.tls.enabled), else null.
  BackendConnection(boost::asio::any_io_executor executor, const config::RedisConfig& config,
                    ConnectionKind kind, BackendStats& stats,
                    std::shared_ptr<boost::asio::ssl::context> tls = nullptr);
  ~BackendConnection();

  void start();
  // Closes the socket; waiting callers get an error. Idempotent.
  void stop();

  // Queues one complete RESP request; its reply goes to sink->deliver(tag, ...).
  // Requests queue while the connection is being made; a connection waiting
  // to retry (backoff) answers with an error at once.
  void send(std::string_view request, const std::shared_ptr<ReplySink>& sink, std::uint64_t tag);

  // Stream mode: every frame goes to `sink`; requests are sent untracked.
  // An empty pointer returns the connection to request/reply matching.
  void setStreamSink(std::shared_ptr<ReplySink> sink);
  // A pinned connection tells its owner when it closes (unless stop() was
  // called after the owner was cleared).
  void setOwner(std::weak_ptr<ReplySink> owner) { owner_ = std::move(owner); }
  void sendUntracked(std::string_view request);
  // Requests sent on every (re)connect before any caller's, their replies
  // checked and dropped: SCRIPT LOAD of the scripts the data path runs with
  // EVALSHA, so a restarted Redis has them again before they are needed.
  void setPreload(std::vector<std::string> requests) { preload_ = std::move(requests); }
  // At most one; sealed before every send() and sendUntracked().
  void setCoalescer(std::shared_ptr<RequestCoalescer> c) { coalescer_ = std::move(c); }
  RequestCoalescer* coalescer() const { return coalescer_.get(); }

  bool ready() const { return state_ == State::Ready; }
  // Connections made so far by connections sharing these stats: a change
  // means a reconnect (possibly to another Redis).
  std::uint64_t connects() const { return stats_.connects.get(); }
  bool closed() const { return state_ == State::Closed || stopping_; }
  // Too many requests in flight: callers should wait before sending more, so
  // that Redis never buffers unbounded replies for us.
  bool saturated() const {
    return pending_.size() >= static_cast<std::size_t>(config_.max_pending_per_connection);
  }

 private:
  enum class State { Idle, Connecting, Ready, Closed };
  struct Pending {
    std::shared_ptr<ReplySink> sink;
    std::uint64_t tag;
    std::chrono::steady_clock::time_point since;  // for redis.request_timeout
  };

  boost::asio::awaitable<void> run();
  boost::asio::awaitable<bool> connectOnce();
  boost::asio::awaitable<bool> tlsHandshake();
  boost::asio::awaitable<void> readLoop();
  boost::asio::awaitable<void> writeLoop();
  // Shared connections: closes the connection when the oldest request has
  // waited redis.request_timeout (a silent network), failing every caller.
  boost::asio::awaitable<void> watchdog();
  void setKeepalive();
  // One read or a whole write, on the TLS stream when there is one.
  boost::asio::awaitable<std::pair<boost::system::error_code, std::size_t>> readSome(
      boost::asio::mutable_buffer into);
  boost::asio::awaitable<boost::system::error_code> writeAll(boost::asio::const_buffer bytes);
  void onFrame(std::string_view frame);
  void failPending(std::string_view why);
  void wakeWriter();
  void sealCoalescer();

  boost::asio::any_io_executor executor_;
  const config::RedisConfig& config_;
  ConnectionKind kind_;
  BackendStats& stats_;
  boost::asio::ip::tcp::socket socket_;
  // TLS: a fresh stream over socket_ per connection (an SSL object is not reused).
  std::shared_ptr<boost::asio::ssl::context> tls_context_;
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls_;
  boost::asio::steady_timer wake_;
  State state_ = State::Idle;
  bool stopping_ = false;
  std::string out_;      // requests queued since the last write
  std::string writing_;  // the batch being written
  std::deque<Pending> pending_;
  std::shared_ptr<ReplySink> stream_sink_;
  std::weak_ptr<ReplySink> owner_;
  ByteBuffer in_;
  resp::ReplyScanner scanner_;
  std::string last_error_;
  std::vector<std::string> preload_;
  std::shared_ptr<RequestCoalescer> coalescer_;
  bool sealing_ = false;
};

}  // namespace larder::redis
