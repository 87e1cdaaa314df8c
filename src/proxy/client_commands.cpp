// CLIENT and MONITOR, answered for Larder's clients. Redis' own clients are
// Larder's backend connections, shared by many clients, so nothing here may
// reach Redis: CLIENT LIST and KILL see every worker's clients (the I/O shell
// gathers them), CLIENT REPLY silences this client's reply slots, CLIENT
// PAUSE holds Larder's clients, and MONITOR is fed by Larder itself.
#include "larder/common/errors.hpp"
#include "larder/proxy/pipeline.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::proxy {

namespace {

using commands::equalsLower;

}  // namespace

Pipeline::Flow Pipeline::client(const resp::Request& req) {
  const auto& args = req.args;
  if (args.size() < 2) return forwardCurrent(req);  // Redis' arity error
  const std::string_view sub = args[1];
  if (equalsLower(sub, "info") || equalsLower(sub, "list")) {
    // This client's line says what its earlier requests left it in
    // (subscriptions, MULTI): they are answered first.
    if (state_.push && push_unsynced_) {
      push_unsynced_ = false;
      sendHidden("*1\r\n$4\r\nPING\r\n");
      return Flow::Barrier;
    }
    if (!queue_.empty()) return Flow::Barrier;
  }
  std::string out;
  if (equalsLower(sub, "setname")) {
    if (!validClientName(args[2])) {
      replyError(errors::kBadClientName);
      return Flow::Continue;
    }
    state_.name = args[2];
    reply("+OK\r\n");
  } else if (equalsLower(sub, "getname")) {
    if (state_.name.empty()) {
      resp::appendNil(out);
    } else {
      resp::appendBulk(out, state_.name);
    }
    reply(out);
  } else if (equalsLower(sub, "id")) {
    resp::appendInteger(out, static_cast<long long>(id_));
    reply(out);
  } else if (equalsLower(sub, "setinfo")) {
    // Redis 7.2's; newer client libraries send it on connect.
    if (args.size() != 4) {
      replyError(errors::arity("client|setinfo"));
      return Flow::Continue;
    }
    if (equalsLower(args[2], "lib-name")) {
      state_.lib_name = args[3];
    } else if (equalsLower(args[2], "lib-ver")) {
      state_.lib_ver = args[3];
    } else {
      replyError(errors::unrecognizedOption(args[2]));
      return Flow::Continue;
    }
    reply("+OK\r\n");
  } else if (equalsLower(sub, "info")) {
    resp::appendBulk(out, clientInfoLine());
    reply(out);
  } else if (equalsLower(sub, "list")) {
    return clientList(req);
  } else if (equalsLower(sub, "kill")) {
    return clientKill(req);
  } else if (equalsLower(sub, "reply")) {
    return clientReply(req);
  } else if (equalsLower(sub, "pause") || equalsLower(sub, "unpause")) {
    return clientPause(req);
  } else if (equalsLower(sub, "no-evict")) {
    if (equalsLower(args[2], "on") || equalsLower(args[2], "off")) {
      state_.no_evict = equalsLower(args[2], "on");
      reply("+OK\r\n");
    } else {
      replyError(errors::kSyntax);
    }
  } else if (equalsLower(sub, "unblock")) {
    return clientUnblock(req);
  } else {
    return forwardCurrent(req);  // HELP and subcommands Redis 7.0 does not have
  }
  return Flow::Continue;
}

Pipeline::Flow Pipeline::clientList(const resp::Request& req) {
  const auto& args = req.args;
  ClientFilter filter;
  if (args.size() == 4 && equalsLower(args[2], "type")) {
    filter.type = parseClientType(args[3]);
    if (!filter.type) {
      replyError(errors::unknownClientType(args[3]));
      return Flow::Continue;
    }
  } else if (args.size() > 3 && equalsLower(args[2], "id")) {
    for (std::size_t i = 3; i < args.size(); ++i) {
      long long id = 0;
      if (!parseInteger(args[i], id)) {
        replyError(errors::kInvalidClientId);
        return Flow::Continue;
      }
      filter.ids.push_back(static_cast<std::uint64_t>(id));
    }
  } else if (args.size() != 2) {
    replyError(errors::kSyntax);
    return Flow::Continue;
  }
  // This client's line is made now, as Redis makes it while running the
  // command (its query buffer still holds the request); the others' on
  // their own workers.
  const ConnectionFacts facts = ports_.client.facts();
  std::string own = filter.matches(summary(facts)) ? clientInfoLine() : std::string();
  filter.skip = id_;
  ports_.admin.clientList(std::move(filter), std::move(own), queue_.reserve());
  return Flow::Continue;
}

Pipeline::Flow Pipeline::clientKill(const resp::Request& req) {
  const auto& args = req.args;
  ClientFilter filter;
  bool skipme = true;
  const bool old_form = args.size() == 3;
  if (old_form) {
    filter.addr = std::string(args[2]);  // CLIENT KILL addr: a client may kill itself
    skipme = false;
  } else {
    for (std::size_t i = 2; i < args.size(); i += 2) {
      if (i + 1 >= args.size()) {
        replyError(errors::kSyntax);
        return Flow::Continue;
      }
      const std::string_view option = args[i], value = args[i + 1];
      if (equalsLower(option, "id")) {
        long long id = 0;
        if (!parseInteger(value, id) || id < 1) {
          replyError(errors::kClientIdPositive);
          return Flow::Continue;
        }
        filter.ids = {static_cast<std::uint64_t>(id)};
      } else if (equalsLower(option, "type")) {
        filter.type = parseClientType(value);
        if (!filter.type) {
          replyError(errors::unknownClientType(value));
          return Flow::Continue;
        }
      } else if (equalsLower(option, "addr")) {
        filter.addr = std::string(value);
      } else if (equalsLower(option, "laddr")) {
        filter.laddr = std::string(value);
      } else if (equalsLower(option, "user")) {
        // Larder's users (users:), or the one default user without them.
        const auto& users = ports_.admin.config().users;
        if (users.empty() ? value != "default" : config::findUser(users, value) == nullptr) {
          replyError(errors::noSuchUser(value));
          return Flow::Continue;
        }
        filter.user = std::string(value);
      } else if (equalsLower(option, "skipme") &&
                 (equalsLower(value, "yes") || equalsLower(value, "no"))) {
        skipme = equalsLower(value, "yes");
      } else {
        replyError(errors::kSyntax);
        return Flow::Continue;
      }
    }
  }
  const ConnectionFacts facts = ports_.client.facts();
  const bool self = !skipme && filter.matches(summary(facts));
  filter.skip = id_;  // this client is closed here, after the reply
  ports_.admin.clientKill(std::move(filter), self, old_form, queue_.reserve());
  if (self) endAfterReplies();
  return self ? Flow::Stop : Flow::Continue;
}

Pipeline::Flow Pipeline::clientUnblock(const resp::Request& req) {
  // The blocked call runs on the client's dedicated connection, whose Redis
  // id is not its CLIENT ID: the I/O shell finds that connection and Redis
  // unblocks it (or answers 0). Redis' checks and their order first.
  const auto& args = req.args;
  bool error = false;
  if (args.size() == 4) {
    if (equalsLower(args[3], "error")) {
      error = true;
    } else if (!equalsLower(args[3], "timeout")) {
      replyError(errors::kUnblockReason);
      return Flow::Continue;
    }
  } else if (args.size() != 3) {
    replyError(errors::arity("client|unblock"));
    return Flow::Continue;
  }
  long long id = 0;
  if (!parseInteger(args[2], id)) {
    replyError(errors::kNotInteger);
    return Flow::Continue;
  }
  if (id <= 0 || static_cast<std::uint64_t>(id) == id_) {
    reply(":0\r\n");  // no such client, or this one, which is not blocked
    return Flow::Continue;
  }
  ports_.admin.clientUnblock(static_cast<std::uint64_t>(id), error, queue_.reserve());
  return Flow::Continue;
}

Pipeline::Flow Pipeline::clientReply(const resp::Request& req) {
  // Larder drops the replies itself: the request still goes where it goes
  // and takes its place in the order, only its reply is not written. Push
  // frames (pub/sub messages, confirmations) are written, as in Redis.
  const std::string_view mode = req.args[2];
  if (equalsLower(mode, "on")) {
    state_.reply_off = state_.reply_skip = false;
    queue_.silence(false);  // ON's own +OK is written, even after SKIP
    reply("+OK\r\n");
  } else if (equalsLower(mode, "off")) {
    state_.reply_off = true;
  } else if (equalsLower(mode, "skip")) {
    if (!state_.reply_off) state_.reply_skip = true;  // the next command's reply
  } else {
    replyError(errors::kSyntax);
  }
  return Flow::Continue;
}

Pipeline::Flow Pipeline::clientPause(const resp::Request& req) {
  const auto& args = req.args;
  if (equalsLower(args[1], "unpause")) {
    ports_.admin.pause().unpause();
    reply("+OK\r\n");
    return Flow::Continue;
  }
  PauseMode mode = PauseMode::All;
  if (args.size() == 4) {
    if (equalsLower(args[3], "write")) {
      mode = PauseMode::Write;
    } else if (!equalsLower(args[3], "all")) {
      replyError(errors::kPauseMode);
      return Flow::Continue;
    }
  } else if (args.size() != 3) {
    replyError(errors::kSyntax);
    return Flow::Continue;
  }
  long long ms = 0;
  if (!parseInteger(args[2], ms)) {
    replyError(errors::kTimeoutNotInteger);
    return Flow::Continue;
  }
  if (ms < 0) {
    replyError(errors::kTimeoutNegative);
    return Flow::Continue;
  }
  ports_.admin.pause().pause(std::chrono::steady_clock::now() + std::chrono::milliseconds(ms),
                             mode);
  reply("+OK\r\n");
  return Flow::Continue;
}

Pipeline::Flow Pipeline::monitor() {
  // A second MONITOR is ignored, without a reply (Redis' monitorCommand).
  if (state_.monitor) return Flow::Continue;
  state_.monitor = true;
  ports_.client.monitor(true);
  reply("+OK\r\n");
  return Flow::Continue;
}

bool Pipeline::subscribed() const {
  return state_.stream || (state_.push && state_.subscriptions.any());
}

void Pipeline::clearConnectionState() {
  // What RESET clears besides the db, user, protocol and pinned state.
  if (state_.monitor) ports_.client.monitor(false);
  state_.monitor = state_.reply_off = state_.reply_skip = false;
  queue_.silence(false);  // RESET's own +RESET is written
}

ClientSummary Pipeline::summary(const ConnectionFacts& facts) const {
  ClientSummary s;
  s.id = id_;
  s.addr = facts.peer;
  s.laddr = facts.local;
  s.user = state_.user ? std::string_view(state_.user->name) : std::string_view("default");
  s.type = subscribed() ? ClientType::PubSub : ClientType::Normal;
  return s;
}

std::string Pipeline::clientInfoLine() const {
  // Every field Redis 7 prints, in its order: client libraries parse them all.
  const ConnectionFacts f = ports_.client.facts();
  std::string flags;
  if (state_.monitor) flags += 'O';
  if (subscribed()) flags += 'P';
  if (state_.in_multi) flags += 'x';
  if (state_.pinned && !state_.stream && !queue_.empty()) flags += 'b';
  if (state_.sticky) flags += 't';
  if (end_ != End::None) flags += 'c';
  if (state_.no_evict) flags += 'e';
  if (flags.empty()) flags = "N";
  std::string line;
  line.reserve(400);
  auto field = [&line](std::string_view key, const auto& value) {
    if (!line.empty()) line += ' ';
    line.append(key);
    line += '=';
    if constexpr (std::is_convertible_v<decltype(value), std::string_view>) {
      line.append(value);
    } else {
      line += std::to_string(value);
    }
  };
  field("id", id_);
  field("addr", f.peer);
  field("laddr", f.local);
  field("fd", f.fd);
  field("name", state_.name);
  field("age", f.age_seconds);
  field("idle", f.idle_seconds);
  field("flags", flags);
  field("db", state_.db);
  field("sub", state_.subscriptions.channels);
  field("psub", state_.subscriptions.patterns);
  field("ssub", state_.subscriptions.shard);
  field("multi", state_.in_multi ? static_cast<long long>(multi_queued_) : -1LL);
  field("qbuf", f.query_buffer);
  field("qbuf-free", f.query_buffer_free);
  field("argv-mem", 0);
  field("multi-mem", 0);
  field("rbs", f.query_buffer_capacity);
  field("rbp", f.query_buffer_capacity);
  field("obl", out_.size());
  field("oll", queue_.outstanding());
  field("omem", f.writing + queue_.heldBytes());
  field("tot-mem", f.memory + out_.capacity());
  field("events", "r");
  field("cmd", last_command_ ? last_command_->name() : std::string_view("NULL"));
  field("user", state_.user ? std::string_view(state_.user->name) : std::string_view("default"));
  field("redir", -1);
  field("resp", state_.resp3 ? 3 : 2);
  field("lib-name", state_.lib_name);
  field("lib-ver", state_.lib_ver);
  line += '\n';
  return line;
}

}  // namespace larder::proxy
