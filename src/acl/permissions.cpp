#include "larder/acl/permissions.hpp"

namespace larder::acl {

namespace {

std::string lowerCopy(std::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Does the pattern element at `p` match `c`? Sets `next` past the element.
// The element is not '*'.
bool matchElement(std::string_view pattern, std::size_t p, char c, std::size_t& next) {
  const std::size_t n = pattern.size();
  switch (pattern[p]) {
    case '?':
      next = p + 1;
      return true;
    case '[': {
      std::size_t i = p + 1;
      const bool negate = i < n && pattern[i] == '^';
      if (negate) ++i;
      bool match = false;
      for (;;) {
        if (i >= n) {  // unterminated: Redis ends the class at the pattern's end
          next = n;
          break;
        }
        if (pattern[i] == '\\' && i + 1 < n) {
          if (pattern[i + 1] == c) match = true;
          i += 2;
        } else if (pattern[i] == ']') {
          next = i + 1;
          break;
        } else if (i + 2 < n && pattern[i + 1] == '-') {
          char lo = pattern[i];
          char hi = pattern[i + 2];
          if (lo > hi) std::swap(lo, hi);
          if (c >= lo && c <= hi) match = true;
          i += 3;
        } else {
          if (pattern[i] == c) match = true;
          ++i;
        }
      }
      return negate ? !match : match;
    }
    case '\\':
      if (p + 1 < n) {
        next = p + 2;
        return pattern[p + 1] == c;
      }
      next = p + 1;
      return c == '\\';
    default:
      next = p + 1;
      return pattern[p] == c;
  }
}

}  // namespace

bool globMatch(std::string_view pattern, std::string_view text) {
  // Iterative, backtracking to the last '*' only: linear in practice, and no
  // pattern can make it recurse (Redis caps its recursive matcher instead).
  std::size_t p = 0, t = 0;
  std::size_t star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      while (p < pattern.size() && pattern[p] == '*') ++p;
      if (p == pattern.size()) return true;
      star_p = p;
      star_t = t;
      continue;
    }
    std::size_t next = 0;
    if (p < pattern.size() && matchElement(pattern, p, text[t], next)) {
      p = next;
      ++t;
      continue;
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p;
    t = ++star_t;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

void Permissions::setCommand(CommandId id, bool allow) {
  const commands::Command& command = commands::Registry::get().at(id);
  bits_.set(id, allow);
  for (std::size_t i = 1; i <= command.redis->subcommands; ++i) bits_.set(id + i, allow);
  if (!allow) all_commands_ = false;
}

void Permissions::setCategory(Category c, bool allow) {
  for (const commands::Command& command : commands::Registry::get().all()) {
    if (command.has(c)) setCommand(command.id, allow);
  }
}

bool Permissions::applyCommandRule(std::string_view rule, std::string& error) {
  const std::string r = lowerCopy(rule);
  if (r == "+@all" || r == "allcommands") {
    all_commands_ = true;
    bits_.set();
    return true;
  }
  if (r == "-@all" || r == "nocommands") {
    all_commands_ = false;
    bits_.reset();
    return true;
  }
  if (r.size() < 2 || (r[0] != '+' && r[0] != '-')) {
    error = "'" + std::string(rule) +
            "': expected +<command>, -<command>, +@<category> or -@<category>";
    return false;
  }
  const bool allow = r[0] == '+';
  if (r[1] == '@') {
    Category c;
    if (!commands::parseCategory(r.substr(2), c)) {
      error = "'" + std::string(rule) + "': unknown category '" + r.substr(2) + "'";
      return false;
    }
    setCategory(c, allow);
    return true;
  }
  const std::string name = r.substr(1);
  const commands::Registry& registry = commands::Registry::get();
  if (const commands::Command* command = registry.find(name)) {
    setCommand(command->id, allow);
    return true;
  }
  const std::size_t bar = name.find('|');
  if (bar != std::string::npos) {
    const commands::Command* parent = registry.find(name.substr(0, bar));
    if (parent != nullptr && !parent->isContainer()) {
      error = "'" + std::string(rule) + "': first-argument rules such as +select|0 are not " +
              "supported by Larder";
      return false;
    }
    if (parent != nullptr) {
      error = "'" + std::string(rule) + "': unknown subcommand '" + name + "'";
      return false;
    }
  }
  error = "'" + std::string(rule) + "': unknown command '" + name.substr(0, bar) + "'";
  return false;
}

bool Permissions::applyKeyRule(std::string_view rule, std::string& error) {
  if (rule == "allkeys" || rule == "~*" || rule == "*") {
    all_keys_ = true;
    key_patterns_.clear();
    return true;
  }
  if (rule == "resetkeys") {
    all_keys_ = false;
    key_patterns_.clear();
    return true;
  }
  if (!rule.empty() && rule[0] == '%') {
    error = "'" + std::string(rule) + "': %R~ and %W~ (read/write key permissions) are not " +
            "supported by Larder; use ~pattern";
    return false;
  }
  std::string_view pattern = rule;
  if (!pattern.empty() && pattern[0] == '~') pattern.remove_prefix(1);
  if (pattern.empty()) {
    error = "empty key pattern";
    return false;
  }
  if (all_keys_) {  // as Redis' ACL SETUSER says
    error = "'" + std::string(rule) + "': a pattern after '*' (all keys) has no effect";
    return false;
  }
  key_patterns_.emplace_back(pattern);
  return true;
}

bool Permissions::applyChannelRule(std::string_view rule, std::string& error) {
  if (rule == "allchannels" || rule == "&*" || rule == "*") {
    all_channels_ = true;
    channel_patterns_.clear();
    return true;
  }
  if (rule == "resetchannels") {
    all_channels_ = false;
    channel_patterns_.clear();
    return true;
  }
  std::string_view pattern = rule;
  if (!pattern.empty() && pattern[0] == '&') pattern.remove_prefix(1);
  if (pattern.empty()) {
    error = "empty channel pattern";
    return false;
  }
  if (all_channels_) {
    error = "'" + std::string(rule) + "': a pattern after '*' (all channels) has no effect";
    return false;
  }
  channel_patterns_.emplace_back(pattern);
  return true;
}

bool Permissions::allowsChannel(std::string_view channel, bool is_pattern) const {
  if (all_channels_) return true;
  for (const auto& p : channel_patterns_) {
    if (is_pattern ? p == channel : globMatch(p, channel)) return true;
  }
  return false;
}

bool Permissions::allowsKey(std::string_view key) const {
  if (all_keys_) return true;
  for (const auto& p : key_patterns_) {
    if (globMatch(p, key)) return true;
  }
  return false;
}

}  // namespace larder::acl
