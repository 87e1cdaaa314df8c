// Commands Larder answers itself: connection state that must not leak onto a
// shared backend connection (AUTH, SELECT, CLIENT SETNAME, HELLO, RESET) and
// the cheap ones that need no backend (PING, ECHO).
#include "larder/common/errors.hpp"
#include "larder/proxy/pipeline.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::proxy {

namespace {

using commands::equalsLower;
using commands::LocalCommand;

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
    case LocalCommand::Monitor:
      return monitor();
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
  if (state_.pinned && !state_.in_multi &&
      (state_.push || state_.sticky || state_.redirect_target)) {
    // Redis answers and closes the dedicated connection, so once the client
    // has the +OK, Redis no longer knows the client other clients' tracking
    // redirects to (they get tracking-redir-broken), as directly.
    resp::Request quit;
    quit.args = {"QUIT"};
    quit.inline_form = true;
    const Flow flow = forward(quit, Conn::Pinned);
    if (flow != Flow::Continue) return flow;
    end_ = End::AfterBackend;
    return Flow::Stop;
  }
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
  // The pinned connection follows the protocol (below): room for the HELLO first.
  if (state_.pinned && ports_.backend.saturated(Conn::Pinned)) return Flow::Saturated;
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
  const bool resp3 = version == 3;
  // A RESP3 pinned connection (pub/sub, tracking) back to RESP2, or a
  // tracking connection (or a redirect target's) to RESP3: Redis pushes
  // invalidations and messages in the protocol of the connection.
  if (state_.pinned && !state_.stream &&
      (state_.push ? !resp3 : resp3 && (state_.sticky || state_.redirect_target))) {
    return helloPinned(resp3, std::move(out));
  }
  setProtocol(resp3);  // the reply itself is in the new protocol (a map in RESP3)
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
  clearConnectionState();
  resetUser();
  setProtocol(false);  // RESET goes back to RESP2, as in Redis
  reply("+RESET\r\n");
  return Flow::Continue;
}

}  // namespace larder::proxy
