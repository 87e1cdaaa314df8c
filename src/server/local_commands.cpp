// Commands Larder answers itself: connection state that must not leak onto a
// shared backend connection (AUTH, SELECT, CLIENT SETNAME, HELLO, RESET) and
// the cheap ones that need no backend (PING, ECHO).
#include <charconv>

#include "larder/resp/reply_writer.hpp"
#include "larder/server/session.hpp"
#include "larder/server/worker.hpp"

namespace larder::server {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string arityError(std::string_view command) {
  return "ERR wrong number of arguments for '" + lower(command) + "' command";
}

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

Session::Flow Session::routeLocal(const resp::Request& req, commands::LocalCommand command) {
  const auto& args = req.args;
  switch (command) {
    case commands::LocalCommand::Ping:
      if (pinned_ && !releasable()) return forward(req, *pinned_);
      if (args.size() > 2) {
        replyError(arityError(args[0]));
      } else if (args.size() == 2) {
        std::string out;
        resp::appendBulk(out, args[1]);
        reply(out);
      } else {
        reply("+PONG\r\n");
      }
      return Flow::Continue;
    case commands::LocalCommand::Echo: {
      if (args.size() != 2) {
        replyError(arityError(args[0]));
        return Flow::Continue;
      }
      std::string out;
      resp::appendBulk(out, args[1]);
      reply(out);
      return Flow::Continue;
    }
    case commands::LocalCommand::Quit:
      reply("+OK\r\n");
      closeWhenFlushed();  // commands pipelined after QUIT are not executed
      return Flow::Stop;
    case commands::LocalCommand::Reset:
      return reset(req);
    case commands::LocalCommand::Hello:
      return hello(req);
    case commands::LocalCommand::Auth:
      return auth(req);
    case commands::LocalCommand::Select:
      return select(req);
    case commands::LocalCommand::Info:
      return info(req);
    case commands::LocalCommand::Larder:
      return larder(req);
    case commands::LocalCommand::FlushAll:
      return flushAll(req);
    case commands::LocalCommand::Client:
      return client(req);
    case commands::LocalCommand::Acl:
      return acl(req);
    case commands::LocalCommand::Exec:
    case commands::LocalCommand::Discard:
    case commands::LocalCommand::Unwatch:
      if (pinned_) {
        watching_ = false;
        return forward(req, *pinned_);
      }
      return forward(req, *shared_);  // Redis answers "without MULTI" (or OK)
    case commands::LocalCommand::None:
      break;
  }
  return forwardCurrent(req);
}

Session::Flow Session::auth(const resp::Request& req) {
  const auto& args = req.args;
  if (args.size() < 2) {
    replyError(arityError(args[0]));
    return Flow::Continue;
  }
  if (args.size() > 3) {
    replyError("ERR syntax error");
    return Flow::Continue;
  }
  const auto& users = worker_.config().users;
  if (args.size() == 2) {
    const config::UserConfig* default_user = config::findUser(users, "default");
    if (default_user ? default_user->nopass : worker_.config().requirepass.empty()) {
      replyError(
          "ERR AUTH <password> called without any password configured for the default user. "
          "Are you sure your configuration is correct?");
      return Flow::Continue;
    }
  }
  const std::string_view user = args.size() == 3 ? args[1] : std::string_view("default");
  const config::UserConfig* found = checkCredentials(users, user, args.back());
  if (!found) {
    replyError("WRONGPASS invalid username-password pair or user is disabled.");
    return Flow::Continue;
  }
  authenticateAs(*found);
  reply("+OK\r\n");
  return Flow::Continue;
}

Session::Flow Session::hello(const resp::Request& req) {
  const auto& args = req.args;
  long long version = resp3_ ? 3 : 2;  // HELLO alone keeps the protocol
  if (args.size() >= 2 && !parseInteger(args[1], version)) {
    replyError("ERR Protocol version is not an integer or out of range");
    return Flow::Continue;
  }
  if (version != 2 && version != 3) {
    replyError("NOPROTO unsupported protocol version");
    return Flow::Continue;
  }
  std::string_view user, password, name;
  bool has_auth = false, has_name = false;
  for (std::size_t i = 2; i < args.size(); ++i) {
    if (commands::equalsIgnoreCase(args[i], "auth") && i + 2 < args.size()) {
      user = args[i + 1];
      password = args[i + 2];
      has_auth = true;
      i += 2;
    } else if (commands::equalsIgnoreCase(args[i], "setname") && i + 1 < args.size()) {
      name = args[++i];
      has_name = true;
    } else {
      replyError("ERR Syntax error in HELLO option '" + std::string(args[i]) + "'");
      return Flow::Continue;
    }
  }
  if (has_auth) {
    const config::UserConfig* found = checkCredentials(worker_.config().users, user, password);
    if (!found) {
      replyError("WRONGPASS invalid username-password pair or user is disabled.");
      return Flow::Continue;
    }
    authenticateAs(*found);
  }
  if (!authenticated_) {
    replyError(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
        "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
        "select the RESP protocol version at the same time");
    return Flow::Continue;
  }
  if (has_name) {
    if (!validClientName(name)) {
      replyError("ERR Client names cannot contain spaces, newlines or special characters.");
      return Flow::Continue;
    }
    name_ = name;
  }
  std::string out;
  resp::appendArrayHeader(out, 14);
  resp::appendBulk(out, "server");
  resp::appendBulk(out, "redis");
  resp::appendBulk(out, "version");
  resp::appendBulk(out, "7.0.0");
  resp::appendBulk(out, "proto");
  resp::appendInteger(out, version);
  resp::appendBulk(out, "id");
  resp::appendInteger(out, static_cast<long long>(id_));
  resp::appendBulk(out, "mode");
  resp::appendBulk(out, "standalone");
  resp::appendBulk(out, "role");
  resp::appendBulk(out, "master");
  resp::appendBulk(out, "modules");
  resp::appendArrayHeader(out, 0);
  setProtocol(version == 3);  // the reply itself is in the new protocol (a map in RESP3)
  reply(out);
  return Flow::Continue;
}

Session::Flow Session::select(const resp::Request& req) {
  const auto& args = req.args;
  if (args.size() != 2) {
    replyError(arityError(args[0]));
    return Flow::Continue;
  }
  long long db = 0;
  if (!parseInteger(args[1], db)) {
    replyError("ERR value is not an integer or out of range");
    return Flow::Continue;
  }
  if (pinned_) {  // the dedicated connection carries the db; Redis checks the range
    db_ = db;
    return forward(req, *pinned_);
  }
  if (db == worker_.config().redis.db) {
    reply("+OK\r\n");
    return Flow::Continue;
  }
  if (needsBarrierToPin()) return Flow::Barrier;
  if (!pin(false)) return Flow::Continue;
  db_ = db;
  return forward(req, *pinned_);
}

Session::Flow Session::reset(const resp::Request& req) {
  if (req.args.size() != 1) {
    replyError(arityError(req.args[0]));
    return Flow::Continue;
  }
  if (!queue_.empty()) return Flow::Barrier;  // earlier replies come first
  dropPin();
  stream_ = in_multi_ = watching_ = sticky_ = false;
  db_ = worker_.config().redis.db;
  name_.clear();
  resetUser();
  setProtocol(false);  // RESET goes back to RESP2, as in Redis
  reply("+RESET\r\n");
  return Flow::Continue;
}

Session::Flow Session::client(const resp::Request& req) {
  const auto& args = req.args;
  if (args.size() < 2) return forwardCurrent(req);  // Redis words the arity error
  const std::string sub = lower(args[1]);
  auto arity = [&](std::size_t n) {
    if (args.size() == n) return true;
    replyError("ERR wrong number of arguments for 'client|" + sub + "' command");
    return false;
  };
  std::string out;
  if (sub == "setname") {
    if (!arity(3)) return Flow::Continue;
    if (!validClientName(args[2])) {
      replyError("ERR Client names cannot contain spaces, newlines or special characters.");
      return Flow::Continue;
    }
    name_ = args[2];
    reply("+OK\r\n");
  } else if (sub == "getname") {
    if (!arity(2)) return Flow::Continue;
    if (name_.empty()) {
      resp::appendNil(out);
    } else {
      resp::appendBulk(out, name_);
    }
    reply(out);
  } else if (sub == "id") {
    if (!arity(2)) return Flow::Continue;
    resp::appendInteger(out, static_cast<long long>(id_));
    reply(out);
  } else if (sub == "setinfo") {
    if (!arity(4)) return Flow::Continue;
    const std::string attr = lower(args[2]);
    if (attr == "lib-name") {
      lib_name_ = args[3];
    } else if (attr == "lib-ver") {
      lib_ver_ = args[3];
    } else {
      replyError("ERR Unrecognized option '" + std::string(args[2]) + "'");
      return Flow::Continue;
    }
    reply("+OK\r\n");
  } else if (sub == "info") {
    if (!arity(2)) return Flow::Continue;
    resp::appendBulk(out, clientInfoLine());
    reply(out);
  } else {
    return forwardCurrent(req);  // LIST, KILL, PAUSE, UNBLOCK, HELP...
  }
  return Flow::Continue;
}

std::string Session::clientInfoLine() {
  // Every field Redis 7 prints, in its order: client libraries parse them all.
  const auto now = std::chrono::steady_clock::now();
  const auto age = std::chrono::duration_cast<std::chrono::seconds>(now - created_).count();
  const auto idle = std::chrono::duration_cast<std::chrono::seconds>(now - last_active_).count();
  boost::system::error_code ec;
  const auto local = socket_.tcp().local_endpoint(ec);
  const std::string laddr =
      ec ? "" : local.address().to_string() + ":" + std::to_string(local.port());
  const char* flags = in_multi_ ? "x" : stream_ ? "P" : "N";
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
  field("addr", peer_);
  field("laddr", laddr);
  field("fd", static_cast<long long>(socket_.tcp().native_handle()));
  field("name", name_);
  field("age", static_cast<long long>(age));
  field("idle", static_cast<long long>(idle));
  field("flags", flags);
  field("db", db_);
  field("sub", 0);
  field("psub", 0);
  field("ssub", 0);
  field("multi", in_multi_ ? 0 : -1);
  field("qbuf", in_.size());
  field("qbuf-free", in_.writable());
  field("argv-mem", 0);
  field("multi-mem", 0);
  field("rbs", in_.capacity());
  field("rbp", in_.capacity());
  field("obl", out_.size());
  field("oll", queue_.outstanding());
  field("omem", writing_.size() + queue_.heldBytes());
  field("tot-mem", in_.capacity() + out_.capacity() + writing_.capacity());
  field("events", "r");
  field("cmd", "client|info");
  field("user", user_ ? std::string_view(user_->name) : std::string_view("default"));
  field("redir", -1);
  field("resp", resp3_ ? 3 : 2);
  field("lib-name", lib_name_);
  field("lib-ver", lib_ver_);
  line += '\n';
  return line;
}

}  // namespace larder::server
