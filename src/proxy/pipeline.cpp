// The route of one request: the gates every request passes, in Redis' order
// (the command must exist and fit its arity, the client must be
// authenticated, its user allowed), then Larder's own refusals, then where it
// goes. See pipeline.hpp for the ordering rules.
#include "larder/proxy/pipeline.hpp"

#include <random>

#include "larder/common/errors.hpp"
#include "larder/proxy/command_stats.hpp"
#include "larder/proxy/monitor_line.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::proxy {

using commands::LocalCommand;
using commands::Route;

Pipeline::Pipeline(Ports ports, std::uint64_t id)
    : ports_(ports),
      id_(id),
      no_keyspaces_(ports.admin.keyspaces().empty()),
      monitors_(ports.admin.monitors()),
      pause_(ports.admin.pause()) {
  state_.db = ports_.admin.config().redis.db;
  resetUser();
}

void Pipeline::begin(const resp::Request& req, const commands::Resolved& cmd,
                     std::chrono::steady_clock::time_point read_at) {
  ports_.admin.stats().commands.add();  // once per request, however often re-routed
  queue_.stamp({CommandStats::slotOf(cmd.command), read_at});
  last_command_ = cmd.command;
  // CLIENT REPLY OFF / SKIP: this request's replies keep their place but are dropped.
  queue_.silence(state_.reply_off || state_.reply_skip);
  state_.reply_skip = false;
  feed_ = Feed::None;
  if (monitors_.load(std::memory_order_relaxed) > 0 && cmd.known && monitorShows(cmd.command)) {
    feed_ = Feed::Now;  // unless it is refused before it runs (afterStep)
    feed_args_.clear();
    appendMonitorArgs(feed_args_, cmd.command, req.args);
  }
  if (state_.resp3 || reply_forms_.active()) {
    bool queued = state_.in_multi;
    for (const Unconfirmed& u : unconfirmed_) queued |= u.change == Change::Multi;
    reply_forms_.request(cmd.command, req.args, state_.resp3, queued, queue_.nextTag(),
                         queue_.headTag());
  }
}

Pipeline::Flow Pipeline::step(const resp::Request& req, const commands::Resolved& cmd) {
  const Flow flow = stepRequest(req, cmd);
  if (feed_ != Feed::None) afterStep(flow);
  return flow;
}

Pipeline::Flow Pipeline::stepRequest(const resp::Request& req, const commands::Resolved& cmd) {
  const commands::Command* command = cmd.command;
  // The common case first: a plain command of a plain client, where every
  // gate below would let it through to the shared connection unchanged.
  if (cmd.known && plain() && command->handling.route == Route::Forward &&
      !command->flag(commands::kBlocking) && command->arityOk(req.args.size()) &&
      state_.user_config == &ports_.admin.config()) {
    return forward(req, Conn::Shared);
  }
  const Route route = command ? commands::routeOf(*command, req.args) : Route::Forward;
  // A container with a subcommand Redis 7.0 does not know keeps the
  // container's handling (CLIENT SETINFO is Larder's; CONFIG FOO is Redis').
  const LocalCommand local = command ? command->handling.local : LocalCommand::None;

  if (hold_) {  // a mapped write before this one may still be retried
    if (!queue_.empty()) return Flow::Barrier;
    hold_ = false;
  }
  if (protocol_tag_ != 0) return Flow::Barrier;  // HELLO 2 on a RESP3 pinned connection
  if (state_.user && state_.user_config != &ports_.admin.config() && !refreshUser()) {
    end_ = End::Now;  // its user was removed or disabled by a reload
    return Flow::Stop;
  }
  if (state_.pinned && ports_.backend.pinLost()) {  // its state (MULTI, db, ...) is gone
    replyError(errors::kPinnedLost);
    endAfterReplies();
    return Flow::Stop;
  }
  if (state_.stream) return stepStream(req, cmd, route, local);

  bool done = false;
  const Flow gated = gate(req, cmd, route, local, done);
  if (done) return gated;
  if (paused(command, local)) return Flow::Paused;
  if (state_.push) {
    const Flow flow = stepPush(req, route, local, done);
    if (done) return flow;
  }
  if (state_.in_multi) return stepInMulti(req, command, local);
  return this->route(req, command, route, local);
}

bool Pipeline::paused(const commands::Command* command, LocalCommand local) {
  // CLIENT PAUSE: checked where Redis checks it, after the command was
  // found allowed and before it runs or is queued.
  if (pause_.idle()) return false;
  const bool write = pausedByWrite(command) || (local == LocalCommand::Exec && multi_writes_);
  return pause_.pausedFor(write, std::chrono::steady_clock::now(), pause_left_) != PauseMode::None;
}

Pipeline::Flow Pipeline::gate(const resp::Request& req, const commands::Resolved& cmd, Route route,
                              LocalCommand local, bool& done) {
  done = true;
  const commands::Command* command = cmd.command;
  const bool keyspaces = !ports_.admin.keyspaces().empty();
  // Refused before it runs; EXEC's own refusal also discards the transaction.
  auto reject = [&](std::string_view text) {
    if (local == LocalCommand::Exec) return rejectExec(text);
    refuse(text);
    return Flow::Continue;
  };
  // Redis' order: the command must exist and fit its arity, then the client
  // must be authenticated, then its user allowed to run it.
  if (!cmd.known && route != Route::Local) {
    // A command Redis 7.0 does not know: a newer Redis may, so it goes there
    // unless Larder must know its keys (keyspaces) or cannot ask (no AUTH yet).
    if (!state_.authenticated || keyspaces) {
      return reject(command ? errors::unknownSubcommand(req.args[0], req.args[1])
                            : errors::unknownCommand(req.args));
    }
  } else if (cmd.known && !command->arityOk(req.args.size())) {
    return reject(errors::arity(command->name()));
  }
  if (!state_.authenticated && local != LocalCommand::Auth && local != LocalCommand::Hello &&
      local != LocalCommand::Quit && local != LocalCommand::Reset) {
    return reject(errors::kNoAuth);
  }
  if (restricted()) {
    // Before anything is routed, queued or answered.
    if (std::string denial = aclDenial(req, cmd); !denial.empty()) return reject(denial);
  }
  if (state_.unconfirmed > 0) {
    // A reply that changes the client's state is outstanding. Only a plain
    // pass-through on the pinned connection is handled the same whatever it
    // says; anything else waits for it.
    const bool ends_multi = local == LocalCommand::Exec || local == LocalCommand::Discard;
    const bool plain =
        state_.pinned && cmd.known &&
        ((ends_multi && !state_.multi_aborted) ||
         (route == Route::Forward && local == LocalCommand::None &&
          !(keyspaces && (namesMappedKey(req, *command) || touchesReservedKey(req, *command)))));
    if (!plain) return Flow::Barrier;
  }
  done = false;
  return Flow::Continue;
}

Pipeline::Flow Pipeline::stepInMulti(const resp::Request& req, const commands::Command* command,
                                     LocalCommand local) {
  // Inside MULTI Redis queues (or refuses) everything; only QUIT and RESET
  // are Larder's own.
  if (local == LocalCommand::Quit || local == LocalCommand::Reset) return this->local(req, local);
  if (local == LocalCommand::Exec || local == LocalCommand::Discard) {
    if (ports_.backend.saturated(Conn::Pinned)) return Flow::Saturated;
    if (state_.multi_aborted && local == LocalCommand::Exec) {
      // A command was refused while queueing: like Redis, discard it all.
      resp::Request discard;
      discard.args = {"DISCARD"};
      discard.inline_form = true;
      replacements_[queue_.nextTag()] = resp::errorReply(errors::kExecAbort);
      return forwardChanging(discard, Change::EndMulti);
    }
    return forwardChanging(req, Change::EndMulti);
  }
  if (local == LocalCommand::Auth || local == LocalCommand::Hello) {
    // Queued, they would run on the dedicated backend connection and change
    // its user or protocol for whoever gets it from the pool next; the
    // session's own user and protocol would not change at all.
    refuse(errors::notInMulti(req.args[0]));
    return Flow::Continue;
  }
  if (command != nullptr) {
    if (std::string refusal = refusalInTransaction(req, *command); !refusal.empty()) {
      refuse(refusal);
      return Flow::Continue;
    }
    if (local == LocalCommand::Client || local == LocalCommand::Monitor) {
      // Queued, they would run in Redis on the pinned connection: CLIENT
      // REPLY would silence replies Larder waits for, CLIENT KILL and LIST
      // would see Larder's backend connections.
      if (command->name() != "client|setname" && command->name() != "client|getname") {
        refuse(errors::notInMulti(req.args.size() > 1 && local == LocalCommand::Client
                                      ? std::string(req.args[0]) + " " + std::string(req.args[1])
                                      : std::string(req.args[0])));
        return Flow::Continue;
      }
    }
  }
  if (feed_ == Feed::Now) feed_ = Feed::Queued;  // shown at EXEC, as Redis shows it
  ++multi_queued_;
  multi_writes_ = multi_writes_ || pausedByWrite(command);
  return forward(req, Conn::Pinned);
}

Pipeline::Flow Pipeline::stepStream(const resp::Request& req, const commands::Resolved& cmd,
                                    Route route, LocalCommand local) {
  // Pub/sub: the dedicated connection streams frames straight back, so a
  // reply of Larder's own cannot be slotted in between. Redis itself allows
  // only the SUBSCRIBE family, PING, QUIT and RESET while subscribed; any
  // other command (or any command after RESET de-authenticated the client)
  // first asks Redis whether the subscriptions are over (syncStream).
  const bool pubsub_command = route == Route::PubSub || local == LocalCommand::Ping ||
                              local == LocalCommand::Quit || local == LocalCommand::Reset;
  if (paused(cmd.command, local)) return Flow::Paused;
  // A denied command is answered here, once the stream is in step.
  std::string denial = restricted() && cmd.known ? aclDenial(req, cmd) : std::string();
  if (!pubsub_command || !state_.authenticated || !denial.empty()) {
    if (sync_ == StreamSync::None) return syncStream();
    const bool subscribed = sync_ == StreamSync::Subscribed;
    sync_ = StreamSync::None;
    if (!subscribed) return step(req, cmd);  // the stream has ended: route as usual
    feed_ = Feed::None;  // Redis refuses it in this context: not shown to monitors
    if (!denial.empty()) {
      replyError(denial);
      return Flow::Continue;
    }
    // Redis' refusal is an ordinary reply, which CLIENT REPLY OFF drops.
    if (queue_.silenced()) return Flow::Continue;
  }
  // PING's reply is a reply too; the (un)subscribe confirmations are pushes
  // and are written whatever CLIENT REPLY says.
  if (local == LocalCommand::Ping && queue_.silenced()) return Flow::Continue;
  if (local == LocalCommand::Reset) {
    resetUser();
    state_.name.clear();
    clearConnectionState();
    setProtocol(false);          // and returns to RESP2; its +RESET is the same in both
    state_.dirty_stream = true;  // RESET de-authenticates the backend connection too
  }
  sendOnStream(req);
  if (local == LocalCommand::Quit) {
    // Redis answers +OK on the stream and closes; pinClosed() then ends the client.
    end_ = End::AfterBackend;
    return Flow::Stop;
  }
  return Flow::Continue;
}

Pipeline::Flow Pipeline::route(const resp::Request& req, const commands::Command* command,
                               Route route, LocalCommand local) {
  if (command != nullptr && !ports_.admin.keyspaces().empty() &&
      (route == Route::Forward || route == Route::Blocking || route == Route::Transaction)) {
    if (std::string refusal = guardKeys(req, *command); !refusal.empty()) {
      refuse(refusal);
      return Flow::Continue;
    }
    Flow flow;
    if (route != Route::Transaction && routeMapped(req, *command, flow)) return flow;
  }
  switch (route) {
    case Route::Local:
      if (command != nullptr && !command->flag(commands::kAllowBusy)) {
        // Redis refuses it while a script keeps it busy; a local answer must too.
        if (const std::string_view busy = ports_.backend.redisBusy(); !busy.empty()) {
          refuse(busy);
          return Flow::Continue;
        }
      }
      return this->local(req, local);
    case Route::OutOfBand:
      return outOfBand(req);
    case Route::Forward:
      return forwardCurrent(req);
    case Route::Refused:
      refuse(command->handling.refusal.empty()
                 ? errors::notThroughProxy(req.args[0])
                 : "ERR Larder: " + std::string(command->handling.refusal));
      return Flow::Continue;
    case Route::Transaction:
    case Route::Blocking:
    case Route::Sticky:
      if (needsBarrierToPin()) return Flow::Barrier;
      if (!pin(false)) return Flow::Continue;
      if (route == Route::Sticky) return sticky(req, *command);
      if (route == Route::Transaction) {
        return forwardChanging(req, command->name() == "multi" ? Change::Multi : Change::Watch);
      }
      return forward(req, Conn::Pinned);
    case Route::PubSub:
      if (state_.resp3) return subscribeResp3(req);
      if (!queue_.empty()) return Flow::Barrier;  // stream frames carry no tags
      if (!pin(true)) return Flow::Continue;
      sendOnStream(req);
      return Flow::Continue;
  }
  return Flow::Continue;
}

// ------------------------------------------------------------ connections

std::optional<Conn> Pipeline::currentConnection() {
  if (state_.pinned) {
    if (!releasable()) return Conn::Pinned;
    if (!queue_.empty()) return std::nullopt;  // the pinned call must finish first
    releasePin();
  }
  return Conn::Shared;
}

Pipeline::Flow Pipeline::forwardCurrent(const resp::Request& req) {
  const std::optional<Conn> conn = currentConnection();
  return conn ? forward(req, *conn) : Flow::Barrier;
}

Pipeline::Flow Pipeline::outOfBand(const resp::Request& req) {
  // SCRIPT KILL, FUNCTION KILL: on a connection that no busy script holds
  // up; after this client's own earlier requests, as on one connection.
  if (!queue_.empty()) return Flow::Barrier;
  return forward(req, Conn::OutOfBand);
}

Pipeline::Flow Pipeline::forward(const resp::Request& req, Conn conn) {
  if (ports_.backend.saturated(conn)) return Flow::Saturated;
  const std::uint64_t tag = queue_.reserve();
  if (conn == Conn::Pinned && state_.push) native_.push_back(tag);  // already RESP3
  if (conn == Conn::Shared && last_command_ != nullptr && last_command_->handling.script) {
    ports_.backend.watchScript(tag);  // first: send() may answer at once
  }
  if (req.inline_form) {
    scratch_.clear();
    resp::appendMultibulk(scratch_, req.args);
    ports_.backend.send(conn, scratch_, tag);
  } else {
    ports_.backend.send(conn, req.raw, tag);
  }
  return Flow::Continue;
}

void Pipeline::sendOnStream(const resp::Request& req) {
  if (req.inline_form) {
    scratch_.clear();
    resp::appendMultibulk(scratch_, req.args);
    ports_.backend.sendOnStream(scratch_);
  } else {
    ports_.backend.sendOnStream(req.raw);
  }
}

Pipeline::Flow Pipeline::forwardChanging(const resp::Request& req, Change change, long long db) {
  if (ports_.backend.saturated(Conn::Pinned)) return Flow::Saturated;
  // Registered first: a backend that is down answers inside send().
  unconfirmed_.push_back({queue_.nextTag(), change, db, {}});
  if (feed_ == Feed::Now && (change == Change::Select || change == Change::EndMulti)) {
    // Shown once Redis answers: SELECT with the db it leaves the client in,
    // EXEC after the commands it ran.
    unconfirmed_.back().monitor = std::move(feed_args_);
    feed_ = Feed::AtConfirm;
  }
  ++state_.unconfirmed;
  return forward(req, Conn::Pinned);
}

bool Pipeline::pin(bool stream) {
  if (!state_.pinned) {
    if (!ports_.backend.pin()) {
      replyError(errors::kNoPinned);
      return false;
    }
    state_.pinned = true;
  }
  if (stream && !state_.stream) {
    state_.stream = true;
    ports_.backend.setStream(Stream::All);
  }
  return true;
}

std::optional<Conn> Pipeline::mappedConnection() {
  // The RESP3 pinned connection (pub/sub) answers in RESP3, which the
  // read-through side does not read: mapped keys use the shared connection,
  // after this client's earlier requests.
  if (state_.push) return queue_.empty() ? std::optional<Conn>(Conn::Shared) : std::nullopt;
  return currentConnection();
}

bool Pipeline::releasable() const {
  return state_.pinned && !state_.stream && !state_.push && !state_.in_multi && !state_.watching &&
         !state_.sticky && !state_.redirect_target && state_.unconfirmed == 0 &&
         state_.db == ports_.admin.config().redis.db;
}

void Pipeline::releasePin() {
  const bool clean = releasable() && !state_.dirty_stream;
  ports_.backend.unpin(clean);
  state_.pinned = state_.stream = state_.in_multi = state_.watching = state_.sticky =
      state_.redirect_target = state_.dirty_stream = false;
}

void Pipeline::dropPin() {
  if (!state_.pinned) return;
  ports_.backend.unpin(false);
  state_.pinned = state_.stream = state_.in_multi = state_.watching = state_.sticky =
      state_.redirect_target = state_.dirty_stream = state_.multi_aborted = state_.push = false;
  state_.subscriptions = {};
  state_.unconfirmed = 0;
  unconfirmed_.clear();
  native_.clear();
  hidden_.clear();
  protocol_tag_ = 0;
  feed_multi_.clear();
  multi_queued_ = 0;
  multi_writes_ = false;
}

// ------------------------------------------------------------- pub/sub sync

Pipeline::Flow Pipeline::syncStream() {
  // PING with a token of ours: Redis answers ["pong", token] while the client
  // is subscribed and a plain bulk token once it is not. Frames before it
  // belong to earlier commands; the token reply itself is swallowed.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  sync_token_ = "__larder:sync:" + std::to_string(rng()) + ":" + std::to_string(++sync_count_);
  std::string ping;
  resp::appendMultibulk(ping, {"PING", sync_token_});
  sync_tag_ = queue_.reserve();
  ports_.backend.sendOnStream(ping);
  return Flow::Barrier;
}

void Pipeline::onStreamSync(std::string_view frame) {
  const std::uint64_t tag = sync_tag_;
  sync_tag_ = 0;
  if (frame.front() == '$') {  // no subscriptions left: back to normal routing
    sync_ = StreamSync::Ended;
    state_.stream = false;
    state_.subscriptions = {};
    ports_.backend.setStream(Stream::Off);
    // Other state (tracking, a redirect target, a db) keeps the connection.
    if (releasable()) releasePin();
  } else {
    sync_ = StreamSync::Subscribed;
  }
  observe(tag);
  queue_.complete(tag, {}, out_);
}

Pipeline::Flow Pipeline::rejectExec(std::string_view text) {
  constexpr std::string_view kErr = "ERR ";
  if (text.substr(0, kErr.size()) == kErr) text.remove_prefix(kErr.size());
  std::string abort =
      resp::errorReply("EXECABORT Transaction discarded because of: " + std::string(text));
  if (!state_.in_multi) {
    reply(abort);
    return Flow::Continue;
  }
  resp::Request discard;
  discard.args = {"DISCARD"};
  discard.inline_form = true;
  replacements_[queue_.nextTag()] = std::move(abort);
  return forwardChanging(discard, Change::EndMulti);
}

void Pipeline::refuse(std::string_view text) {
  if (state_.in_multi) state_.multi_aborted = true;
  feed_ = Feed::None;  // refused before it runs: Redis does not show it
  replyError(text);
}

bool Pipeline::plain() const {
  return no_keyspaces_ && state_.authenticated && !state_.pinned && !state_.in_multi &&
         !state_.push && !state_.monitor && state_.unconfirmed == 0 && !hold_ && !restricted() &&
         pause_.idle();
}

bool Pipeline::blocked() const {
  return state_.stream || state_.push || state_.monitor || (state_.pinned && !queue_.empty());
}

}  // namespace larder::proxy
