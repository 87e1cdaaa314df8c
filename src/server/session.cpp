#include "larder/server/session.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <random>
#include <variant>

#include "larder/resp/reply_writer.hpp"
#include "larder/server/command_stats.hpp"
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

}  // namespace

Session::Session(Worker& worker, tcp::socket socket, std::shared_ptr<asio::ssl::context> tls,
                 std::uint64_t id)
    : worker_(worker),
      socket_(std::move(socket), std::move(tls)),
      id_(id),
      created_(std::chrono::steady_clock::now()),
      last_active_(created_),
      wake_(socket_.get_executor()),
      shared_(&worker.sharedConnection(id)),
      db_(worker.config().redis.db) {
  resetUser();
  boost::system::error_code ec;
  auto ep = socket_.tcp().remote_endpoint(ec);
  if (!ec) peer_ = ep.address().to_string() + ":" + std::to_string(ep.port());
}

Session::~Session() = default;

void Session::start() {
  asio::co_spawn(
      socket_.get_executor(), [self = shared_from_this()] { return self->run(); },
      [id = id_](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("client {}: session ended by an exception: {}", id, ex.what());
        }
      });
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
      if (queue_.outstanding() >= max_inflight) {
        co_await waitOutstanding(max_inflight - 1);
        continue;
      }
      const auto status = parser_.parse(in_.readable(), request_);
      if (status == resp::ParseStatus::NeedMore) break;
      if (status == resp::ParseStatus::Error) {
        protocolError(parser_.errorMessage());
        break;
      }
      if (!request_.args.empty()) {
        worker_.stats().commands.add();  // once per request, however often re-routed
        const commands::Resolved cmd = registry.resolve(request_.args);
        queue_.stamp({CommandStats::slotOf(cmd.command), std::chrono::steady_clock::now()});
        if (resp3_ || reply_forms_.active()) {
          reply_forms_.request(cmd.command, request_.args, resp3_, in_multi_, queue_.nextTag(),
                               queue_.headTag());
        }
        Flow flow = route(request_, cmd);
        while (flow == Flow::Barrier || flow == Flow::Saturated) {
          if (flow == Flow::Barrier) {
            co_await waitOutstanding(0);
          } else {
            co_await waitBackendCapacity();
          }
          if (closed_) co_return;
          flow = route(request_, cmd);
        }
        if (flow == Flow::Stop) break;
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
    last_active_ = std::chrono::steady_clock::now();
  }
  if (!close_when_flushed_ && !quitting_) close();
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
  while (queue_.outstanding() > at_most && !closed_) {
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

void Session::wakeReader() {
  if (waiting_ && queue_.outstanding() <= wake_at_) wake_.cancel();
}

// ---------------------------------------------------------------- routing

Session::Flow Session::route(const resp::Request& req, const commands::Resolved& cmd) {
  using commands::LocalCommand;
  using commands::Route;
  const commands::Command* command = cmd.command;
  const Route kind = command ? commands::routeOf(*command, req.args) : Route::Forward;
  // A container with a subcommand Redis 7.0 does not know keeps the
  // container's handling (CLIENT SETINFO is Larder's; CONFIG FOO is Redis' error).
  const LocalCommand local = command ? command->handling.local : LocalCommand::None;

  if (hold_) {  // a mapped write before this one may still be retried
    if (!queue_.empty()) return Flow::Barrier;
    hold_ = false;
  }
  if (user_ && user_config_ != &worker_.config() && !refreshUser()) {
    close();  // its user was removed or disabled by a reload
    return Flow::Stop;
  }
  if (pinned_ && pinned_->closed()) {  // its state (MULTI, db, ...) is gone
    replyError("ERR Larder: the Redis connection holding this client's state was lost");
    closeWhenFlushed();
    return Flow::Stop;
  }
  if (stream_) {
    // Pub/sub: the dedicated connection streams frames straight back, so a
    // reply of Larder's own cannot be slotted in between. Redis itself allows
    // only the SUBSCRIBE family, PING, QUIT and RESET while subscribed; any
    // other command (or any command after RESET de-authenticated the client)
    // first asks Redis whether the subscriptions are over (syncStream).
    const bool pubsub_command = kind == Route::PubSub || local == LocalCommand::Ping ||
                                local == LocalCommand::Quit || local == LocalCommand::Reset;
    // A denied command is answered here, once the stream is in step.
    std::string denial = restricted() ? aclDenial(req, cmd) : std::string();
    if (!pubsub_command || !authenticated_ || !denial.empty()) {
      if (sync_ == StreamSync::None) return syncStream();
      const bool subscribed = sync_ == StreamSync::Subscribed;
      sync_ = StreamSync::None;
      if (!subscribed) return route(req, cmd);  // the stream has ended: route as usual
      if (!denial.empty()) {
        replyError(denial);
        return Flow::Continue;
      }
    }
    if (local == LocalCommand::Reset) {
      resetUser();
      name_.clear();
      setProtocol(false);    // and returns to RESP2; its +RESET is the same in both
      dirty_stream_ = true;  // RESET de-authenticates the backend connection too
    }
    sendOnStream(req);
    if (local == LocalCommand::Quit) {
      // Redis answers +OK and closes; backendClosed() then closes the client.
      quitting_ = true;
      reading_stopped_ = true;
      return Flow::Stop;
    }
    return Flow::Continue;
  }
  if (!authenticated_ && local != LocalCommand::Auth && local != LocalCommand::Hello &&
      local != LocalCommand::Quit && local != LocalCommand::Reset) {
    replyError("NOAUTH Authentication required.");
    return Flow::Continue;
  }
  if (restricted()) {
    // Before anything is routed, queued or answered: like Redis, a command
    // refused inside MULTI makes EXEC discard the transaction.
    if (std::string denial = aclDenial(req, cmd); !denial.empty()) {
      if (in_multi_) multi_aborted_ = true;
      replyError(denial);
      return Flow::Continue;
    }
  }
  if (in_multi_) {
    // Inside MULTI Redis queues (or refuses) everything; only QUIT and RESET
    // are Larder's own.
    if (local == LocalCommand::Quit || local == LocalCommand::Reset) {
      return routeLocal(req, local);
    }
    if (local == LocalCommand::Exec || local == LocalCommand::Discard) {
      if (pinned_->saturated()) return Flow::Saturated;
      const bool aborted = multi_aborted_;
      in_multi_ = watching_ = multi_aborted_ = false;
      if (aborted && local == LocalCommand::Exec) {
        // A command was refused while queueing: like Redis, discard it all.
        resp::Request discard;
        discard.args = {"DISCARD"};
        discard.inline_form = true;
        replacements_[queue_.nextTag()] =
            "-EXECABORT Transaction discarded because of previous errors.\r\n";
        return forward(discard, *pinned_);
      }
      return forward(req, *pinned_);
    }
    if (local == LocalCommand::Auth || local == LocalCommand::Hello) {
      // Queued, they would run on the dedicated backend connection and change
      // its user or protocol for whoever gets it from the pool next; the
      // session's own user and protocol would not change at all.
      multi_aborted_ = true;
      replyError("ERR Larder: " + std::string(local == LocalCommand::Auth ? "AUTH" : "HELLO") +
                 " cannot run inside MULTI");
      return Flow::Continue;
    }
    if (command != nullptr) {
      if (std::string refusal = refusalInTransaction(req, *command); !refusal.empty()) {
        multi_aborted_ = true;
        replyError(refusal);
        return Flow::Continue;
      }
    }
    return forward(req, *pinned_);
  }

  if (command != nullptr &&
      (kind == Route::Forward || kind == Route::Blocking || kind == Route::Transaction)) {
    Flow flow;
    if (routeMapped(req, *command, flow)) return flow;
  }
  switch (kind) {
    case Route::Local:
      return routeLocal(req, local);
    case Route::Forward:
      return forwardCurrent(req);
    case Route::Refused: {
      std::string name(req.args[0]);
      for (auto& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      replyError("ERR Larder: " + (command->handling.refusal.empty()
                                       ? name + " is not supported through the proxy"
                                       : std::string(command->handling.refusal)));
      return Flow::Continue;
    }
    case Route::Transaction:
    case Route::Blocking:
    case Route::Sticky:
      if (needsBarrierToPin()) return Flow::Barrier;
      if (!pin(false)) return Flow::Continue;
      if (kind == Route::Sticky) sticky_ = true;
      if (kind == Route::Transaction) {
        (command->redis->name == "multi" ? in_multi_ : watching_) = true;
      }
      return forward(req, *pinned_);
    case Route::PubSub:
      if (!queue_.empty()) return Flow::Barrier;  // stream frames carry no tags
      if (!pin(true)) return Flow::Continue;
      sendOnStream(req);
      return Flow::Continue;
  }
  return Flow::Continue;
}

redis::BackendConnection* Session::currentConnection() {
  if (pinned_) {
    if (!releasable()) return pinned_.get();
    if (!queue_.empty()) return nullptr;  // the pinned call must finish first
    releasePin();
  }
  return shared_;
}

Session::Flow Session::forwardCurrent(const resp::Request& req) {
  redis::BackendConnection* connection = currentConnection();
  return connection ? forward(req, *connection) : Flow::Barrier;
}

void Session::sendOnStream(const resp::Request& req) {
  if (req.inline_form) {
    scratch_.clear();
    resp::appendMultibulk(scratch_, req.args);
    pinned_->sendUntracked(scratch_);
  } else {
    pinned_->sendUntracked(req.raw);
  }
}

void Session::dropPin() {
  if (!pinned_) return;
  auto connection = std::move(pinned_);
  connection->setOwner({});  // its closing is ours, not news to report
  connection->setStreamSink(nullptr);
  connection->stop();
  worker_.releasePinned(std::move(connection), false);
}

void Session::setAuthenticated(bool authenticated) {
  authenticated_ = authenticated;
  parser_.setLimits(parserLimits(worker_.config().limits, authenticated));
}

Session::Flow Session::forward(const resp::Request& req, redis::BackendConnection& connection) {
  if (connection.saturated()) return Flow::Saturated;
  const std::uint64_t tag = queue_.reserve();
  if (req.inline_form) {
    scratch_.clear();
    resp::appendMultibulk(scratch_, req.args);
    connection.send(scratch_, self(), tag);
  } else {
    connection.send(req.raw, self(), tag);
  }
  return Flow::Continue;
}

bool Session::pin(bool stream) {
  if (!pinned_) {
    pinned_ = worker_.acquirePinned();
    if (!pinned_) {
      replyError(
          "ERR Larder: too many dedicated backend connections "
          "(redis.max_pinned_per_worker); try again later");
      return false;
    }
    pinned_->setOwner(weak_from_this());
  }
  if (stream && !stream_) {
    stream_ = true;
    pinned_->setStreamSink(self());
  }
  return true;
}

bool Session::releasable() const {
  return pinned_ && !stream_ && !in_multi_ && !watching_ && !sticky_ &&
         db_ == worker_.config().redis.db;
}

void Session::releasePin() {
  auto connection = std::move(pinned_);
  connection->setOwner({});
  connection->setStreamSink(nullptr);
  const bool clean = !stream_ && !sticky_ && !dirty_stream_ && db_ == worker_.config().redis.db;
  stream_ = in_multi_ = watching_ = sticky_ = dirty_stream_ = false;
  worker_.releasePinned(std::move(connection), clean);
}

// ---------------------------------------------------------------- replies

void Session::observe(std::uint64_t tag) {
  const ReplyQueue::Stamp stamp = queue_.takeStamp(tag);
  if (stamp.command == kNoStatsSlot) return;
  worker_.stats().by_command[stamp.command].latency.observe(std::chrono::steady_clock::now() -
                                                            stamp.start);
}

void Session::deliver(std::uint64_t tag, std::string_view frame) {
  if (closed_) return;
  if (tag != kStreamTag) observe(tag);
  if (tag == kStreamTag) {
    if (sync_tag_ != 0 && frame.find(sync_token_) != std::string_view::npos) {
      onStreamSync(frame);
      return;
    }
    // Stream frames carry no slot: they are already in order.
    out_.append(resp3_ ? reply_forms_.push(frame) : frame);
  } else if (!replacements_.empty() && replacements_.count(tag)) {
    queue_.complete(tag, replacements_[tag], out_);
    replacements_.erase(tag);
  } else if (!info_merges_.empty() && info_merges_.count(tag)) {
    std::string merged = mergeInfo(info_merges_[tag], frame);
    info_merges_.erase(tag);
    queue_.complete(tag, clientForm(tag, merged), out_);
  } else {
    queue_.complete(tag, clientForm(tag, frame), out_);
  }
  if (out_.size() + writing_.size() + queue_.heldBytes() >
      worker_.config().limits.client_output_limit) {
    worker_.stats().output_limit_closes.add();
    spdlog::warn("client {} ({}): output buffer over {} bytes, closing", id_, peer_,
                 worker_.config().limits.client_output_limit);
    close();
    return;
  }
  scheduleFlush();
  wakeReader();
}

Session::Flow Session::syncStream() {
  // PING with a token of ours: Redis answers ["pong", token] while the client
  // is subscribed and a plain bulk token once it is not. Frames before it
  // belong to earlier commands; the token reply itself is swallowed.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  sync_token_ = "__larder:sync:" + std::to_string(rng()) + ":" + std::to_string(++sync_count_);
  std::string ping;
  resp::appendMultibulk(ping, {"PING", sync_token_});
  sync_tag_ = queue_.reserve();
  pinned_->sendUntracked(ping);
  return Flow::Barrier;
}

void Session::onStreamSync(std::string_view frame) {
  const std::uint64_t tag = sync_tag_;
  sync_tag_ = 0;
  if (frame.front() == '$') {  // no subscriptions left: back to normal routing
    sync_ = StreamSync::Ended;
    stream_ = false;
    releasePin();
  } else {
    sync_ = StreamSync::Subscribed;
  }
  observe(tag);
  queue_.complete(tag, {}, out_);
  wakeReader();
}

void Session::backendClosed() {
  if (closed_) return;
  // The dedicated connection is gone, and with it the client's MULTI, WATCH,
  // subscriptions or db: closing tells the client, as a Redis restart would.
  closeWhenFlushed();
  if (!closed_) scheduleFlush();
}

std::string_view Session::clientForm(std::uint64_t tag, std::string_view bytes) {
  if (!reply_forms_.active()) return bytes;
  return reply_forms_.translate(tag, bytes, queue_.headTag());
}

void Session::setProtocol(bool resp3) {
  resp3_ = resp3;
  reply_forms_.switched(resp3, queue_.nextTag(), queue_.headTag());
}

void Session::reply(std::string_view bytes) {
  const std::uint64_t tag = queue_.reserve();
  observe(tag);
  queue_.complete(tag, clientForm(tag, bytes), out_);
  scheduleFlush();
}

void Session::replyError(std::string_view text) {
  std::string bytes;
  resp::appendError(bytes, text);
  reply(bytes);
}

void Session::protocolError(const std::string& message) {
  worker_.stats().protocol_errors.add();
  spdlog::debug("client {} ({}): protocol error: {}", id_, peer_, message);
  replyError("ERR Protocol error: " + message);
  closeWhenFlushed();
}

void Session::emit(std::string_view bytes) {
  out_.append(bytes);
  scheduleFlush();
}

void Session::scheduleFlush() {
  if (flush_scheduled_ || write_active_ || out_.empty() || closed_) return;
  flush_scheduled_ = true;
  // Deferred to the end of this loop turn: every reply that arrives in the
  // same backend read leaves in one write.
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    self->flush_scheduled_ = false;
    self->flush();
  });
}

void Session::flush() {
  if (write_active_ || closed_) return;
  if (out_.empty()) {
    afterWrite();
    return;
  }
  boost::system::error_code ec;
  // TLS: no synchronous attempt (see client_stream.hpp); straight to async_write.
  const std::size_t n = socket_.isTls() ? 0 : socket_.tcp().write_some(asio::buffer(out_), ec);
  if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
    close();
    return;
  }
  if (n == out_.size()) {
    out_.clear();
    if (out_.capacity() > 64 * 1024) std::string().swap(out_);
    afterWrite();
    return;
  }
  // The client is slow: hand the rest to an asynchronous write.
  out_.erase(0, n);
  writing_.swap(out_);
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
  if (close_when_flushed_ && queue_.empty() && out_.empty() && !write_active_) close();
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
  if (stream_ || (pinned_ && !queue_.empty())) {
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
  dropPin();
  info_merges_.clear();
  worker_.forget(id_);
}

bool Session::exemptFromIdleTimeout() const {
  // As in Redis: subscribers and clients blocked in a call are not idle.
  return stream_ || (pinned_ && !queue_.empty());
}

}  // namespace larder::server
