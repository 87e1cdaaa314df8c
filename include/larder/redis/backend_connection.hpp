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
// the stream sink in arrival order. With `pushes_only` (a RESP3 connection)
// only push frames ('>') go there and replies are matched as usual.
#include <atomic>
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
#include "larder/redis/client_identity.hpp"
#include "larder/redis/route.hpp"
#include "larder/resp/reply_scanner.hpp"

namespace larder::redis {

// Why a request got no reply from Redis: a typed failure, not a made-up
// error frame. `errorText()` words it for a client (common/errors.hpp style).
struct BackendFailure {
  enum class Kind : std::uint8_t {
    Unavailable,     // not connected (connecting failed, waiting to retry)
    ConnectionLost,  // the connection broke with the request in flight
    Closed,          // the connection was stopped (shutdown, a pinned connection dropped)
  };
  Kind kind;
  std::string_view detail;  // the last connection error, if any; valid during the call

  std::string errorText() const;
};

// Receives replies. `frame` is one complete RESP reply, valid during the call.
class ReplySink {
 public:
  virtual ~ReplySink() = default;
  virtual void deliver(std::uint64_t tag, std::string_view frame) = 0;
  // The request will get no reply. By default answered as an error reply;
  // sinks that act on the failure itself (fall back, fail a client) override it.
  virtual void fail(std::uint64_t tag, const BackendFailure& failure);
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

class BackendConnection final : public Route,
                                public std::enable_shared_from_this<BackendConnection> {
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
  // to retry (backoff) answers with an error at once. On a connection with a
  // client identity, a request `as` the other identity is preceded by an
  // AUTH that switches to it (checked, never seen by the sink).
  void send(std::string_view request, std::shared_ptr<ReplySink> sink, std::uint64_t tag,
            As as) override;
  void send(std::string_view request, std::shared_ptr<ReplySink> sink, std::uint64_t tag) {
    send(request, std::move(sink), tag, As::Client);
  }
  void sendFollowed(std::string_view request, std::string_view trailer,
                    std::shared_ptr<ReplySink> sink, std::uint64_t tag, As as) override;

  // Makes the connection's state in Redis the pool's again: RESET (it ends
  // MULTI, WATCH, tracking and subscriptions, and logs the connection out),
  // then the handshake's AUTH and SELECT. The replies are checked here;
  // anything else closes the connection. Requests sent after it run clean.
  void resetForPool();

  // Client traffic on this connection runs as `identity` (set before start()).
  void setClientIdentity(std::shared_ptr<const ClientIdentity> identity) {
    identity_ = std::move(identity);
  }

  // Pinned connections: their CLIENT ID in Redis, 0 before the handshake.
  std::uint64_t redisId() const { return redis_id_.load(std::memory_order_relaxed); }
  // Stream mode: every frame (or, with `pushes_only`, every push frame) goes
  // to `sink`; an empty pointer returns the connection to request/reply matching.
  void setStreamSink(std::shared_ptr<ReplySink> sink, bool pushes_only = false);
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

  bool ready() const override { return state_ == State::Ready; }
  bool sharded() const override { return false; }
  // Connections made so far by connections sharing these stats: a change
  // means a reconnect (possibly to another Redis).
  std::uint64_t connects() const { return stats_.connects.get(); }
  bool closed() const { return state_ == State::Closed || stopping_; }
  // Too many requests in flight: callers should wait before sending more, so
  // that Redis never buffers unbounded replies for us.
  bool saturated() const override {
    return pending_.size() >= static_cast<std::size_t>(config_.max_pending_per_connection);
  }

 private:
  enum class State { Idle, Connecting, Ready, Closed };
  struct Pending {
    std::shared_ptr<ReplySink> sink;  // null: a request of our own, checked here
    std::uint64_t tag;
    std::string_view expect{};  // our own request: the only acceptable reply
  };

  boost::asio::awaitable<void> run();
  boost::asio::awaitable<bool> connectOnce();
  boost::asio::awaitable<bool> tlsHandshake();
  boost::asio::awaitable<void> readLoop();
  // Writes out_ now (plain TCP, non-blocking), the rest asynchronously.
  void flushOut();
  void writeFailed(const boost::system::error_code& ec);
  // Shared connections: closes the connection when requests have waited
  // about redis.request_timeout with nothing read (a silent network),
  // failing every caller.
  boost::asio::awaitable<void> watchdog();
  void setKeepalive();
  // One read or a whole write, on the TLS stream when there is one.
  boost::asio::awaitable<std::pair<boost::system::error_code, std::size_t>> readSome(
      boost::asio::mutable_buffer into);
  void onFrame(std::string_view frame);
  void failPending(BackendFailure::Kind kind);
  void wakeWriter();
  void sealCoalescer();
  // Appends the AUTH that makes the next request run `as` (identity_ set).
  void switchTo(As as);
  void appendAuth(std::string& out, As as) const;
  // Queues a request of our own whose reply must be `expect`.
  void sendOwn(std::string_view request, std::string_view expect);

  boost::asio::any_io_executor executor_;
  const config::RedisConfig& config_;
  ConnectionKind kind_;
  // A pinned connection's CLIENT ID in Redis, asked in the handshake (CLIENT
  // UNBLOCK of the Larder client holding it); 0 until then.
  std::atomic<std::uint64_t> redis_id_{0};
  BackendStats& stats_;
  boost::asio::ip::tcp::socket socket_;
  // TLS: a fresh stream over socket_ per connection (an SSL object is not reused).
  std::shared_ptr<boost::asio::ssl::context> tls_context_;
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls_;
  State state_ = State::Idle;
  bool stopping_ = false;
  std::string out_;               // requests queued since the last write
  std::string writing_;           // the batch an asynchronous write is sending
  bool write_scheduled_ = false;  // a flushOut() is posted for the end of this turn
  bool write_active_ = false;     // an asynchronous write is in flight
  std::uint64_t generation_ = 0;  // bumped per connection: a late write completion is ignored
  std::deque<Pending> pending_;
  std::shared_ptr<ReplySink> stream_sink_;
  bool pushes_only_ = false;
  std::weak_ptr<ReplySink> owner_;
  ByteBuffer in_;
  resp::ReplyScanner scanner_;
  std::string last_error_;
  std::vector<std::string> preload_;
  std::shared_ptr<const ClientIdentity> identity_;  // null: one identity only
  As stream_as_ = As::Client;                       // who the next request on the stream runs as
  std::shared_ptr<RequestCoalescer> coalescer_;
  bool sealing_ = false;
  std::uint64_t reads_ = 0;  // successful reads, for the watchdog
};

}  // namespace larder::redis
