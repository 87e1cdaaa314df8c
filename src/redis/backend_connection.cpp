#include "larder/redis/backend_connection.hpp"

#include <spdlog/spdlog.h>

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
      wake_(executor),
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
  wake_.cancel();
  failPending(BackendFailure::Kind::Closed);
}

void BackendConnection::send(std::string_view request, const std::shared_ptr<ReplySink>& sink,
                             std::uint64_t tag, As as) {
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
  pending_.push_back(Pending{sink, tag});
  out_.append(request);
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
  appendAuth(out_, as);
  pending_.push_back(Pending{nullptr, 0});
  stream_as_ = as;
}

void BackendConnection::setStreamSink(std::shared_ptr<ReplySink> sink, bool pushes_only) {
  stream_sink_ = std::move(sink);
  pushes_only_ = pushes_only;
}

void BackendConnection::sendUntracked(std::string_view request) {
  stats_.requests.add();
  if (stopping_ || state_ == State::Closed) return;  // the stream sink learns via backendClosed
  wakeWriter();
  out_.append(request);
}

void BackendConnection::wakeWriter() {
  // The writer sleeps on `wake_` while out_ is empty; the first request of a
  // loop turn wakes it, later ones in the same turn join the same write.
  if (out_.empty()) wake_.cancel();
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
    // Requests queued from now on follow the handshake, which ends as the client.
    stream_as_ = As::Client;
    if (co_await connectOnce()) {
      state_ = State::Ready;
      last_error_.clear();
      stats_.connects.add();
      backoff = config_.reconnect_min;
      co_await (readLoop() || writeLoop());
      stats_.disconnects.add();
      if (!stopping_)
        spdlog::warn("redis backend {}: connection lost: {}", config_.address.toString(),
                     last_error_);
    } else {
      stats_.connect_failures.add();
    }
    boost::system::error_code ignored;
    socket_.close(ignored);
    out_.clear();
    writing_.clear();
    in_ = ByteBuffer(in_.capacity() ? in_.capacity() : 4096);
    scanner_.reset();
    failPending(BackendFailure::Kind::ConnectionLost);
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
  socket_.set_option(tcp::no_delay(true));
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
    auto [rec2, n] = co_await readSome(into);
    if (rec2) {
      last_error_ = "handshake: " + rec2.message();
      co_return false;
    }
    in_.commit(n);
  }
  co_return true;
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

asio::awaitable<boost::system::error_code> BackendConnection::writeAll(asio::const_buffer bytes) {
  if (tls_) {
    auto [ec, n] = co_await asio::async_write(*tls_, bytes, kUseTuple);
    co_return ec;
  }
  auto [ec, n] = co_await asio::async_write(socket_, bytes, kUseTuple);
  co_return ec;
}

asio::awaitable<void> BackendConnection::writeLoop() {
  for (;;) {
    if (stopping_) co_return;
    if (out_.empty()) {
      wake_.expires_at(asio::steady_timer::time_point::max());
      auto [ec] = co_await wake_.async_wait(kUseTuple);
      // Cancellation is how we are woken; only a closed socket ends the loop.
      (void)ec;
      auto cs = co_await asio::this_coro::cancellation_state;
      if (cs.cancelled() != asio::cancellation_type::none) co_return;
      continue;
    }
    writing_.swap(out_);
    const asio::const_buffer bytes = asio::buffer(writing_);
    const boost::system::error_code ec = co_await writeAll(bytes);
    writing_.clear();
    if (ec) {
      if (last_error_.empty()) last_error_ = "write: " + ec.message();
      co_return;
    }
  }
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
    // Our own AUTH switching identities: anything but OK means requests
    // would run as the wrong user, so the connection goes (and reconnects).
    if (frame != "+OK\r\n") {
      last_error_ = "identity switch refused: " + std::string(frame.substr(0, frame.size() - 2));
      spdlog::error("redis backend {}: {}", config_.address.toString(), last_error_);
      boost::system::error_code ignored;
      socket_.close(ignored);
    }
    return;
  }
  p.sink->deliver(p.tag, frame);
}

}  // namespace larder::redis
