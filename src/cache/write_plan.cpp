#include "larder/cache/write_plan.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <limits>

#include "larder/common/errors.hpp"

namespace larder::cache {

namespace {

using errors::kNotInteger;
using errors::kSyntax;
using errors::kWrongType;

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// Redis' string2ll: no '+', no leading zeros ("010" is not an integer).
bool parseLong(std::string_view s, long long& out) {
  const std::string_view digits = !s.empty() && s.front() == '-' ? s.substr(1) : s;
  if (digits.size() > 1 && digits.front() == '0') return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && ptr == s.data() + s.size();
}

long long nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Redis refuses a relative expiry whose deadline (now + it) overflows.
bool validRelativeExpiry(long long n, bool seconds) {
  if (n <= 0) return false;
  const long long room = std::numeric_limits<long long>::max() - nowMs();
  return seconds ? n <= room / 1000 : n <= room;
}

bool integerColumn(const std::string& type) {
  return type == "smallint" || type == "integer" || type == "bigint";
}

// PostgreSQL's int input: spaces, one sign, digits, spaces; within the type's range.
bool plausibleInteger(std::string_view v, const std::string& type) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!v.empty() && space(v.front())) v.remove_prefix(1);
  while (!v.empty() && space(v.back())) v.remove_suffix(1);
  bool negative = false;
  if (!v.empty() && (v.front() == '+' || v.front() == '-')) {
    negative = v.front() == '-';
    v.remove_prefix(1);
  }
  if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  while (v.size() > 1 && v.front() == '0') v.remove_prefix(1);
  unsigned long long n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || ptr != v.data() + v.size()) return false;
  const int bits = type == "smallint" ? 16 : type == "integer" ? 32 : 64;
  const unsigned long long limit = 1ULL << (bits - 1);  // |min|; max is one less
  return negative ? n <= limit : n < limit;
}

class Planner {
 public:
  Planner(const std::vector<std::string_view>& args, const cache::KeyspaceRegistry& registry)
      : args_(args), registry_(registry) {}

  WritePlan plan(const commands::Command& command, const std::vector<std::size_t>& keys) {
    const std::string_view name = command.name();
    using commands::WriteOp;
    switch (command.handling.write) {
      case WriteOp::Set:
        return set();
      case WriteOp::SetEx:
      case WriteOp::PSetEx:
        return setex(command.handling.write == WriteOp::PSetEx);
      case WriteOp::GetSet:
        return single(1, "set", [&](KeyWrite& w) {
          return stringValue(w, args_.size() == 3, 2, "", true, "d", "");
        });
      case WriteOp::GetDel:
        return single(1, "getdel", [&](KeyWrite& w) {
          if (args_.size() != 2) return arity();
          w.change.reset = true;
          return stringShape(w);
        });
      case WriteOp::MSet:
        return mset();
      case WriteOp::Del:
        return del(keys);
      case WriteOp::HSet:
      case WriteOp::HMSet:
        return hset(command.handling.write == WriteOp::HMSet);
      case WriteOp::HDel:
        return hdel();
      case WriteOp::Expire:
        return single(1, "ttl", [&](KeyWrite& w) {
          if (!command.arityOk(args_.size())) return arity();
          w.cache_only = true;
          w.op_args.push_back(upper(name));
          for (std::size_t i = 2; i < args_.size(); ++i) w.op_args.emplace_back(args_[i]);
          return std::string();
        });
      case WriteOp::None:
        break;
    }
    WritePlan p;
    const cache::Keyspace* ks = nullptr;
    for (std::size_t i : keys) {
      if ((ks = match(args_[i]))) break;
    }
    p.error = errors::notOnKeyspace(name, ks ? ks->name() : std::string("?"));
    return p;
  }

 private:
  std::string arity() const { return errors::arity(args_[0]); }

  const cache::Keyspace* match(std::string_view key) { return registry_.match(key, values_); }

  // A KeyWrite for a mapped key; false (with `error` set) when the key cannot
  // name a row.
  bool begin(std::string_view key, const cache::Keyspace& ks, KeyWrite& w, std::string& error) {
    w.ks = &ks;
    w.key = std::string(key);
    w.key_values.assign(values_.begin(), values_.end());
    for (std::size_t i = 0; i < w.key_values.size(); ++i) {
      if (!ks.plausibleKeyValue(i, w.key_values[i])) {
        error =
            errors::invalidKeyValue(w.key_values[i], ks.key_columns[i], ks.key_types[i], ks.name());
        return false;
      }
    }
    return true;
  }

  std::string stringShape(const KeyWrite& w) const {
    return w.ks->isHash() ? std::string(kWrongType) : std::string();
  }

  std::string checkValue(const cache::Keyspace& ks, int column, std::string_view value) const {
    if (value.find('\0') != std::string_view::npos) {
      return errors::nulInText(ks.value_columns[column], ks.name());
    }
    const std::string& type = ks.value_types[column];
    if (integerColumn(type) && !plausibleInteger(value, type)) {
      return errors::invalidColumnValue(ks.value_columns[column], ks.name(), type);
    }
    return {};
  }

  // SET-like write of the whole string value. tk: d (keyspace TTL), p (relative
  // ms), a (absolute ms), k (keep).
  std::string stringValue(KeyWrite& w, bool arity_ok, std::size_t value_arg, std::string cond,
                          bool get, const std::string& tk, const std::string& ms) {
    if (!arity_ok) return arity();
    if (auto e = stringShape(w); !e.empty()) return e;
    if (auto e = checkValue(*w.ks, 0, args_[value_arg]); !e.empty()) return e;
    w.needs_row = !cond.empty() || get || tk == "k";
    w.op_args = {w.ks->value_columns[0],
                 std::string(args_[value_arg]),
                 std::move(cond),
                 get ? "1" : "0",
                 tk,
                 ms};
    w.change.columns[w.ks->value_columns[0]] = std::string(args_[value_arg]);
    return {};
  }

  template <typename Fill>
  WritePlan single(std::size_t key_arg, const char* op, Fill fill) {
    WritePlan p;
    if (args_.size() <= key_arg) {
      p.error = arity();
      return p;
    }
    const cache::Keyspace* ks = match(args_[key_arg]);
    KeyWrite w;
    w.op = op;
    if (!ks || !begin(args_[key_arg], *ks, w, p.error)) return p;
    p.error = fill(w);
    if (p.error.empty()) p.writes.push_back(std::move(w));
    return p;
  }

  WritePlan set() {
    // As Redis 7: an option may repeat (the last expiry wins), but NX/XX and
    // the expiry kinds (EX PX EXAT PXAT KEEPTTL) exclude each other.
    std::string cond, tk = "d", ms, expiry_kind;
    bool get = false;
    std::string error;
    if (args_.size() < 3) error = arity();
    for (std::size_t i = 3; i < args_.size() && error.empty(); ++i) {
      const std::string opt = upper(args_[i]);
      const bool has_next = i + 1 < args_.size();
      const bool expiry = opt == "EX" || opt == "PX" || opt == "EXAT" || opt == "PXAT";
      if ((opt == "NX" || opt == "XX") && (cond.empty() || cond == (opt == "NX" ? "nx" : "xx"))) {
        cond = opt == "NX" ? "nx" : "xx";
      } else if (opt == "GET") {
        get = true;
      } else if (opt == "KEEPTTL" && (expiry_kind.empty() || expiry_kind == opt)) {
        expiry_kind = opt;
        tk = "k";
      } else if (expiry && (expiry_kind.empty() || expiry_kind == opt) && has_next) {
        expiry_kind = opt;
        long long n = 0;
        if (!parseLong(args_[++i], n)) {
          error = kNotInteger;
          break;
        }
        const bool seconds = opt == "EX" || opt == "EXAT";
        const bool relative = opt == "EX" || opt == "PX";
        if (n <= 0 || (relative && !validRelativeExpiry(n, seconds)) ||
            (seconds && n > std::numeric_limits<long long>::max() / 1000)) {
          error = "ERR invalid expire time in 'set' command";
          break;
        }
        tk = relative ? "p" : "a";
        ms = std::to_string(seconds ? n * 1000 : n);
      } else {
        error = kSyntax;
      }
    }
    if (!error.empty()) {
      WritePlan p;
      p.error = error;
      return p;
    }
    return single(1, "set",
                  [&](KeyWrite& w) { return stringValue(w, true, 2, cond, get, tk, ms); });
  }

  WritePlan setex(bool millis) {
    return single(1, "set", [&](KeyWrite& w) {
      if (args_.size() != 4) return arity();
      long long n = 0;
      if (!parseLong(args_[2], n)) return std::string(kNotInteger);
      if (!validRelativeExpiry(n, !millis)) {
        return "ERR invalid expire time in '" + std::string(millis ? "psetex" : "setex") +
               "' command";
      }
      return stringValue(w, true, 3, "", false, "p", std::to_string(millis ? n : n * 1000));
    });
  }

  WritePlan mset() {
    WritePlan p;
    p.combine = Combine::AllOk;
    if (args_.size() < 3 || args_.size() % 2 == 0) {
      p.error = arity();
      return p;
    }
    std::vector<std::string_view> rest{"MSET"};
    for (std::size_t i = 1; i + 1 < args_.size(); i += 2) {
      const cache::Keyspace* ks = match(args_[i]);
      if (!ks) {
        rest.push_back(args_[i]);
        rest.push_back(args_[i + 1]);
        continue;
      }
      KeyWrite w;
      w.op = "set";
      if (!begin(args_[i], *ks, w, p.error)) return p;
      if ((p.error = stringValue(w, true, i + 1, "", false, "d", "")).size()) return p;
      p.writes.push_back(std::move(w));
    }
    if (rest.size() > 1) p.unmapped.assign(rest.begin(), rest.end());
    return p;
  }

  WritePlan del(const std::vector<std::size_t>& keys) {
    WritePlan p;
    p.combine = Combine::Sum;
    std::vector<std::string_view> rest{args_[0]};
    for (std::size_t i : keys) {
      const cache::Keyspace* ks = match(args_[i]);
      if (!ks) {
        rest.push_back(args_[i]);
        continue;
      }
      KeyWrite w;
      w.op = "del";
      if (!begin(args_[i], *ks, w, p.error)) return p;
      w.change.reset = true;
      p.writes.push_back(std::move(w));
    }
    if (keys.empty()) p.error = arity();
    if (rest.size() > 1) p.unmapped.assign(rest.begin(), rest.end());
    return p;
  }

  WritePlan hset(bool hmset) {
    return single(1, hmset ? "hmset" : "hset", [&](KeyWrite& w) {
      if (args_.size() < 4 || args_.size() % 2 != 0) return arity();
      if (!w.ks->isHash()) return std::string(kWrongType);
      w.needs_row = !hmset;
      for (std::size_t i = 2; i + 1 < args_.size(); i += 2) {
        const int column = w.ks->field(args_[i]);
        if (column < 0) return unknownColumn(*w.ks, args_[i]);
        if (auto e = checkValue(*w.ks, column, args_[i + 1]); !e.empty()) return e;
        w.op_args.emplace_back(args_[i]);
        w.op_args.emplace_back(args_[i + 1]);
        w.change.columns[std::string(args_[i])] = std::string(args_[i + 1]);
      }
      return std::string();
    });
  }

  WritePlan hdel() {
    return single(1, "hdel", [&](KeyWrite& w) {
      if (args_.size() < 3) return arity();
      if (!w.ks->isHash()) return std::string(kWrongType);
      for (std::size_t i = 2; i < args_.size(); ++i) {
        const int column = w.ks->field(args_[i]);
        if (column < 0) return unknownColumn(*w.ks, args_[i]);
        if (w.ks->value_not_null[column]) {
          return errors::notNullColumn(args_[i], w.ks->name());
        }
        w.op_args.emplace_back(args_[i]);
        w.change.columns[std::string(args_[i])] = std::nullopt;
      }
      return std::string();
    });
  }

  static std::string unknownColumn(const cache::Keyspace& ks, std::string_view field) {
    return errors::notAColumn(field, ks.name());
  }

  const std::vector<std::string_view>& args_;
  const cache::KeyspaceRegistry& registry_;
  std::vector<std::string_view> values_;
};

}  // namespace

WritePlan planWrite(const commands::Command& command, const std::vector<std::string_view>& args,
                    const std::vector<std::size_t>& keys, const cache::KeyspaceRegistry& registry) {
  return Planner(args, registry).plan(command, keys);
}

}  // namespace larder::cache
