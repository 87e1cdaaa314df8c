#include "larder/acl/commands.hpp"

#include <algorithm>
#include <array>

namespace larder::acl {

namespace {

constexpr std::array<std::string_view, static_cast<std::size_t>(Category::Count)> kCategoryNames = {
    "keyspace", "read",   "write",       "set",       "sortedset",  "list",        "hash",
    "string",   "bitmap", "hyperloglog", "geo",       "stream",     "pubsub",      "admin",
    "fast",     "slow",   "blocking",    "dangerous", "connection", "transaction", "scripting"};

// Lower-cases into `buf`; false when `name` does not fit (no command is that long).
bool lowerInto(std::string_view name, std::array<char, 64>& buf, std::size_t at, std::size_t& end) {
  if (at + name.size() > buf.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    buf[at + i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  end = at + name.size();
  return true;
}

std::string lowerCopy(std::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

bool parseCategory(std::string_view name, Category& out) {
  const std::string lower = lowerCopy(name);
  for (std::size_t i = 0; i < kCategoryNames.size(); ++i) {
    if (kCategoryNames[i] == lower) {
      out = static_cast<Category>(i);
      return true;
    }
  }
  return false;
}

CommandId findCommand(std::string_view lower_name) {
  const auto& table = redisCommands();
  auto it =
      std::lower_bound(table.begin(), table.end(), lower_name,
                       [](const CommandSpec& spec, std::string_view n) { return spec.name < n; });
  if (it == table.end() || it->name != lower_name) return kNoCommandId;
  return static_cast<CommandId>(it - table.begin());
}

CommandId resolveCommand(const std::vector<std::string_view>& args, std::string& full_name) {
  std::array<char, 64> buf;
  std::size_t end = 0;
  if (args.empty() || !lowerInto(args[0], buf, 0, end)) {
    full_name = args.empty() ? std::string() : lowerCopy(args[0]);
    return kNoCommandId;
  }
  const CommandId id = findCommand({buf.data(), end});
  if (id == kNoCommandId || !(redisCommands()[id].flags & kContainer) || args.size() < 2) {
    if (id == kNoCommandId) full_name.assign(buf.data(), end);
    return id;
  }
  buf[end] = '|';
  std::size_t sub_end = 0;
  if (!lowerInto(args[1], buf, end + 1, sub_end)) {
    full_name = std::string(buf.data(), end + 1) + lowerCopy(args[1]);
    return kNoCommandId;
  }
  const CommandId sub = findCommand({buf.data(), sub_end});
  if (sub == kNoCommandId) full_name.assign(buf.data(), sub_end);
  return sub;
}

}  // namespace larder::acl
