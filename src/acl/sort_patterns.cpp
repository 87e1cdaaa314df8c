#include "larder/acl/sort_patterns.hpp"

#include <charconv>

#include "larder/commands/registry.hpp"

namespace larder::acl {

namespace {

using commands::equalsLower;

// Redis' string2l, as getLongFromObjectOrReply reads LIMIT's arguments.
bool strictLong(std::string_view s) {
  const std::string_view digits = !s.empty() && s.front() == '-' ? s.substr(1) : s;
  if (digits.empty() || (digits.size() > 1 && digits.front() == '0')) return false;
  long long v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

std::string_view sortPatternDenial(std::span<const std::string_view> args, bool read_only) {
  for (std::size_t j = 2; j < args.size(); ++j) {
    const std::size_t left = args.size() - j - 1;
    const std::string_view a = args[j];
    if (equalsLower(a, "asc") || equalsLower(a, "desc") || equalsLower(a, "alpha")) continue;
    if (equalsLower(a, "limit") && left >= 2) {
      if (!strictLong(args[j + 1]) || !strictLong(args[j + 2])) return {};  // Redis' own error
      j += 2;
    } else if (!read_only && equalsLower(a, "store") && left >= 1) {
      ++j;
    } else if (equalsLower(a, "by") && left >= 1) {
      if (args[j + 1].find('*') != std::string_view::npos) {
        return "ERR BY option of SORT denied due to insufficient ACL permissions.";
      }
      ++j;
    } else if (equalsLower(a, "get") && left >= 1) {
      return "ERR GET option of SORT denied due to insufficient ACL permissions.";
    } else {
      return {};  // a syntax error: Redis says so
    }
  }
  return {};
}

}  // namespace larder::acl
