#pragma once
// The command registry: one row per Redis command and subcommand, joining
// Redis' own description (redis_commands.hpp, generated from COMMAND and
// COMMAND DOCS) with Larder's handling (handling.hpp). A request is looked up
// once, case-insensitively and without allocating; every later stage (ACL,
// reserved and mapped keys, routing, RESP3 shapes, per-command stats) reads
// the row it got.
//
//   args ---resolve()---> Command {id, Redis' facts, Larder's handling}
//                           |-- findKeys(): key positions from the key specs
//                           |-- handling.route / read / write / reply / guard
//                           `-- id: ACL bitsets and the stats slot
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "larder/commands/handling.hpp"
#include "larder/commands/redis_commands.hpp"

namespace larder::commands {

using CommandId = std::uint16_t;
inline constexpr CommandId kNoCommand = 0xFFFF;
inline constexpr std::size_t kMaxCommands = 512;  // ACL bitsets; checked against the table

struct Command {
  CommandId id;
  const RedisCommand* redis;
  Handling handling;

  std::string_view name() const { return redis->name; }  // lower case, "config|get"
  bool has(Category c) const { return redis->has(c); }
  bool flag(CommandFlag f) const { return (redis->flags & f) != 0; }
  bool isContainer() const { return redis->subcommands > 0; }
  bool arityOk(std::size_t argc) const { return redis->arityOk(argc); }
  std::span<const KeySpec> keySpecs() const {
    return kKeySpecTable.subspan(redis->first_spec, redis->spec_count);
  }
};

// What a request names. `command` is null for a command Redis 7.0 does not
// know; for a container with an unknown subcommand it is the container and
// `known` is false.
struct Resolved {
  const Command* command = nullptr;
  bool known = false;
};

class Registry {
 public:
  // The registry of this build: built once, immutable after.
  static const Registry& get();

  std::size_t size() const { return rows_.size(); }
  const Command& at(CommandId id) const { return rows_[id]; }
  std::span<const Command> all() const { return rows_; }

  // args[0] is the name in any case; for a container with a second
  // argument, that subcommand too ("CONFIG get" -> config|get).
  Resolved resolve(std::span<const std::string_view> args) const;
  // A lower- or mixed-case full name ("get", "config|get"); null when unknown.
  const Command* find(std::string_view name) const;

  // For the builder (handling.cpp) and tests.
  explicit Registry(std::span<const RedisCommand> redis);

 private:
  const Command* lookup(std::string_view name, std::string_view sub) const;

  std::vector<Command> rows_;
  std::vector<CommandId> slots_;  // open addressing by name hash; kNoCommand = empty
  std::size_t mask_ = 0;
};

// Fills in Larder's column by name; a name Redis does not have is a
// programming error (thrown at start-up, caught by the unit tests).
class HandlingBuilder {
 public:
  explicit HandlingBuilder(std::vector<Command>& rows, const Registry& registry)
      : rows_(rows), registry_(registry) {}
  Handling& operator[](std::string_view name);
  // The handling of every subcommand of container `name`.
  template <class F>
  void eachSubcommand(std::string_view name, F f) {
    (*this)[name];  // throws for an unknown name
    const Command& container = rows_[registry_.find(name)->id];
    for (std::size_t i = 1; i <= container.redis->subcommands; ++i) {
      f(rows_[container.id + i].handling);
    }
  }

 private:
  std::vector<Command>& rows_;
  const Registry& registry_;
};

// ASCII lower case of one byte.
constexpr char asciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }
// ASCII case-insensitive equality with a lower-case literal.
inline bool equalsLower(std::string_view any_case, std::string_view lower) {
  if (any_case.size() != lower.size()) return false;
  for (std::size_t i = 0; i < lower.size(); ++i) {
    if (asciiLower(any_case[i]) != lower[i]) return false;
  }
  return true;
}
// ASCII case-insensitive equality.
inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (asciiLower(a[i]) != asciiLower(b[i])) return false;
  }
  return true;
}

}  // namespace larder::commands
