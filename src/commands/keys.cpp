// Redis 7.0's key finding (db.c: getKeysFromCommandWithSpecs and the getkeys
// procedures), read from its source and re-stated here; see keys.hpp.
#include "larder/commands/keys.hpp"

#include <charconv>

namespace larder::commands {

namespace {

using Args = std::span<const std::string_view>;

// Redis' string2ll: optional '-', no '+', no leading zeros, no spaces.
bool strictInteger(std::string_view s, long long& out) {
  if (s.empty() || s.size() > 20) return false;
  const std::string_view digits = s.front() == '-' ? s.substr(1) : s;
  if (digits.empty() || (digits.size() > 1 && digits.front() == '0')) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// C's atoi, as Redis' genericGetKeys reads numkeys: leading spaces, a sign,
// digits up to the first other byte; 0 when there are none.
long long looseInteger(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r'))) ++i;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  long long n = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9' && n < (1LL << 40); ++i)
    n = n * 10 + (s[i] - '0');
  return negative ? -n : n;
}

// The keys one spec finds; false when the spec cannot be applied to these
// arguments (Redis' invalid_spec). `skipped`: a keyword that is not there.
bool applySpec(const KeySpec& spec, Args args, std::vector<KeyRef>& out) {
  const int argc = static_cast<int>(args.size());
  int first = 0;
  switch (spec.begin) {
    case KeySpec::Begin::Index:
      first = spec.pos;
      break;
    case KeySpec::Begin::Keyword: {
      const int start = spec.pos > 0 ? spec.pos : argc + spec.pos;
      const int end = spec.pos > 0 ? argc - 1 : 1;  // exclusive, as in Redis
      for (int i = start; i != end; i = start <= end ? i + 1 : i - 1) {
        if (i >= argc || i < 1) break;
        if (equalsIgnoreCase(args[i], spec.keyword)) {
          first = i + 1;
          break;
        }
      }
      if (first == 0) return true;  // keyword not there: this spec finds nothing
      break;
    }
    case KeySpec::Begin::Unknown:
      return false;
  }
  int last = 0;
  int step = 1;
  switch (spec.find) {
    case KeySpec::Find::Range:
      step = spec.b;
      if (spec.a >= 0) {
        last = first + spec.a;
      } else if (spec.c == 0) {
        last = argc + spec.a;
      } else {
        last = first + ((argc - first) / spec.c + spec.a);
      }
      break;
    case KeySpec::Find::Keynum: {
      step = spec.c;
      const int at = first + spec.a;
      long long numkeys = 0;
      if (spec.a >= argc || at >= argc || !strictInteger(args[at], numkeys) || numkeys < 0 ||
          numkeys > argc) {
        return false;
      }
      first += spec.b;
      last = first + static_cast<int>(numkeys) - 1;
      break;
    }
    case KeySpec::Find::Unknown:
      return false;
  }
  if (last >= argc || last < first || first >= argc || step < 1) return false;
  for (int i = first; i <= last; i += step) {
    out.push_back({static_cast<std::uint32_t>(i), spec.flags});
  }
  return !(spec.flags & kKeyIncomplete);
}

bool bySpecs(const Command& command, Args args, std::vector<KeyRef>& out) {
  for (const KeySpec& spec : command.keySpecs()) {
    if (spec.flags & kKeyNotKey) continue;
    if (!applySpec(spec, args, out)) return false;
  }
  return true;
}

// ------------------------------------------------- the getkeys procedures

// SORT key [BY p] [LIMIT o c] [GET p ...] [ASC|DESC] [ALPHA] [STORE dst]:
// the last STORE wins, the arguments of BY, LIMIT and GET are skipped.
void sortKeys(Args args, bool store_allowed, std::vector<KeyRef>& out) {
  out.push_back({1, kKeyRO | kKeyAccess});
  if (!store_allowed) return;
  std::uint32_t store = 0;
  for (std::size_t i = 2; i < args.size(); ++i) {
    if (equalsLower(args[i], "limit")) {
      i += 2;
    } else if (equalsLower(args[i], "get") || equalsLower(args[i], "by")) {
      i += 1;
    } else if (equalsLower(args[i], "store") && i + 1 < args.size()) {
      store = static_cast<std::uint32_t>(i + 1);
    }
  }
  if (store != 0) out.push_back({store, kKeyOW | kKeyUpdate});
}

// MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw] [AUTH2 u pw] [KEYS k...]
void migrateKeys(Args args, std::vector<KeyRef>& out) {
  std::size_t first = 3;
  std::size_t count = 1;
  for (std::size_t i = 6; i < args.size(); ++i) {
    if (equalsLower(args[i], "keys")) {
      if (!args[3].empty()) {
        count = 0;  // a syntax error: MIGRATE itself says so
      } else {
        first = i + 1;
        count = args.size() - first;
      }
      break;
    }
    if (equalsLower(args[i], "auth")) {
      i += 1;
    } else if (equalsLower(args[i], "auth2")) {
      i += 2;
    }
  }
  for (std::size_t i = 0; i < count && first + i < args.size(); ++i) {
    out.push_back({static_cast<std::uint32_t>(first + i), kKeyRW | kKeyAccess | kKeyDelete});
  }
}

// SET key value [...GET...]: GET makes it read the old value.
void setKeys(Args args, std::vector<KeyRef>& out) {
  for (std::size_t i = 3; i < args.size(); ++i) {
    if (equalsLower(args[i], "get")) {
      out.push_back({1, kKeyRW | kKeyAccess | kKeyUpdate});
      return;
    }
  }
  out.push_back({1, kKeyOW | kKeyUpdate});
}

// BITFIELD key [GET ...] [SET ...] [INCRBY ...] [OVERFLOW ...]: read-only with GETs alone.
void bitfieldKeys(Args args, std::vector<KeyRef>& out) {
  bool read_only = true;
  for (std::size_t i = 2; i < args.size(); ++i) {
    const std::size_t left = args.size() - i - 1;
    if (equalsLower(args[i], "get") && left >= 2) {
      i += 2;
    } else if ((equalsLower(args[i], "set") || equalsLower(args[i], "incrby")) && left >= 3) {
      read_only = false;
      break;
    } else if (equalsLower(args[i], "overflow") && left >= 1) {
      i += 1;
    } else {
      read_only = false;  // a syntax error: assume it writes, as Redis does
      break;
    }
  }
  out.push_back({1, read_only ? std::uint16_t(kKeyRO | kKeyAccess)
                              : std::uint16_t(kKeyRW | kKeyAccess | kKeyUpdate)});
}

// Redis' genericGetKeys, for the commands with a numkeys argument whose spec
// failed on these arguments: numkeys read as atoi() reads it. Redis gives
// these keys no flags; Larder keeps the specs' (the safer reading).
void numkeysKeys(const Command& command, Args args, std::vector<KeyRef>& out) {
  const KeySpec* keynum = nullptr;
  const KeySpec* store = nullptr;
  for (const KeySpec& spec : command.keySpecs()) {
    if (spec.find == KeySpec::Find::Keynum) keynum = &spec;
    if (spec.begin == KeySpec::Begin::Index && spec.find == KeySpec::Find::Range && spec.a == 0) {
      store = &spec;
    }
  }
  if (keynum == nullptr || keynum->begin != KeySpec::Begin::Index) return;
  const int argc = static_cast<int>(args.size());
  const int count_at = keynum->pos + keynum->a;
  const int first = count_at + keynum->b;
  const int step = keynum->c > 0 ? keynum->c : 1;
  if (count_at >= argc) return;
  const long long num = looseInteger(args[count_at]);
  if (num < 1 || num > (argc - first) / step) return;
  for (long long i = 0; i < num; ++i) {
    out.push_back({static_cast<std::uint32_t>(first + i * step), keynum->flags});
  }
  if (store != nullptr) out.push_back({static_cast<std::uint32_t>(store->pos), store->flags});
}

bool procedureKeys(const Command& command, Args args, std::vector<KeyRef>& out) {
  const std::string_view name = command.name();
  if (name == "sort" || name == "sort_ro") {
    sortKeys(args, name == "sort", out);
  } else if (name == "migrate") {
    migrateKeys(args, out);
  } else if (name == "set") {
    setKeys(args, out);
  } else if (name == "bitfield") {
    bitfieldKeys(args, out);
  } else {
    return false;
  }
  return true;
}

}  // namespace

void findKeys(const Command& command, Args args, std::vector<KeyRef>& out) {
  out.clear();
  if (command.redis->spec_count == 0 || args.empty()) return;
  bool has_keys = false;
  bool variable_flags = false;
  for (const KeySpec& spec : command.keySpecs()) {
    has_keys |= !(spec.flags & kKeyNotKey);
    variable_flags |= (spec.flags & kKeyVariableFlags) != 0;
  }
  if (!has_keys) return;
  if (!variable_flags && bySpecs(command, args, out)) return;
  out.clear();
  if (procedureKeys(command, args, out)) return;
  numkeysKeys(command, args, out);
}

Route routeOf(const Command& command, std::span<const std::string_view> args) {
  const Route route = command.handling.route;
  if (route != Route::Forward || !command.flag(kBlocking)) return route;
  if (command.redis->group != Group::Stream) return Route::Blocking;
  // XREAD [COUNT n] [BLOCK ms] STREAMS ...: options come before STREAMS.
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (equalsLower(args[i], "streams")) return Route::Forward;
    if (equalsLower(args[i], "block")) return Route::Blocking;
  }
  return Route::Forward;
}

}  // namespace larder::commands
