// ACL users on a session: who the client is (AUTH, HELLO AUTH, the default
// user), what it may run (aclDenial, one of the gates of step()), and what a
// reload does to it. A config without `users:` has one implicit default user
// allowed everything; such sessions skip the checks.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "larder/acl/sort_patterns.hpp"
#include "larder/common/errors.hpp"
#include "larder/proxy/pipeline.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::proxy {

void Pipeline::resetUser() {
  const config::Config& config = ports_.admin.config();
  state_.user_config = &config;
  const config::UserConfig* default_user = config::findUser(config.users, "default");
  if (!default_user) {  // a config not made by the loader: requirepass alone
    state_.user = nullptr;
    state_.authenticated = config.requirepass.empty();
    return;
  }
  // As Redis: a connection starts authenticated as "default" when that user
  // is enabled and needs no password.
  const bool open = default_user->enabled && default_user->nopass;
  state_.user = open ? default_user : nullptr;
  state_.authenticated = open;
}

void Pipeline::authenticateAs(const config::UserConfig& user) {
  state_.user = &user;
  state_.user_config = &ports_.admin.config();
  state_.authenticated = true;
}

bool Pipeline::refreshUser() {
  const config::Config& config = ports_.admin.config();
  if (state_.user_config == &config) return true;
  state_.user_config = &config;
  if (!state_.user) return true;
  const config::UserConfig* now = config::findUser(config.users, state_.user->name);
  if (!now || !now->enabled) {
    spdlog::info("client {}: user '{}' was {} by a reload; closing", id_, state_.user->name,
                 now ? "disabled" : "removed");
    return false;
  }
  state_.user = now;  // changed rules apply to the running session, as in Redis
  return true;
}

std::string Pipeline::aclDenial(const resp::Request& req, const commands::Resolved& cmd) {
  const acl::Permissions& permissions = state_.user->permissions;
  if (!cmd.known) {
    // Unknown to Redis 7.0 (a newer Redis, a module, a typo): only +@all runs it.
    if (permissions.allowsUnknownCommands()) return {};
    std::string name(req.args[0]);
    if (cmd.command != nullptr) name += "|" + std::string(req.args[1]);
    return errors::commandDenied(name);
  }
  const commands::Command& command = *cmd.command;
  if (!permissions.allowsCommand(command.id)) return errors::commandDenied(command.name());
  if (!permissions.allKeys()) {
    commands::findKeys(command, req.args, keys_);
    const bool all = std::all_of(keys_.begin(), keys_.end(), [&](const commands::KeyRef& k) {
      return permissions.allowsKey(req.args[k.pos]);
    });
    if (!all) return std::string(errors::kKeyDenied);
    // SORT's BY and GET patterns name keys only the sort itself finds: Redis
    // refuses them to such a user (its own verdict and words).
    if (command.name() == "sort" || command.name() == "sort_ro") {
      const std::string_view denial = acl::sortPatternDenial(req.args, command.name() == "sort_ro");
      if (!denial.empty()) return std::string(denial);
    }
  }
  // A script may touch keys, commands and channels it does not declare;
  // Larder cannot see inside it (docs/security.md).
  if (!permissions.unrestricted() && command.has(commands::Category::Scripting) &&
      command.redis->spec_count > 0) {
    return errors::scriptsDenied(state_.user->name);
  }
  if (!permissions.allChannels()) {
    const commands::Channels channels = command.handling.channels;
    const std::size_t end = channels.only_first ? channels.first + 1u : req.args.size();
    for (std::size_t i = channels.first; channels.first != 0 && i < end && i < req.args.size();
         ++i) {
      if (!permissions.allowsChannel(req.args[i], channels.patterns)) {
        return std::string(errors::kChannelDenied);
      }
    }
  }
  return {};
}

Pipeline::Flow Pipeline::acl(const resp::Request& req) {
  const auto& args = req.args;
  if (!ports_.admin.keyspaces().empty() && !ports_.admin.config().redis.client_acl_user.empty() &&
      args.size() >= 2) {
    for (std::string_view sub : {"setuser", "deluser", "load"}) {
      if (commands::equalsLower(args[1], sub)) {
        refuse(errors::refusedWithKeyspaces(
            "ACL " + std::string(args[1]),
            "it could lift the restrictions of Larder's client user (docs/security.md)"));
        return Flow::Continue;
      }
    }
  }
  // Without users: Redis' own ACL, as before (WHOAMI names Larder's backend
  // user). With them, Redis' users are not Larder's: WHOAMI is answered here
  // and only the harmless subcommands go through.
  if (!config::hasAclUsers(ports_.admin.config().users) || args.size() < 2 ||
      commands::equalsLower(args[1], "cat") || commands::equalsLower(args[1], "genpass")) {
    return forwardCurrent(req);
  }
  if (commands::equalsLower(args[1], "whoami")) {
    std::string out;
    resp::appendBulk(
        out, state_.user ? std::string_view(state_.user->name) : std::string_view("default"));
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

}  // namespace larder::proxy
