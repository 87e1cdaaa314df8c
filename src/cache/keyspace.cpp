#include "larder/cache/keyspace.hpp"

#include <algorithm>
#include <charconv>

#include "larder/pg/connection.hpp"

namespace larder::cache {

namespace {

// The range of PostgreSQL's integer types; 0 when `type` is not one.
int integerBits(const std::string& type) {
  if (type == "smallint") return 16;
  if (type == "integer") return 32;
  if (type == "bigint") return 64;
  return 0;
}

// PostgreSQL's own text form of an integer that fits the type: no '+', no
// leading zeros, no "-0", so one row is never cached under two keys (user:7
// and user:007), and no value PostgreSQL would refuse as out of range.
bool canonicalInteger(std::string_view v, int bits) {
  const std::string_view digits = !v.empty() && v.front() == '-' ? v.substr(1) : v;
  if (digits.empty() || digits.size() > 19) return false;
  if (digits.front() == '0' && (digits.size() > 1 || digits.size() != v.size())) return false;
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  long long value = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
  if (ec != std::errc() || ptr != v.data() + v.size()) return false;  // beyond 64 bits
  if (bits == 64) return true;
  const long long limit = 1LL << (bits - 1);
  return value >= -limit && value < limit;
}

// A column name from the config: "Quoted" keeps its case (and "" is a quote);
// a bare name folds to lower case, as PostgreSQL folds identifiers.
std::string columnName(const std::string& text) {
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
    std::string out;
    for (std::size_t i = 1; i + 1 < text.size(); ++i) {
      out += text[i];
      if (text[i] == '"') ++i;
    }
    return out;
  }
  std::string out = text;
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool canonicalUuid(std::string_view v) {
  if (v.size() != 36) return false;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? v[i] != '-' : !((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f'))) {
      return false;
    }
  }
  return true;
}

// "character varying(20)" -> 20; "numeric(10,2)" -> 10 (and scale 2); -1: none.
int typeModifier(const std::string& type, int* second = nullptr) {
  const auto open = type.find('(');
  if (open == std::string::npos) return -1;
  int first = 0, other = -1;
  std::size_t i = open + 1;
  for (; i < type.size() && type[i] >= '0' && type[i] <= '9'; ++i)
    first = first * 10 + (type[i] - '0');
  if (i < type.size() && type[i] == ',') {
    other = 0;
    for (++i; i < type.size() && type[i] >= '0' && type[i] <= '9'; ++i) {
      other = other * 10 + (type[i] - '0');
    }
  }
  if (second) *second = other;
  return first;
}

bool startsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

std::size_t utf8Length(std::string_view v) {
  std::size_t n = 0;
  for (unsigned char c : v) n += (c & 0xC0) != 0x80;
  return n;
}

bool digits(std::string_view v) {
  return !v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// YYYY-MM-DD, a real calendar day in years 0001-9999: PostgreSQL's ISO output.
bool canonicalDate(std::string_view v) {
  if (v.size() != 10 || v[4] != '-' || v[7] != '-') return false;
  if (!digits(v.substr(0, 4)) || !digits(v.substr(5, 2)) || !digits(v.substr(8, 2))) return false;
  const int y = std::stoi(std::string(v.substr(0, 4)));
  const int m = std::stoi(std::string(v.substr(5, 2)));
  const int d = std::stoi(std::string(v.substr(8, 2)));
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1 || m < 1 || m > 12 || d < 1) return false;
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return d <= kDays[m - 1] + (m == 2 && leap ? 1 : 0);
}

// Plain decimal, no '+', no leading zeros, no exponent; with a declared scale
// exactly that many fraction digits (as PostgreSQL prints the column), else
// no trailing fraction zeros.
bool canonicalNumeric(std::string_view v, int scale) {
  if (!v.empty() && v.front() == '-') v.remove_prefix(1);
  const auto dot = v.find('.');
  const std::string_view whole = v.substr(0, dot);
  if (!digits(whole) || (whole.size() > 1 && whole.front() == '0')) return false;
  if (dot == std::string_view::npos) return scale <= 0;
  const std::string_view fraction = v.substr(dot + 1);
  if (!digits(fraction)) return false;
  if (scale >= 0) return static_cast<int>(fraction.size()) == scale;
  return fraction.back() != '0';
}

std::string where(const config::KeyspaceConfig& ks, const pg::TableInfo& table) {
  return "keyspace '" + ks.name + "' (table " + table.schema + "." + table.name + ")";
}

}  // namespace

int Keyspace::field(std::string_view name) const {
  for (std::size_t i = 0; i < value_columns.size(); ++i) {
    if (value_columns[i] == name) return static_cast<int>(i);
  }
  return -1;
}

bool Keyspace::match(std::string_view text, std::vector<std::string_view>& values) const {
  values.clear();
  const auto& lits = key.literals;
  if (text.substr(0, lits[0].size()) != lits[0]) return false;
  std::size_t pos = lits[0].size();
  for (std::size_t i = 1; i < lits.size(); ++i) {
    const std::string& next = lits[i];
    std::size_t end;
    if (next.empty()) {  // the last placeholder takes the rest
      end = text.size();
    } else {
      end = text.find(next.front(), pos);
      if (end == std::string_view::npos) return false;
    }
    if (end == pos) return false;  // empty value
    values.push_back(text.substr(pos, end - pos));
    if (text.substr(end, next.size()) != next) return false;
    pos = end + next.size();
  }
  return pos == text.size();
}

bool Keyspace::plausibleKeyValue(std::size_t column, std::string_view value) const {
  const std::string& type = key_types[column];
  if (value.find('\0') != std::string_view::npos) return false;  // PostgreSQL text has no NUL
  if (const int bits = integerBits(type)) return canonicalInteger(value, bits);
  if (type == "uuid") return canonicalUuid(value);
  if (type == "boolean") return value == "true" || value == "false";
  if (type == "date") return canonicalDate(value);
  if (startsWith(type, "numeric")) {
    int scale = -1;
    typeModifier(type, &scale);
    return canonicalNumeric(value, scale);
  }
  if (startsWith(type, "character varying(")) {
    return utf8Length(value) <= static_cast<std::size_t>(typeModifier(type));
  }
  if (startsWith(type, "character(")) {
    // char(n) ignores trailing blanks when comparing: 'ab' and 'ab ' are one row.
    return !value.empty() && value.back() != ' ' &&
           utf8Length(value) <= static_cast<std::size_t>(typeModifier(type));
  }
  return true;
}

bool Keyspace::keyTypeChecked(const std::string& type) {
  return integerBits(type) != 0 || type == "uuid" || type == "boolean" || type == "date" ||
         type == "text" || startsWith(type, "numeric") || startsWith(type, "character");
}

Keyspace buildKeyspace(int id, const config::KeyspaceConfig& config, const pg::TableInfo& table) {
  Keyspace ks;
  ks.id = id;
  ks.config = config;
  ks.retune(config);
  std::string error;
  if (!config::parseKeyTemplate(config.key, ks.key, error)) {
    throw KeyspaceError("keyspace '" + config.name + "': key: " + error);
  }
  ks.schema = table.schema;
  ks.table = table.name;

  const auto pk = table.primaryKey();
  if (pk.empty()) {
    throw KeyspaceError(where(config, table) + ": the table has no primary key");
  }
  const auto& placeholders = ks.key.placeholders;
  for (const auto& name : placeholders) {
    const pg::ColumnInfo* column = table.column(name);
    if (column == nullptr) {
      throw KeyspaceError(where(config, table) + ": key placeholder {" + name +
                          "} is not a column of the table");
    }
    if (column->pk_position == 0) {
      throw KeyspaceError(where(config, table) + ": key placeholder {" + name +
                          "} is not a primary-key column");
    }
  }
  if (placeholders.size() != pk.size()) {
    std::string names;
    for (const auto* c : pk) names += (names.empty() ? "" : ", ") + c->name;
    throw KeyspaceError(where(config, table) + ": the key template has " +
                        std::to_string(placeholders.size()) +
                        " placeholder(s) but the primary key is (" + names + ")");
  }
  for (std::size_t i = 0; i < pk.size(); ++i) {
    if (placeholders[i] != pk[i]->name) {
      throw KeyspaceError(where(config, table) + ": key placeholder {" + placeholders[i] +
                          "} is in position " + std::to_string(i + 1) + " but primary-key column " +
                          std::to_string(i + 1) + " is " + pk[i]->name);
    }
    ks.key_columns.push_back(pk[i]->name);
    ks.key_types.push_back(pk[i]->type);
    ks.key_casts.push_back(pk[i]->base_type.empty() ? pk[i]->type : pk[i]->base_type);
  }

  std::vector<const pg::ColumnInfo*> values;
  if (config.columns.empty()) {
    for (const auto& c : table.columns) {
      if (c.pk_position == 0) values.push_back(&c);
    }
  } else {
    for (const auto& configured : config.columns) {
      const std::string name = columnName(configured);
      const pg::ColumnInfo* c = table.column(name);
      if (c == nullptr) {
        throw KeyspaceError(where(config, table) + ": column '" + name + "' does not exist");
      }
      if (c->pk_position != 0) {
        throw KeyspaceError(where(config, table) + ": column '" + name +
                            "' is part of the primary key; it is already in the key");
      }
      values.push_back(c);
    }
  }
  if (values.empty()) {
    throw KeyspaceError(where(config, table) + ": the table has no non-key column to cache");
  }
  if (!ks.isHash() && values.size() != 1) {
    throw KeyspaceError(where(config, table) + ": shape string needs exactly one value column, " +
                        "found " + std::to_string(values.size()) + "; list it in columns");
  }
  for (const auto& c : table.columns) {
    if (c.pk_position == 0 && c.not_null && !c.has_default) ks.required_columns.push_back(c.name);
  }
  for (const auto* c : values) {
    ks.value_columns.push_back(c->name);
    ks.value_types.push_back(c->type);
    ks.value_casts.push_back(c->base_type.empty() ? c->type : c->base_type);
    ks.value_not_null.push_back(c->not_null);
  }

  // SELECT k.ord, t."c1", ... FROM "s"."t" t
  //   JOIN unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS k(k1, k2, ord)
  //     ON t."id1" = k.k1 AND t."id2" = k.k2
  // ord maps each row back to the key that asked for it.
  std::string sql = "SELECT k.ord";
  for (const auto& c : ks.value_columns) sql += ", t." + pg::quoteIdentifier(c);
  sql += " FROM " + pg::quoteIdentifier(ks.schema) + "." + pg::quoteIdentifier(ks.table) +
         " t JOIN unnest(";
  for (std::size_t i = 0; i < ks.key_columns.size(); ++i) {
    sql += (i ? ", $" : "$") + std::to_string(i + 1) + "::" + ks.key_casts[i] + "[]";
  }
  sql += ") WITH ORDINALITY AS k(";
  for (std::size_t i = 0; i < ks.key_columns.size(); ++i) {
    sql += "k" + std::to_string(i + 1) + ", ";
  }
  sql += "ord) ON ";
  for (std::size_t i = 0; i < ks.key_columns.size(); ++i) {
    sql += (i ? " AND t." : "t.") + pg::quoteIdentifier(ks.key_columns[i]) + " = k.k" +
           std::to_string(i + 1);
  }
  ks.load_sql = std::move(sql);
  return ks;
}

void Keyspace::retune(const config::KeyspaceConfig& next) {
  ttl_ms.set(next.ttl.count());
  ttl_jitter.set(next.ttl_jitter);
  negative_ttl_ms.set(next.negative_ttl.count());
  lease_ms.set(next.stampede.lease.count());
  early_refresh.set(next.stampede.early_refresh);
  stale_ms.set(next.stampede.stale_while_revalidate.count());
}

KeyspaceRegistry::KeyspaceRegistry(std::vector<Keyspace> keyspaces) {
  for (auto& ks : keyspaces) add(std::move(ks));
}

const Keyspace& KeyspaceRegistry::add(Keyspace keyspace) {
  const std::size_t id = size();
  if (id >= slots_.capacity() || keyspace.id != static_cast<int>(id)) {
    throw KeyspaceError("keyspace '" + keyspace.name() + "': cannot be added as keyspace " +
                        std::to_string(id) + " (at most " + std::to_string(config::kMaxKeyspaces) +
                        ")");
  }
  const Keyspace* added = slots_.set(id, std::make_unique<Keyspace>(std::move(keyspace)));
  size_.store(id + 1, std::memory_order_release);
  return *added;
}

const Keyspace* KeyspaceRegistry::match(std::string_view key,
                                        std::vector<std::string_view>& values) const {
  // Templates never overlap (checked at load), so the first fit is the only one.
  const std::size_t n = size();
  for (std::size_t i = 0; i < n; ++i) {
    const Keyspace& ks = at(i);
    if (key.size() > ks.key.prefix().size() && ks.match(key, values)) return &ks;
  }
  return nullptr;
}

const Keyspace* KeyspaceRegistry::byName(std::string_view name) const {
  const std::size_t n = size();
  for (std::size_t i = 0; i < n; ++i) {
    if (at(i).name() == name) return &at(i);
  }
  return nullptr;
}

}  // namespace larder::cache
