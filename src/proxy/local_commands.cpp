// Commands Larder answers itself: connection state that must not leak onto a
// shared backend connection (AUTH, SELECT, CLIENT SETNAME, HELLO, RESET) and
// the cheap ones that need no backend (PING, ECHO).
#include <charconv>

#include "larder/common/errors.hpp"
#include "larder/proxy/pipeline.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::proxy {

namespace {

using commands::equalsLower;
using commands::LocalCommand;

bool parseInteger(std::string_view s, long long& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// The enabled user `name` when `password` opens it (Redis' ACLCheckUserCredentials):
// nopass takes any password, otherwise its SHA-256 must equal a stored digest
// (compared in constant time).
const config::UserConfig* checkCredentials(const std::vector<config::UserConfig>& users,
                                           std::string_view name, std::string_view password) {
  const config::UserConfig* user = config::findUser(users, name);
  if (!user || !user->enabled) return nullptr;
  if (user->nopass) return user;
  const acl::Digest given = acl::sha256(password);
  bool match = false;
  for (const acl::Digest& digest : user->passwords) match |= acl::digestEquals(given, digest);
  return match ? user : nullptr;
}

bool validClientName(std::string_view name) {
  for (char c : name) {
    if (c < '!' || c > '~') return false;
  }
  return true;
}

}  // namespace

Pipeline::Flow Pipeline::local(const resp::Request& req, LocalCommand command) {
  const auto& args = req.args;
  switch (command) {
    case LocalCommand::Ping:
      return ping(req);
    case LocalCommand::Echo: {
      std::string out;
      resp::appendBulk(out, args[1]);
      reply(out);
      return Flow::Continue;
    }
    case LocalCommand::Quit:
      return quit();
    case LocalCommand::Reset:
      return reset(req);
    case LocalCommand::Hello:
      return hello(req);
    case LocalCommand::Auth:
      return auth(req);
    case LocalCommand::Select:
      return select(req);
    case LocalCommand::Info:
      return info(req);
    case LocalCommand::Larder:
      return larder(req);
    case LocalCommand::FlushAll:
      return flushAll(req);
    case LocalCommand::Client:
      return client(req);
    case LocalCommand::Acl:
      return acl(req);
    case LocalCommand::Exec:
    case LocalCommand::Discard:
      // Outside a confirmed MULTI: Redis answers "without MULTI", or ends a
      // MULTI whose +OK is still on its way.
      return state_.pinned ? forwardChanging(req, Change::EndMulti) : forward(req, Conn::Shared);
    case LocalCommand::Unwatch:
      return state_.pinned ? forwardChanging(req, Change::Unwatch) : forward(req, Conn::Shared);
    case LocalCommand::None:
      break;
  }
  return forwardCurrent(req);
}

Pipeline::Flow Pipeline::ping(const resp::Request& req) {
  if (state_.pinned && !releasable()) return forward(req, Conn::Pinned);
  if (req.args.size() > 2) {
    replyError(errors::arity("ping"));
  } else if (req.args.size() == 2) {
    std::string out;
    resp::appendBulk(out, req.args[1]);
    reply(out);
  } else {
    reply("+PONG\r\n");
  }
  return Flow::Continue;
}

Pipeline::Flow Pipeline::quit() {
  reply("+OK\r\n");
  endAfterReplies();  // commands pipelined after QUIT are not executed
  return Flow::Stop;
}

Pipeline::Flow Pipeline::auth(const resp::Request& req) {
  const auto& args = req.args;
  if (args.size() > 3) {
    replyError(errors::kSyntax);
    return Flow::Continue;
  }
  const config::Config& config = ports_.admin.config();
  if (args.size() == 2) {
    const config::UserConfig* default_user = config::findUser(config.users, "default");
    if (default_user ? default_user->nopass : config.requirepass.empty()) {
      replyError(errors::kAuthWithoutPassword);
      return Flow::Continue;
    }
  }
  const std::string_view user = args.size() == 3 ? args[1] : std::string_view("default");
  const config::UserConfig* found = checkCredentials(config.users, user, args.back());
  if (!found) {
    replyError(errors::kWrongPass);
    return Flow::Continue;
  }
  authenticateAs(*found);
  reply("+OK\r\n");
  return Flow::Continue;
}

Pipeline::Flow Pipeline::hello(const resp::Request& req) {
  const auto& args = req.args;
  long long version = state_.resp3 ? 3 : 2;  // HELLO alone keeps the protocol
  if (args.size() >= 2 && !parseInteger(args[1], version)) {
    replyError(errors::kProtocolVersion);
    return Flow::Continue;
  }
  if (version != 2 && version != 3) {
    replyError(errors::kNoProto);
    return Flow::Continue;
  }
  std::string_view user, password, name;
  bool has_auth = false, has_name = false;
  for (std::size_t i = 2; i < args.size(); ++i) {
    if (equalsLower(args[i], "auth") && i + 2 < args.size()) {
      user = args[i + 1];
      password = args[i + 2];
      has_auth = true;
      i += 2;
    } else if (equalsLower(args[i], "setname") && i + 1 < args.size()) {
      name = args[++i];
      has_name = true;
    } else {
      replyError(errors::helloOption(args[i]));
      return Flow::Continue;
    }
  }
  if (has_auth) {
    const config::UserConfig* found = checkCredentials(ports_.admin.config().users, user, password);
    if (!found) {
      replyError(errors::kWrongPass);
      return Flow::Continue;
    }
    authenticateAs(*found);
  }
  if (!state_.authenticated) {
    replyError(errors::kNoAuthHello);
    return Flow::Continue;
  }
  if (has_name) {
    if (!validClientName(name)) {
      replyError(errors::kBadClientName);
      return Flow::Continue;
    }
    state_.name = name;
  }
  std::string out;
  resp::appendArrayHeader(out, 14);
  for (std::string_view s : {"server", "redis", "version", "7.0.0", "proto"}) {
    resp::appendBulk(out, s);
  }
  resp::appendInteger(out, version);
  resp::appendBulk(out, "id");
  resp::appendInteger(out, static_cast<long long>(id_));
  for (std::string_view s : {"mode", "standalone", "role", "master", "modules"}) {
    resp::appendBulk(out, s);
  }
  resp::appendArrayHeader(out, 0);
  setProtocol(version == 3);  // the reply itself is in the new protocol (a map in RESP3)
  reply(out);
  return Flow::Continue;
}

Pipeline::Flow Pipeline::select(const resp::Request& req) {
  long long db = 0;
  if (!parseInteger(req.args[1], db)) {
    replyError(errors::kNotInteger);
    return Flow::Continue;
  }
  // The db changes when Redis accepts it (an out-of-range db is refused there).
  if (state_.pinned) return forwardChanging(req, Change::Select, db);
  if (db == ports_.admin.config().redis.db) {
    reply("+OK\r\n");
    return Flow::Continue;
  }
  if (needsBarrierToPin()) return Flow::Barrier;
  if (!pin(false)) return Flow::Continue;
  return forwardChanging(req, Change::Select, db);
}

Pipeline::Flow Pipeline::reset(const resp::Request&) {
  if (!queue_.empty()) return Flow::Barrier;  // earlier replies come first
  dropPin();
  state_.db = ports_.admin.config().redis.db;
  state_.name.clear();
  resetUser();
  setProtocol(false);  // RESET goes back to RESP2, as in Redis
  reply("+RESET\r\n");
  return Flow::Continue;
}

Pipeline::Flow Pipeline::client(const resp::Request& req) {
  const auto& args = req.args;
  if (args.size() < 2) return forwardCurrent(req);
  const std::string_view sub = args[1];
  auto arity = [&](std::size_t n) {
    if (args.size() == n) return true;
    std::string name = "client|" + std::string(sub);
    replyError(errors::arity(name));
    return false;
  };
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
    if (!arity(4)) return Flow::Continue;
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
  } else {
    return forwardCurrent(req);  // LIST, KILL, PAUSE, UNBLOCK, HELP...
  }
  return Flow::Continue;
}

std::string Pipeline::clientInfoLine() const {
  // Every field Redis 7 prints, in its order: client libraries parse them all.
  const ConnectionFacts f = ports_.client.facts();
  const char* flags = state_.in_multi ? "x" : state_.stream ? "P" : "N";
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
  field("sub", 0);
  field("psub", 0);
  field("ssub", 0);
  field("multi", state_.in_multi ? 0 : -1);
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
  field("cmd", "client|info");
  field("user", state_.user ? std::string_view(state_.user->name) : std::string_view("default"));
  field("redir", -1);
  field("resp", state_.resp3 ? 3 : 2);
  field("lib-name", state_.lib_name);
  field("lib-ver", state_.lib_ver);
  line += '\n';
  return line;
}

}  // namespace larder::proxy
