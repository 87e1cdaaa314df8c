#pragma once
// What one ACL user may run: Redis 7.0's command rules (+@all, -@dangerous,
// +get, -config|set ...) applied left to right into a bitset over the command
// table, and key and channel patterns with Redis' glob semantics. Built once at config
// load; a check at request time is a bit test and, for keyed commands of a
// user without all keys, a glob match per key. Pure.
#include <bitset>
#include <string>
#include <string_view>
#include <vector>

#include "larder/commands/registry.hpp"

namespace larder::acl {

using commands::Category;
using commands::CommandId;
using commands::kMaxCommands;

class Permissions {
 public:
  // Applies one command rule as `ACL SETUSER` would. On a bad rule returns
  // false and says why ("unknown command 'foo'", "unknown category 'x'").
  bool applyCommandRule(std::string_view rule, std::string& error);
  // Applies a key pattern: "user:*" or "~user:*"; "*" and "allkeys" grant all
  // keys, "resetkeys" forgets the patterns so far. False (and why) otherwise.
  bool applyKeyRule(std::string_view rule, std::string& error);

  // Applies a channel pattern: "news.*" or "&news.*"; "*" and "allchannels"
  // grant all channels, "resetchannels" forgets the patterns so far.
  bool applyChannelRule(std::string_view rule, std::string& error);

  bool allowsCommand(CommandId id) const {
    if (all_commands_) return true;
    if (id >= kMaxCommands) return false;
    return bits_.test(id) || commands::Registry::get().at(id).flag(commands::kNoAuth);
  }
  // An unknown command or subcommand (a newer Redis, a module): only +@all.
  bool allowsUnknownCommands() const { return all_commands_; }
  bool allowsKey(std::string_view key) const;
  bool allKeys() const { return all_keys_; }
  // A PSUBSCRIBE pattern must equal one of the user's patterns (as in Redis);
  // a channel must match one.
  bool allowsChannel(std::string_view channel, bool is_pattern) const;
  bool allChannels() const { return all_channels_; }
  // Everything allowed: the request path skips the checks altogether.
  bool unrestricted() const { return all_commands_ && all_keys_ && all_channels_; }

  bool operator==(const Permissions&) const = default;

 private:
  void setCommand(CommandId id, bool allow);  // with its subcommands
  void setCategory(Category c, bool allow);

  std::bitset<kMaxCommands> bits_;
  bool all_commands_ = false;
  bool all_keys_ = false;
  std::vector<std::string> key_patterns_;
  bool all_channels_ = false;
  std::vector<std::string> channel_patterns_;
};

// Redis' glob (stringmatchlen): `*`, `?`, `[abc]`, `[^a-z]`, `\x`; case-sensitive.
bool globMatch(std::string_view pattern, std::string_view text);

}  // namespace larder::acl
