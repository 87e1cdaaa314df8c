#include <array>

#include "larder/commands/redis_commands.hpp"
#include "larder/commands/registry.hpp"

namespace larder::commands {

namespace {

constexpr std::array<std::string_view, static_cast<std::size_t>(Category::Count)> kCategoryNames = {
    "keyspace", "read",   "write",       "set",       "sortedset",  "list",        "hash",
    "string",   "bitmap", "hyperloglog", "geo",       "stream",     "pubsub",      "admin",
    "fast",     "slow",   "blocking",    "dangerous", "connection", "transaction", "scripting"};

}  // namespace

bool parseCategory(std::string_view name, Category& out) {
  for (std::size_t i = 0; i < kCategoryNames.size(); ++i) {
    if (equalsLower(name, kCategoryNames[i])) {
      out = static_cast<Category>(i);
      return true;
    }
  }
  return false;
}

std::string_view categoryName(Category c) { return kCategoryNames[static_cast<std::size_t>(c)]; }

}  // namespace larder::commands
