// ACL users on a session: who the client is (AUTH, HELLO AUTH, the default
// user), what it may run (aclDenial, checked in route() before a command goes
// anywhere), and what a reload does to it. A config without `users:` has one
// implicit default user allowed everything; such sessions skip the checks.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "larder/acl/commands.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/server/command_keys.hpp"
#include "larder/server/session.hpp"
#include "larder/server/worker.hpp"

namespace larder::server {

namespace {

constexpr std::string_view kKeyDenied =
    "NOPERM this user has no permissions to access one of the keys used as arguments";
constexpr std::string_view kChannelDenied =
    "NOPERM this user has no permissions to access one of the channels used as arguments";

// The channels a command publishes or subscribes to, as Redis 7.0 checks
// them (UNSUBSCRIBE and PUBSUB are not checked). `first`..end of `args`, or
// only `first` for PUBLISH; patterns for PSUBSCRIBE.
struct Channels {
  std::size_t first = 0;  // 0: none
  bool only_first = false;
  bool patterns = false;
};

Channels channelsOf(std::string_view name) {
  if (name == "publish" || name == "spublish") return {1, true, false};
  if (name == "subscribe" || name == "ssubscribe") return {1, false, false};
  if (name == "psubscribe") return {1, false, true};
  return {};
}

std::string commandDenied(std::string_view name) {
  return "NOPERM this user has no permissions to run the '" + std::string(name) + "' command";
}

}  // namespace

void Session::resetUser() {
  const config::Config& config = worker_.config();
  user_config_ = &config;
  const config::UserConfig* default_user = config::findUser(config.users, "default");
  if (!default_user) {  // a config not made by the loader: requirepass alone
    user_ = nullptr;
    setAuthenticated(config.requirepass.empty());
    return;
  }
  // As Redis: a connection starts authenticated as "default" when that user
  // is enabled and needs no password.
  const bool open = default_user->enabled && default_user->nopass;
  user_ = open ? default_user : nullptr;
  setAuthenticated(open);
}

void Session::authenticateAs(const config::UserConfig& user) {
  user_ = &user;
  user_config_ = &worker_.config();
  setAuthenticated(true);
}

bool Session::refreshUser() {
  const config::Config& config = worker_.config();
  user_config_ = &config;
  if (!user_) return true;
  const config::UserConfig* now = config::findUser(config.users, user_->name);
  if (!now || !now->enabled) {
    spdlog::info("client {} ({}): user '{}' was {} by a reload; closing", id_, peer_, user_->name,
                 now ? "disabled" : "removed");
    return false;
  }
  user_ = now;  // changed rules apply to the running session, as in Redis
  return true;
}

void Session::recheckUser() {
  if (closed_ || !user_ || user_config_ == &worker_.config()) return;
  if (!refreshUser()) close();
}

std::string Session::aclDenial(const resp::Request& req) {
  const acl::Permissions& permissions = user_->permissions;
  std::string name;
  const acl::CommandId id = acl::resolveCommand(req.args, name);
  if (id == acl::kNoCommandId) {
    // Unknown to Redis 7.0 (a newer Redis, a module, a typo): only +@all runs it.
    return permissions.allowsUnknownCommands() ? std::string() : commandDenied(name);
  }
  const acl::CommandSpec& spec = acl::redisCommands()[id];
  // Redis checks arity before permissions: the arity error comes from the
  // backend (or Larder's own handler), and nothing runs.
  if (!spec.arityOk(req.args.size())) return {};
  if (!permissions.allowsCommand(id)) return commandDenied(spec.name);
  if (!permissions.allKeys()) {
    acl_keys_.clear();
    if (!aclKeysOf(spec, req.args, acl_keys_)) return std::string(kKeyDenied);
    const bool all = std::all_of(acl_keys_.begin(), acl_keys_.end(),
                                 [&](std::size_t i) { return permissions.allowsKey(req.args[i]); });
    if (!all) return std::string(kKeyDenied);
  }
  if (!permissions.allChannels()) {
    const Channels channels = channelsOf(spec.name);
    const std::size_t end = channels.only_first ? channels.first + 1 : req.args.size();
    for (std::size_t i = channels.first; channels.first != 0 && i < end && i < req.args.size();
         ++i) {
      if (!permissions.allowsChannel(req.args[i], channels.patterns)) {
        return std::string(kChannelDenied);
      }
    }
  }
  return {};
}

Session::Flow Session::acl(const resp::Request& req) {
  const auto& args = req.args;
  // Without users: Redis' own ACL, as before (WHOAMI names Larder's backend
  // user). With them, Redis' users are not Larder's: WHOAMI is answered here
  // and only the harmless subcommands go through.
  if (!config::hasAclUsers(worker_.config().users) || args.size() < 2 ||
      equalsIgnoreCase(args[1], "cat") || equalsIgnoreCase(args[1], "genpass")) {
    return forwardCurrent(req);
  }
  if (equalsIgnoreCase(args[1], "whoami")) {
    if (args.size() != 2) {
      replyError("ERR wrong number of arguments for 'acl|whoami' command");
      return Flow::Continue;
    }
    std::string out;
    resp::appendBulk(out, user_ ? std::string_view(user_->name) : std::string_view("default"));
    reply(out);
    return Flow::Continue;
  }
  std::string sub(args[1]);
  for (auto& c : sub) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  replyError("ERR Larder: ACL " + sub +
             " is not supported through the proxy when users are configured; Larder's users "
             "live in its config file (users:)");
  return Flow::Continue;
}

}  // namespace larder::server
