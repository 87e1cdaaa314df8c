#include "larder/commands/registry.hpp"

#include <stdexcept>
#include <string>

namespace larder::commands {

namespace {

// FNV-1a over the lower-cased bytes; `sub` (if any) joins as "name|sub".
std::uint32_t hashName(std::string_view name, std::string_view sub) {
  std::uint32_t h = 2166136261u;
  auto mix = [&h](char c) {
    h ^= static_cast<unsigned char>(asciiLower(c));
    h *= 16777619u;
  };
  for (char c : name) mix(c);
  if (!sub.empty()) {
    mix('|');
    for (char c : sub) mix(c);
  }
  return h;
}

// `full` ("config|get") equals name + '|' + sub, any case on the right.
bool sameName(std::string_view full, std::string_view name, std::string_view sub) {
  const std::size_t want = name.size() + (sub.empty() ? 0 : sub.size() + 1);
  if (full.size() != want) return false;
  if (!equalsLower(name, full.substr(0, name.size()))) return false;
  if (sub.empty()) return true;
  return full[name.size()] == '|' && equalsLower(sub, full.substr(name.size() + 1));
}

}  // namespace

Registry::Registry(std::span<const RedisCommand> redis) {
  if (redis.size() > kMaxCommands) throw std::logic_error("command table larger than kMaxCommands");
  rows_.reserve(redis.size());
  for (std::size_t i = 0; i < redis.size(); ++i) {
    rows_.push_back(Command{static_cast<CommandId>(i), &redis[i], Handling{}});
  }
  std::size_t capacity = 16;
  while (capacity < rows_.size() * 4) capacity *= 2;  // load factor <= 1/4: short probes
  slots_.assign(capacity, kNoCommand);
  mask_ = capacity - 1;
  for (const Command& c : rows_) {
    std::size_t at = hashName(c.name(), {}) & mask_;
    while (slots_[at] != kNoCommand) at = (at + 1) & mask_;
    slots_[at] = c.id;
  }
  HandlingBuilder builder(rows_, *this);
  describeHandling(builder);
}

const Registry& Registry::get() {
  static const Registry registry(kRedisCommandTable);
  return registry;
}

const Command* Registry::lookup(std::string_view name, std::string_view sub) const {
  std::size_t at = hashName(name, sub) & mask_;
  for (;;) {
    const CommandId id = slots_[at];
    if (id == kNoCommand) return nullptr;
    if (sameName(rows_[id].name(), name, sub)) return &rows_[id];
    at = (at + 1) & mask_;
  }
}

Resolved Registry::resolve(std::span<const std::string_view> args) const {
  // A name with '|' is no command: Redis' lookup splits nothing ("CONFIG|GET x"
  // is unknown, not config|get).
  if (args.empty() || args[0].find('|') != std::string_view::npos) return {};
  const Command* command = lookup(args[0], {});
  if (command == nullptr || !command->isContainer() || args.size() < 2) {
    return {command, command != nullptr};
  }
  // A name with '|' is no subcommand ("CONFIG get|x" must not find config|get|x).
  if (args[1].find('|') != std::string_view::npos) return {command, false};
  if (const Command* sub = lookup(args[0], args[1])) return {sub, true};
  return {command, false};
}

const Command* Registry::find(std::string_view name) const {
  const std::size_t bar = name.find('|');
  if (bar == std::string_view::npos) return lookup(name, {});
  return lookup(name.substr(0, bar), name.substr(bar + 1));
}

Handling& HandlingBuilder::operator[](std::string_view name) {
  const Command* c = registry_.find(name);
  if (c == nullptr) {
    throw std::logic_error("handling.cpp names '" + std::string(name) +
                           "', which Redis' command table does not have");
  }
  return rows_[c->id].handling;
}

}  // namespace larder::commands
