#pragma once
// Redis 7.0's commands as its ACL rules see them: name (subcommands as
// "config|get"), arity, the legacy key range, flags and ACL categories. The
// table (src/acl/redis_commands.cpp) is generated from Redis 7.0.15's COMMAND
// output by scripts/gen_acl_commands.py, with Larder's own LARDER added as
// @admin @dangerous. Pure: no I/O.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace larder::acl {

// In the order of Redis 7.0's `ACL CAT`; bit i of CommandSpec::categories.
enum class Category {
  Keyspace,
  Read,
  Write,
  Set,
  Sortedset,
  List,
  Hash,
  String,
  Bitmap,
  Hyperloglog,
  Geo,
  Stream,
  Pubsub,
  Admin,
  Fast,
  Slow,
  Blocking,
  Dangerous,
  Connection,
  Transaction,
  Scripting,
  Count,
};

// "read" -> Category::Read; false for a name Redis 7.0 does not know.
bool parseCategory(std::string_view name, Category& out);

inline constexpr std::uint8_t kNoAuth = 1;       // AUTH, HELLO, QUIT...: always allowed
inline constexpr std::uint8_t kMovableKeys = 2;  // keys found by parsing (EVAL, ZUNIONSTORE...)
inline constexpr std::uint8_t kContainer = 4;    // has subcommands (CONFIG, CLIENT, ACL...)

struct CommandSpec {
  std::string_view name;  // lower case; "parent|sub" for a subcommand
  int arity;              // Redis' arity: n exact, -n at least n (name included)
  int first_key;          // legacy key range: first, last (negative: from the end), step
  int last_key;
  int key_step;
  std::uint8_t flags;
  std::uint32_t categories;  // 1 << Category

  bool has(Category c) const { return (categories >> static_cast<int>(c)) & 1u; }
  bool arityOk(std::size_t argc) const {
    const auto n = static_cast<std::size_t>(arity < 0 ? -arity : arity);
    return arity < 0 ? argc >= n : argc == n;
  }
};

// Sorted by name. Generated.
const std::vector<CommandSpec>& redisCommands();

using CommandId = std::uint16_t;  // index into redisCommands()
inline constexpr CommandId kNoCommandId = 0xFFFF;
inline constexpr std::size_t kMaxCommands = 512;  // bitset size; checked against the table

// The id of a lower-case name ("get", "config|get"), or kNoCommandId.
CommandId findCommand(std::string_view lower_name);

// What a request runs: args[0] in any case and, for a container command with
// a second argument, that subcommand. `full_name` receives the lower-case
// name Redis reports ("get", "config|get"), also when it is unknown.
CommandId resolveCommand(const std::vector<std::string_view>& args, std::string& full_name);

}  // namespace larder::acl
