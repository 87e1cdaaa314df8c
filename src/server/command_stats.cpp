#include "larder/server/command_stats.hpp"

#include <algorithm>
#include <cctype>

namespace larder::server {

static_assert(std::is_sorted(kTrackedCommands.begin(), kTrackedCommands.end()),
              "kTrackedCommands must stay sorted: commandIndex searches it");

std::uint16_t commandIndex(std::string_view name) {
  char buffer[16];
  if (name.size() > sizeof buffer) return kOtherCommand;
  for (std::size_t i = 0; i < name.size(); ++i) {
    buffer[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
  }
  const std::string_view lower(buffer, name.size());
  const auto it = std::lower_bound(kTrackedCommands.begin(), kTrackedCommands.end(), lower);
  if (it == kTrackedCommands.end() || *it != lower) return kOtherCommand;
  return static_cast<std::uint16_t>(it - kTrackedCommands.begin());
}

std::string_view commandLabel(std::size_t index) {
  return index < kTrackedCommands.size() ? kTrackedCommands[index] : "other";
}

}  // namespace larder::server
