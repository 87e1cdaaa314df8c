#include "larder/server/session.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <variant>

#include "larder/common/logging.hpp"
#include "larder/server/worker.hpp"

namespace larder::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr std::size_t kReadChunk = 16 * 1024;
// After a read this large (a long pipeline), look once more before executing
// it: a client that already closed or reset must not cost the backend its
// whole pipeline. Small reads skip the extra syscall.
constexpr std::size_t kGoneCheckBytes = 2048;

resp::ParserLimits parserLimits(const config::LimitsConfig& limits, bool authenticated) {
  resp::ParserLimits l{limits.max_array_len, limits.max_bulk_len, limits.max_inline_len};
  if (!authenticated) {
    l.max_array_len = std::min(l.max_array_len, resp::kUnauthenticatedLimits.max_array_len);
    l.max_bulk_len = std::min(l.max_bulk_len, resp::kUnauthenticatedLimits.max_bulk_len);
    l.unauthenticated = true;
  }
  return l;
}

// "ip:port" the client connected to: a cluster client is told Larder is there.
std::string localAddress(ClientStream& socket) {
  boost::system::error_code ec;
  const auto local = socket.tcp().local_endpoint(ec);
  if (ec) return {};
  return local.address().to_string() + ":" + std::to_string(local.port());
}

}  // namespace

Session::Session(Worker& worker, tcp::socket socket, std::shared_ptr<asio::ssl::context> tls,
                 std::uint64_t id)
    : worker_(worker),
      socket_(std::move(socket), std::move(tls)),
      id_(id),
      created_(std::chrono::steady_clock::now()),
      last_active_(created_),
      cluster_(worker.router()
                   ? std::make_unique<cluster::ClusterBackend>(
                         *worker.router(), worker.stats(),
                         worker.config().redis.max_pinned_per_worker, localAddress(socket_))
                   : nullptr),
      pipeline_(proxy::Ports{backendPort(), *this, *this, *this}, id),
      wake_(socket_.get_executor()),
      shared_(cluster_ ? nullptr : &worker.sharedConnection(id)) {
  parser_authenticated_ = !pipeline_.state().authenticated;  // forces the first update
  updateParserLimits();
  boost::system::error_code ec;
  auto ep = socket_.tcp().remote_endpoint(ec);
  if (!ec) peer_ = ep.address().to_string() + ":" + std::to_string(ep.port());
}

Session::~Session() = default;

proxy::BackendPort& Session::backendPort() {
  if (cluster_) return *cluster_;
  return *this;
}

void Session::start() {
  if (cluster_) cluster_->attach(weak_from_this());
  asio::co_spawn(
      socket_.get_executor(), [self = shared_from_this()] { return self->run(); },
      logEscaped("client session"));
}

void Session::updateParserLimits() {
  const bool authenticated = pipeline_.state().authenticated;
  if (authenticated == parser_authenticated_) return;
  parser_authenticated_ = authenticated;
  parser_.setLimits(parserLimits(worker_.config().limits, authenticated));
}

asio::awaitable<void> Session::run() {
  boost::system::error_code ec;
  socket_.tcp().non_blocking(true, ec);
  socket_.tcp().set_option(tcp::no_delay(true), ec);
  if (socket_.isTls()) {
    const bool handshaken = co_await handshake();
    if (!handshaken) {
      close();
      co_return;
    }
  }
  const std::size_t max_inflight =
      std::max<std::size_t>(1, worker_.config().limits.max_inflight_per_client);
  const commands::Registry& registry = commands::Registry::get();

  while (!reading_stopped_ && !closed_) {
    // Execute every complete request already buffered.
    while (!reading_stopped_ && !closed_) {
      if (pipeline_.outstanding() >= max_inflight) {
        co_await waitOutstanding(max_inflight - 1);
        continue;
      }
      const auto status = parser_.parse(in_.readable(), request_);
      if (status == resp::ParseStatus::NeedMore) break;
      if (status == resp::ParseStatus::Error) {
        spdlog::debug("client {} ({}): protocol error: {}", id_, peer_, parser_.errorMessage());
        pipeline_.protocolError(parser_.errorMessage());
        afterPipeline();
        break;
      }
      if (!request_.args.empty()) {
        // Clients repeat commands: the last plain one is checked before the registry.
        commands::Resolved cmd{last_command_, true};
        if (last_command_ == nullptr ||
            !commands::equalsIgnoreCase(request_.args[0], last_command_->name())) {
          cmd = registry.resolve(request_.args);
          last_command_ = cmd.known && !cmd.command->isContainer() ? cmd.command : nullptr;
        }
        pipeline_.begin(request_, cmd, read_at_);
        auto flow = pipeline_.step(request_, cmd);
        while (flow == proxy::Pipeline::Flow::Barrier || flow == proxy::Pipeline::Flow::Saturated ||
               flow == proxy::Pipeline::Flow::Paused) {
          if (flow == proxy::Pipeline::Flow::Barrier) {
            co_await waitOutstanding(0);
          } else if (flow == proxy::Pipeline::Flow::Saturated) {
            co_await waitBackendCapacity();
          } else {
            co_await waitPause();
          }
          if (closed_) co_return;
          flow = pipeline_.step(request_, cmd);
        }
        updateParserLimits();
        if (!pipeline_.output().empty() || pipeline_.end() != proxy::Pipeline::End::None) {
          afterPipeline();
        }
        if (flow == proxy::Pipeline::Flow::Stop) break;
      }
      in_.consume(parser_.consumed());
    }
    if (reading_stopped_ || closed_) break;
    in_.releaseIfEmpty();

    if (!draining_ && !socket_.isTls()) {
      auto [wec] = co_await socket_.tcp().async_wait(tcp::socket::wait_read, kUseTuple);
      if (closed_ || reading_stopped_) break;
      if (wec && !draining_) break;
    }
    const std::size_t want = std::max(kReadChunk, parser_.bytesWanted());
    char* dst = in_.prepare(want);
    std::size_t n = 0;
    if (socket_.isTls()) {
      // Records are decrypted by the engine, so TLS reads are asynchronous;
      // shutdown()'s shutdown_receive ends a waiting one with EOF.
      const asio::mutable_buffer into = asio::buffer(dst, in_.writable());
      auto [rec, got] = co_await socket_.tls().async_read_some(into, kUseTuple);
      if (closed_ || reading_stopped_) break;
      ec = rec;
      n = got;
    } else {
      n = socket_.tcp().read_some(asio::buffer(dst, in_.writable()), ec);
    }
    if (draining_ && (ec || n == 0)) {
      // Shutting down: every request the client had sent is executed; now stop.
      closeWhenFlushed();
      break;
    }
    if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
    if (ec) break;  // EOF or reset: Redis drops such a client at once
    in_.commit(n);
    if (n >= kGoneCheckBytes && clientGone()) break;
    last_active_ = read_at_ = std::chrono::steady_clock::now();
  }
  if (!close_when_flushed_ && pipeline_.end() == proxy::Pipeline::End::None) close();
}

asio::awaitable<bool> Session::handshake() {
  asio::steady_timer deadline(socket_.get_executor(), worker_.config().tls.handshake_timeout);
  auto outcome =
      co_await (socket_.tls().async_handshake(asio::ssl::stream_base::server, kUseTuple) ||
                deadline.async_wait(kUseTuple));
  if (outcome.index() == 1) {
    spdlog::debug("client {} {}: TLS handshake not done within {} ms; closing", id_, peer_,
                  worker_.config().tls.handshake_timeout.count());
    co_return false;
  }
  const boost::system::error_code ec = std::get<0>(std::get<0>(outcome));
  if (ec) {
    spdlog::debug("client {} {}: TLS handshake failed: {}", id_, peer_, ec.message());
    co_return false;
  }
  co_return true;
}

bool Session::clientGone() {
  // TLS bytes are records, not requests; the check is for plain clients.
  if (socket_.isTls()) return false;
  boost::system::error_code ec;
  for (;;) {
    char* dst = in_.prepare(kReadChunk);
    const std::size_t n = socket_.tcp().read_some(asio::buffer(dst, in_.writable()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) return false;
    if (ec) return true;  // EOF or reset
    in_.commit(n);
    if (in_.size() > worker_.config().limits.max_bulk_len) return false;  // parse first
  }
}

asio::awaitable<void> Session::waitOutstanding(std::size_t at_most) {
  while (pipeline_.outstanding() > at_most && !closed_) {
    waiting_ = true;
    wake_at_ = at_most;
    wake_.expires_at(asio::steady_timer::time_point::max());
    co_await wake_.async_wait(kUseTuple);
    waiting_ = false;
  }
}

asio::awaitable<void> Session::waitBackendCapacity() {
  // Rare (only under overload), so a short poll is simpler than a waiter list.
  worker_.stats().backend_waits.add();
  asio::steady_timer poll(socket_.get_executor(), std::chrono::milliseconds(1));
  co_await poll.async_wait(kUseTuple);
}

asio::awaitable<void> Session::waitPause() {
  // CLIENT PAUSE: until it ends, looking again now and then for an UNPAUSE.
  constexpr auto kRecheck = std::chrono::milliseconds(10);
  asio::steady_timer wait(socket_.get_executor(), std::min<std::chrono::steady_clock::duration>(
                                                      pipeline_.pauseLeft(), kRecheck));
  co_await wait.async_wait(kUseTuple);
}

void Session::wakeReader() {
  if (waiting_ && pipeline_.outstanding() <= wake_at_) wake_.cancel();
}

// ---------------------------------------------------------------- replies

void Session::deliver(std::uint64_t tag, std::string_view frame) {
  if (!scripts_.empty() && scripts_.front() == tag) {
    scripts_.pop_front();
    worker_.scripts().finished(id_, tag);
  }
  if (closed_) return;
  if (tag == proxy::kStreamTag) {
    pipeline_.streamFrame(frame);
  } else {
    pipeline_.complete(tag, frame);
  }
  afterPipeline();
  wakeReader();
}

void Session::fail(std::uint64_t tag, const redis::BackendFailure& failure) {
  if (!scripts_.empty() && scripts_.front() == tag) {
    scripts_.pop_front();
    worker_.scripts().finished(id_, tag);
  }
  if (closed_) return;
  pipeline_.fail(tag, failure);
  afterPipeline();
  wakeReader();
}

void Session::backendClosed() {
  if (closed_) return;
  pipeline_.pinClosed();
  afterPipeline();
}

void Session::afterPipeline() {
  if (closed_) return;
  switch (pipeline_.end()) {
    case proxy::Pipeline::End::Now:
      close();
      return;
    case proxy::Pipeline::End::AfterReplies:
      if (!close_when_flushed_) closeWhenFlushed();
      break;
    case proxy::Pipeline::End::AfterBackend:
      reading_stopped_ = true;
      break;
    case proxy::Pipeline::End::None:
      break;
  }
  const std::string& out = pipeline_.output();
  if (out.size() + writing_.size() + pipeline_.heldBytes() >
      worker_.config().limits.client_output_limit) {
    closeOverOutputLimit();
    return;
  }
  scheduleFlush();
  afterWrite();
}

void Session::closeOverOutputLimit() {
  if (closed_) return;
  worker_.stats().output_limit_closes.add();
  spdlog::warn("client {} ({}): output buffer over {} bytes, closing", id_, peer_,
               worker_.config().limits.client_output_limit);
  close();
}

void Session::monitorLine(std::string_view line) {
  if (closed_) return;
  pipeline_.monitorLine(line);
  afterPipeline();
}

void Session::scheduleFlush() {
  if (flush_scheduled_ || write_active_ || pipeline_.output().empty() || closed_) return;
  flush_scheduled_ = true;
  // Deferred to the end of this loop turn: every reply that arrives in the
  // same backend read leaves in one write. The worker runs every session's
  // deferred flush from one posted handler.
  worker_.flushLater(shared_from_this());
}

void Session::flushDeferred() {
  flush_scheduled_ = false;
  flush();
}

void Session::flush() {
  if (write_active_ || closed_) return;
  std::string& out = pipeline_.output();
  if (out.empty()) {
    afterWrite();
    return;
  }
  boost::system::error_code ec;
  // TLS: no synchronous attempt (see client_stream.hpp); straight to async_write.
  const std::size_t n = socket_.isTls() ? 0 : socket_.tcp().write_some(asio::buffer(out), ec);
  if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
    close();
    return;
  }
  if (n == out.size()) {
    out.clear();
    if (out.capacity() > 64 * 1024) std::string().swap(out);
    afterWrite();
    return;
  }
  // The client is slow: hand the rest to an asynchronous write.
  out.erase(0, n);
  writing_.swap(out);
  write_active_ = true;
  socket_.asyncWrite(asio::buffer(writing_),
                     [self = shared_from_this()](boost::system::error_code wec, std::size_t) {
                       self->write_active_ = false;
                       self->writing_.clear();
                       if (wec) {
                         self->close();
                         return;
                       }
                       self->flush();
                     });
}

void Session::afterWrite() {
  if (close_when_flushed_ && pipeline_.outstanding() == 0 && pipeline_.output().empty() &&
      !write_active_) {
    close();
  }
}

void Session::closeWhenFlushed() {
  reading_stopped_ = true;
  close_when_flushed_ = true;
  afterWrite();
}

void Session::shutdown() {
  if (closed_ || draining_) return;
  // Requests already sent are still read and executed: the reader drains what
  // the socket holds without waiting for more, then closes after the replies.
  draining_ = true;
  if (pipeline_.blocked()) {
    closeWhenFlushed();  // subscribers and blocked calls have nothing to finish
    return;
  }
  boost::system::error_code ec;
  socket_.tcp().shutdown(tcp::socket::shutdown_receive, ec);  // wakes an idle reader
}

void Session::close() {
  if (closed_) return;
  closed_ = true;
  reading_stopped_ = true;
  boost::system::error_code ec;
  socket_.tcp().close(ec);
  wake_.cancel();
  if (pinned_) unpin(false);
  if (cluster_) cluster_->close();
  if (monitoring_) monitor(false);
  worker_.forget(id_);
}

void Session::recheckUser() {
  if (closed_) return;
  if (!pipeline_.refreshUser()) close();
}

}  // namespace larder::server
