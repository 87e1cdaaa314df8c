#include "larder/redis/backend_connection.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <random>
#include <vector>

#include "larder/redis/tls_client.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::redis {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using asio::ip::tcp;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr std::size_t kReadChunk = 16 * 1024;
constexpr std::string_view kOk = "+OK\r\n";

std::chrono::milliseconds jittered(std::chrono::milliseconds base) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::uniform_int_distribution<long long> dist(base.count() / 2, base.count());
  return std::chrono::milliseconds(dist(rng));
}

}  // namespace

BackendConnection::BackendConnection(asio::any_io_executor executor,
                                     const config::RedisConfig& config, ConnectionKind kind,
                                     BackendStats& stats, std::shared_ptr<asio::ssl::context> tls)
    : executor_(executor),
      config_(config),
      kind_(kind),
      stats_(stats),
      socket_(executor),
      tls_context_(std::move(tls)),
      in_(kind == ConnectionKind::Shared ? 64 * 1024 : 4 * 1024) {}

BackendConnection::~BackendConnection() = default;

void BackendConnection::start() {
  state_ = State::Connecting;
  asio::co_spawn(
      executor_, [self = shared_from_this()] { return self->run(); },
      [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("redis backend connection task failed: {}", ex.what());
        }
      });
}

std::string BackendFailure::errorText() const {
  std::string text;
  switch (kind) {
    case Kind::Unavailable:
      text = "ERR Larder: Redis backend unavailable";
      break;
    case Kind::ConnectionLost:
      text = "ERR Larder: Redis backend connection lost";
      break;
    case Kind::Closed:
      text = "ERR Larder: Redis backend connection closed";
      break;
  }
  if (!detail.empty()) text += ": " + std::string(detail);
  return text;
}

void ReplySink::fail(std::uint64_t tag, const BackendFailure& failure) {
  deliver(tag, resp::errorReply(failure.errorText()));
}

void BackendConnection::stop() {
  if (stopping_) return;
  stopping_ = true;
  boost::system::error_code ignored;
  socket_.close(ignored);
  failPending(BackendFailure::Kind::Closed);
}

void BackendConnection::send(std::string_view request, std::shared_ptr<ReplySink> sink,
                             std::uint64_t tag, As as) {
  sealCoalescer();
  stats_.requests.add();
  // While connecting, requests wait (bounded by connect_timeout: a failed
  // attempt fails them); between attempts, during backoff, they fail at once.
  const bool accepting = state_ == State::Ready || state_ == State::Connecting;
  if (!accepting || stopping_) {
    stats_.failed_requests.add();
    sink->fail(tag, BackendFailure{BackendFailure::Kind::Unavailable, last_error_});
    return;
  }
  wakeWriter();
  if (identity_ && as != stream_as_) switchTo(as);
  pending_.push_back(Pending{std::move(sink), tag});
  out_.append(request);
}

namespace {

// The replies of a request and its trailer, as one *2 reply (Route::sendFollowed).
class FollowedSink final : public ReplySink {
 public:
  FollowedSink(std::shared_ptr<ReplySink> to, std::uint64_t tag) : to_(std::move(to)), tag_(tag) {}
  void deliver(std::uint64_t which, std::string_view frame) override {
    if (which == 0) {
      held_.assign(frame);
      answered_ = true;
      return;
    }
    if (!answered_) return;  // the request failed: its failure answered
    std::string both = "*2\r\n";
    both.append(held_).append(frame);
    to_->deliver(tag_, both);
  }
  void fail(std::uint64_t which, const BackendFailure& failure) override {
    if (which == 0) {
      to_->fail(tag_, failure);
    } else {
      deliver(which, resp::errorReply(failure.errorText()));
    }
  }

 private:
  std::shared_ptr<ReplySink> to_;
  std::uint64_t tag_;
  std::string held_;
  bool answered_ = false;
};

}  // namespace

void BackendConnection::sendFollowed(std::string_view request, std::string_view trailer,
                                     std::shared_ptr<ReplySink> sink, std::uint64_t tag, As as) {
  auto both = std::make_shared<FollowedSink>(std::move(sink), tag);
  send(request, both, 0, as);
  send(trailer, both, 1, as);
}

void BackendConnection::appendAuth(std::string& out, As as) const {
  if (as == As::Client) {
    resp::appendMultibulk(out, {"AUTH", identity_->user, identity_->password});
  } else {
    // The configured user; "default" when only a password (or none) is set:
    // a nopass default user takes any password.
    const std::string_view user =
        config_.username.empty() ? std::string_view("default") : std::string_view(config_.username);
    resp::appendMultibulk(out, {"AUTH", user, config_.password});
  }
}

void BackendConnection::switchTo(As as) {
  std::string auth;
  appendAuth(auth, as);
  sendOwn(auth, kOk);
  stream_as_ = as;
}

void BackendConnection::sendOwn(std::string_view request, std::string_view expect) {
  wakeWriter();
  pending_.push_back(Pending{nullptr, 0, expect});
  out_.append(request);
}

void BackendConnection::resetForPool() {
  if (state_ != State::Ready || stopping_) return;
  sendOwn("*1\r\n$5\r\nRESET\r\n", "+RESET\r\n");
  std::string request;
  if (identity_) {
    appendAuth(request, As::Client);
  } else if (!config_.password.empty()) {
    appendAuth(request, As::Larder);
  }
  if (!request.empty()) sendOwn(request, kOk);
  stream_as_ = As::Client;
  if (config_.db != 0) {
    request.clear();
    const std::string db = std::to_string(config_.db);
    resp::appendMultibulk(request, {"SELECT", db});
    sendOwn(request, kOk);
  }
}

void BackendConnection::setStreamSink(std::shared_ptr<ReplySink> sink, bool pushes_only) {
  stream_sink_ = std::move(sink);
  pushes_only_ = pushes_only;
}

void BackendConnection::sendUntracked(std::string_view request) {
  sealCoalescer();
  stats_.requests.add();
  if (stopping_ || state_ == State::Closed) return;  // the stream sink learns via backendClosed
  wakeWriter();
  out_.append(request);
}

void BackendConnection::sealCoalescer() {
  // Requests gathered earlier in this turn go out before this one.
  if (!coalescer_ || sealing_) return;
  sealing_ = true;
  coalescer_->seal();
  sealing_ = false;
}

void BackendConnection::wakeWriter() {
  // The first request of a loop turn schedules one write at the end of the
  // turn; later ones (from any session) join it.
  if (write_scheduled_ || write_active_ || !out_.empty()) return;
  write_scheduled_ = true;
  asio::post(executor_, [self = shared_from_this()] {
    self->write_scheduled_ = false;
    self->flushOut();
  });
}

void BackendConnection::failPending(BackendFailure::Kind kind) {
  if (pending_.empty()) return;
  // Deliveries may re-enter send() on this connection; take the list first.
  std::deque<Pending> failed;
  failed.swap(pending_);
  const std::string detail = kind == BackendFailure::Kind::Closed ? std::string() : last_error_;
  for (auto& p : failed) {
    if (!p.sink) continue;  // an identity switch of ours
    stats_.failed_requests.add();
    p.sink->fail(p.tag, BackendFailure{kind, detail});
  }
}

asio::awaitable<void> BackendConnection::run() {
  auto backoff = config_.reconnect_min;
  while (!stopping_) {
    state_ = State::Connecting;
    const bool connected = co_await connectOnce();
    if (connected) {
      state_ = State::Ready;
      last_error_.clear();
      stats_.connects.add();
      backoff = config_.reconnect_min;
      flushOut();  // what was sent while connecting
      if (kind_ == ConnectionKind::Shared && config_.request_timeout.count() > 0) {
        co_await (readLoop() || watchdog());
      } else {
        co_await readLoop();
      }
      stats_.disconnects.add();
      if (!stopping_)
        spdlog::warn("redis backend {}: connection lost: {}", config_.address.toString(),
                     last_error_);
    } else {
      stats_.connect_failures.add();
    }
    boost::system::error_code ignored;
    socket_.close(ignored);
    ++generation_;  // a write still in flight belongs to the old connection
    out_.clear();
    // Requests queued from now on follow the next handshake, which ends as the
    // client. (Not reset as a connection attempt begins: a request `as` Larder
    // may be queued, with its switch, between start() and the first attempt.)
    stream_as_ = As::Client;
    in_ = ByteBuffer(in_.capacity() ? in_.capacity() : 4096);
    scanner_.reset();
    // Requests queued while a connection attempt failed were never written
    // (the handshake goes first): unavailable, safe to send again (the
    // cluster router does); only a broken connection may have run them.
    failPending(connected ? BackendFailure::Kind::ConnectionLost
                          : BackendFailure::Kind::Unavailable);
    if (kind_ == ConnectionKind::Pinned) break;
    if (stopping_) break;
    state_ = State::Idle;
    asio::steady_timer timer(executor_, jittered(backoff));
    co_await timer.async_wait(kUseTuple);
    backoff = std::min(backoff * 2, config_.reconnect_max);
  }
  state_ = State::Closed;
  stream_sink_.reset();
  if (auto owner = owner_.lock()) owner->backendClosed();
}

asio::awaitable<bool> BackendConnection::tlsHandshake() {
  tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, *tls_context_);
  const std::string name = tlsServerName(config_);
  // SNI only for names; the certificate must match the name or the IP address.
  boost::system::error_code ignored;
  asio::ip::make_address(name, ignored);
  if (ignored) SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str());
  tls_->set_verify_callback(asio::ssl::host_name_verification(name));
  asio::steady_timer deadline(executor_, config_.connect_timeout);
  auto result = co_await (tls_->async_handshake(asio::ssl::stream_base::client, kUseTuple) ||
                          deadline.async_wait(kUseTuple));
  std::string error;
  if (result.index() == 1) {
    error = "TLS handshake with " + config_.address.toString() + " timed out";
  } else if (const boost::system::error_code ec = std::get<0>(std::get<0>(result)); ec) {
    error = "TLS handshake with " + config_.address.toString() + ": " + ec.message();
    const long verify = SSL_get_verify_result(tls_->native_handle());
    if (verify != X509_V_OK) {
      error += " (" + std::string(X509_verify_cert_error_string(verify)) + "; expected name " +
               name + ")";
    }
  }
  if (error.empty()) co_return true;
  // Once per distinct failure: a misconfiguration is loud, a retry loop is not.
  if (error != last_error_) spdlog::warn("redis backend {}: {}", config_.address.toString(), error);
  last_error_ = error;
  co_return false;
}

asio::awaitable<bool> BackendConnection::connectOnce() {
  tls_.reset();  // the previous connection's, if any: its operations have ended
  tcp::resolver resolver(executor_);
  auto [rec, endpoints] = co_await resolver.async_resolve(
      config_.address.host, std::to_string(config_.address.port), kUseTuple);
  if (rec) {
    last_error_ = "resolve " + config_.address.host + ": " + rec.message();
    co_return false;
  }
  asio::steady_timer deadline(executor_, config_.connect_timeout);
  auto result = co_await (asio::async_connect(socket_, endpoints, kUseTuple) ||
                          deadline.async_wait(kUseTuple));
  if (result.index() == 1) {
    last_error_ = "connect to " + config_.address.toString() + " timed out";
    co_return false;
  }
  auto [cec, ep] = std::get<0>(result);
  if (cec) {
    last_error_ = "connect to " + config_.address.toString() + ": " + cec.message();
    co_return false;
  }
  // stop() may have closed the socket as the connect completed: an error
  // here, never an exception out of the connection's task.
  boost::system::error_code oec;
  socket_.set_option(tcp::no_delay(true), oec);
  if (!oec) socket_.non_blocking(true, oec);  // flushOut() writes without waiting
  if (oec) {
    last_error_ = "connect to " + config_.address.toString() + ": " + oec.message();
    co_return false;
  }
  setKeepalive();
  if (tls_context_) {
    const bool handshaken = co_await tlsHandshake();
    if (!handshaken) co_return false;
  }

  // Handshake: AUTH and SELECT from config, answered before any client
  // request; with a client identity, the client user is (re)made and the
  // connection switches to it.
  std::string hello;
  std::size_t expected = 0;
  if (!config_.password.empty()) {
    std::vector<std::string_view> auth{"AUTH"};
    if (!config_.username.empty()) auth.push_back(config_.username);
    auth.push_back(config_.password);
    resp::appendMultibulk(hello, auth);
    ++expected;
  }
  if (identity_) {
    hello += identity_->setuser_request;
    appendAuth(hello, As::Client);
    expected += 2;
  }
  std::string db = std::to_string(config_.db);
  if (config_.db != 0) {
    resp::appendMultibulk(hello, {"SELECT", db});
    ++expected;
  }
  for (const std::string& request : preload_) {
    hello += request;
    ++expected;
  }
  // Last, so that its reply is the last frame: a pinned connection's Redis
  // id, for CLIENT UNBLOCK of the client holding it.
  const bool ask_id = kind_ == ConnectionKind::Pinned;
  if (ask_id) {
    resp::appendMultibulk(hello, {"CLIENT", "ID"});
    ++expected;
  }
  if (expected == 0) co_return true;
  const asio::const_buffer hello_bytes = asio::buffer(hello);
  boost::system::error_code wec;
  if (tls_) {
    auto [tec, tn] = co_await asio::async_write(*tls_, hello_bytes, kUseTuple);
    wec = tec;
  } else {
    auto [pec, pn] = co_await asio::async_write(socket_, hello_bytes, kUseTuple);
    wec = pec;
  }
  if (wec) {
    last_error_ = "handshake: " + wec.message();
    co_return false;
  }
  while (expected > 0) {
    auto scan = scanner_.scan(in_.readable());
    if (scan == resp::ScanStatus::Error) {
      last_error_ = "handshake: " + scanner_.errorMessage();
      co_return false;
    }
    if (scan == resp::ScanStatus::Complete) {
      std::string_view frame = in_.readable().substr(0, scanner_.frameSize());
      if (frame.front() == '-' && ask_id && expected == 1) {
        // CLIENT ID refused (a backend user without it): only CLIENT
        // UNBLOCK of this connection's client is lost (it answers 0).
        in_.consume(frame.size());
        --expected;
        continue;
      }
      if (frame.front() == '-') {
        // The server's own words (never our password) say what went wrong.
        last_error_ = "handshake refused: " + std::string(frame.substr(1, frame.size() - 3));
        spdlog::error("redis backend {}: {}", config_.address.toString(), last_error_);
        co_return false;
      }
      if (ask_id && expected == 1 && frame.front() == ':') {
        std::uint64_t id = 0;
        std::from_chars(frame.data() + 1, frame.data() + frame.size() - 2, id);
        redis_id_.store(id, std::memory_order_relaxed);
      }
      in_.consume(frame.size());
      --expected;
      continue;
    }
    char* dst = in_.prepare(4096);
    const asio::mutable_buffer into = asio::buffer(dst, in_.writable());
    // Bounded: a Redis that accepted the connection may still never answer.
    asio::steady_timer handshake_deadline(executor_, config_.connect_timeout);
    auto handshake = co_await (readSome(into) || handshake_deadline.async_wait(kUseTuple));
    if (handshake.index() == 1) {
      last_error_ =
          "handshake: no answer within " + std::to_string(config_.connect_timeout.count()) + " ms";
      co_return false;
    }
    auto [rec2, n] = std::get<0>(handshake);
    if (rec2) {
      last_error_ = "handshake: " + rec2.message();
      co_return false;
    }
    in_.commit(n);
  }
  co_return true;
}

void BackendConnection::setKeepalive() {
  // A peer that vanished without a FIN or RST (a dropped network, a dead
  // host) is noticed by the kernel: keepalive probes while idle, and
  // TCP_USER_TIMEOUT while requests are unacknowledged (docs/failures.md).
  const int fd = socket_.native_handle();
  if (config_.keepalive.count() > 0) {
    const int on = 1;
    const int idle = std::max<int>(1, static_cast<int>(config_.keepalive.count() / 1000));
    const int interval = std::max(1, idle / 2);
    const int count = 3;
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  }
  if (config_.request_timeout.count() > 0) {
    const unsigned timeout = static_cast<unsigned>(config_.request_timeout.count());
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof timeout);
  }
}

asio::awaitable<void> BackendConnection::watchdog() {
  // Silence, not slowness: the connection goes when requests have waited
  // about request_timeout (checked every quarter of it) with nothing read.
  // Counting reads keeps clock reads off the request path.
  const auto limit = config_.request_timeout;
  asio::steady_timer tick(executor_);
  std::uint64_t seen = reads_;
  auto quiet_since = std::chrono::steady_clock::now();
  for (;;) {
    tick.expires_after(
        std::max<std::chrono::milliseconds>(limit / 4, std::chrono::milliseconds(10)));
    auto [ec] = co_await tick.async_wait(kUseTuple);
    if (ec || stopping_) co_return;  // the read loop ended first
    const auto now = std::chrono::steady_clock::now();
    if (pending_.empty() || reads_ != seen) {
      seen = reads_;
      quiet_since = now;
    } else if (now - quiet_since >= limit) {
      last_error_ = "no reply from Redis within " + std::to_string(limit.count()) +
                    " ms (redis.request_timeout)";
      co_return;  // ends the connection; every waiting request fails
    }
  }
}

asio::awaitable<std::pair<boost::system::error_code, std::size_t>> BackendConnection::readSome(
    asio::mutable_buffer into) {
  if (tls_) {
    auto [ec, n] = co_await tls_->async_read_some(into, kUseTuple);
    co_return std::make_pair(ec, n);
  }
  auto [ec, n] = co_await socket_.async_read_some(into, kUseTuple);
  co_return std::make_pair(ec, n);
}

void BackendConnection::flushOut() {
  if (write_active_ || out_.empty() || state_ != State::Ready || stopping_) return;
  if (!tls_) {
    // Plain TCP: try at once (the socket is non-blocking); most batches fit
    // the socket buffer, so no asynchronous operation is needed at all.
    boost::system::error_code ec;
    const std::size_t n = socket_.write_some(asio::buffer(out_), ec);
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
      writeFailed(ec);
      return;
    }
    if (n == out_.size()) {
      out_.clear();
      if (out_.capacity() > 1024 * 1024) std::string().swap(out_);
      return;
    }
    out_.erase(0, n);
  }
  // The rest (or, for TLS, all of it) asynchronously; sends meanwhile gather
  // in out_ for the next write.
  writing_.swap(out_);
  write_active_ = true;
  auto done = [self = shared_from_this(), generation = generation_](boost::system::error_code ec,
                                                                    std::size_t) {
    self->write_active_ = false;
    self->writing_.clear();
    if (generation != self->generation_) {
      self->flushOut();  // the connection this write belonged to is gone
      return;
    }
    if (ec) {
      self->writeFailed(ec);
      return;
    }
    self->flushOut();
  };
  if (tls_) {
    asio::async_write(*tls_, asio::buffer(writing_), std::move(done));
  } else {
    asio::async_write(socket_, asio::buffer(writing_), std::move(done));
  }
}

void BackendConnection::writeFailed(const boost::system::error_code& ec) {
  if (last_error_.empty()) last_error_ = "write: " + ec.message();
  boost::system::error_code ignored;
  socket_.close(ignored);  // the read loop ends and run() reconnects
}

asio::awaitable<void> BackendConnection::readLoop() {
  for (;;) {
    char* dst = in_.prepare(kReadChunk);
    const asio::mutable_buffer into = asio::buffer(dst, in_.writable());
    auto [ec, n] = co_await readSome(into);
    if (ec) {
      if (last_error_.empty()) {
        last_error_ = ec == asio::error::eof ? "closed by server" : "read: " + ec.message();
      }
      co_return;
    }
    in_.commit(n);
    ++reads_;
    for (;;) {
      auto status = scanner_.scan(in_.readable());
      if (status == resp::ScanStatus::NeedMore) break;
      if (status == resp::ScanStatus::Error) {
        last_error_ = "protocol error from Redis: " + scanner_.errorMessage();
        spdlog::error("redis backend {}: {}", config_.address.toString(), last_error_);
        co_return;
      }
      const std::size_t size = scanner_.frameSize();
      onFrame(in_.readable().substr(0, size));
      in_.consume(size);
      if (stopping_) co_return;
    }
  }
}

void BackendConnection::onFrame(std::string_view frame) {
  if (stream_sink_ && (!pushes_only_ || frame.front() == '>')) {
    auto sink = stream_sink_;  // deliver() may clear stream_sink_
    sink->deliver(0, frame);
    return;
  }
  if (pending_.empty()) {
    // A reply nobody asked for means we lost track of the stream: never guess.
    spdlog::error("redis backend {}: unexpected reply, closing the connection",
                  config_.address.toString());
    boost::system::error_code ignored;
    socket_.close(ignored);
    return;
  }
  Pending p = std::move(pending_.front());
  pending_.pop_front();
  if (!p.sink) {
    // Our own request (an identity switch, a reset for the pool): anything
    // unexpected means later requests would run in the wrong state, so the
    // connection goes (and reconnects).
    if (frame != p.expect) {
      last_error_ = "unexpected reply to Larder's own request: " +
                    std::string(frame.substr(0, frame.size() - 2));
      spdlog::error("redis backend {}: {}", config_.address.toString(), last_error_);
      boost::system::error_code ignored;
      socket_.close(ignored);
    }
    return;
  }
  p.sink->deliver(p.tag, frame);
}

}  // namespace larder::redis
