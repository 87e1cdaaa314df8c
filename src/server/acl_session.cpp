// ACL users on a session: who the client is (AUTH, HELLO AUTH, the default
// user), what it may run (aclDenial, checked in route() before a command goes
// anywhere), and what a reload does to it. A config without `users:` has one
// implicit default user allowed everything; such sessions skip the checks.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "larder/acl/sort_patterns.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/server/session.hpp"
#include "larder/server/worker.hpp"

namespace larder::server {

namespace {

constexpr std::string_view kKeyDenied =
    "NOPERM this user has no permissions to access one of the keys used as arguments";
constexpr std::string_view kChannelDenied =
    "NOPERM this user has no permissions to access one of the channels used as arguments";

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

std::string Session::aclDenial(const resp::Request& req, const commands::Resolved& cmd) {
  const acl::Permissions& permissions = user_->permissions;
  if (!cmd.known) {
    // Unknown to Redis 7.0 (a newer Redis, a module, a typo): only +@all runs it.
    if (permissions.allowsUnknownCommands()) return {};
    std::string name(req.args[0]);
    if (cmd.command != nullptr) name += "|" + std::string(req.args[1]);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return commandDenied(name);
  }
  const commands::Command& command = *cmd.command;
  // Redis checks arity before permissions: the arity error comes from the
  // backend (or Larder's own handler), and nothing runs.
  if (!command.arityOk(req.args.size())) return {};
  if (!permissions.allowsCommand(command.id)) return commandDenied(command.name());
  if (!permissions.allKeys()) {
    commands::findKeys(command, req.args, keys_);
    const bool all = std::all_of(keys_.begin(), keys_.end(), [&](const commands::KeyRef& k) {
      return permissions.allowsKey(req.args[k.pos]);
    });
    if (!all) return std::string(kKeyDenied);
    // Keys Redis finds only while the command runs: SORT's BY and GET
    // patterns (Redis' own verdict and words), and whatever a script touches
    // (refused: Larder cannot see inside it).
    if (command.name() == "sort" || command.name() == "sort_ro") {
      if (auto denial = acl::sortPatternDenial(req.args, command.name() == "sort_ro");
          !denial.empty()) {
        return std::string(denial);
      }
    }
  }
  if ((!permissions.allKeys() || !permissions.allowsUnknownCommands() ||
       !permissions.allChannels()) &&
      command.has(commands::Category::Scripting) && command.redis->spec_count > 0) {
    return "NOPERM Larder: user '" + user_->name +
           "' may not run scripts: the keys, commands and channels a script touches cannot be "
           "checked against its rules";
  }
  if (!permissions.allChannels()) {
    const commands::Channels channels = command.handling.channels;
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
      commands::equalsLower(args[1], "cat") || commands::equalsLower(args[1], "genpass")) {
    return forwardCurrent(req);
  }
  if (commands::equalsLower(args[1], "whoami")) {
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
