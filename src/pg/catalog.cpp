#include "larder/pg/catalog.hpp"

#include <algorithm>
#include <cstdlib>

namespace larder::pg {

namespace asio = boost::asio;

namespace {

bool isIdentifierStart(unsigned char c) {
  // Non-ASCII bytes are letters to PostgreSQL's lexer too.
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

bool isIdentifierChar(unsigned char c) {
  return isIdentifierStart(c) || (c >= '0' && c <= '9') || c == '$';
}

// Reads one identifier at `pos` (quoted or not) into `out`.
bool readIdentifier(const std::string& text, std::size_t& pos, std::string& out,
                    std::string& error) {
  out.clear();
  if (pos < text.size() && text[pos] == '"') {
    for (++pos;; ++pos) {
      if (pos >= text.size()) {
        error = "unbalanced double quotes in table name '" + text + "'";
        return false;
      }
      if (text[pos] == '"') {
        if (pos + 1 < text.size() && text[pos + 1] == '"') {
          out += '"';  // "" inside quotes is one "
          ++pos;
          continue;
        }
        ++pos;
        break;
      }
      out += text[pos];
    }
  } else {
    const std::size_t start = pos;
    while (pos < text.size() && isIdentifierChar(static_cast<unsigned char>(text[pos]))) {
      const char c = text[pos++];
      // SQL folds unquoted names to lower case (ASCII only, as PostgreSQL).
      out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
    if (pos > start && !isIdentifierStart(static_cast<unsigned char>(text[start]))) {
      error = "invalid table name '" + text + "': a name must not start with a digit or $";
      return false;
    }
  }
  if (out.empty()) {
    error = "empty schema or table name in '" + text + "'";
    return false;
  }
  return true;
}

// One row per column; a table without columns still yields one row (with
// NULL attname) so that it is told apart from a missing table. The key
// position comes from the primary key index's indkey, 1-based.
constexpr const char* kTableSql = R"SQL(
SELECT c.relkind, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
       a.attnotnull, a.atthasdef, COALESCE(k.position, 0), pg_catalog.format_type(a.atttypid, -1)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a
  ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary
LEFT JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
  ON k.attnum = a.attnum
WHERE n.nspname = $1 AND c.relname = $2
ORDER BY a.attnum)SQL";

}  // namespace

bool splitTableName(const std::string& text, std::string& schema, std::string& table,
                    std::string& error) {
  std::vector<std::string> parts;
  std::size_t pos = 0;
  for (;;) {
    std::string part;
    if (!readIdentifier(text, pos, part, error)) return false;
    parts.push_back(std::move(part));
    if (pos == text.size()) break;
    if (text[pos] != '.') {
      if (text[pos] == '"') {
        error = "unbalanced double quotes in table name '" + text + "'";
      } else {
        error = "invalid character in table name '" + text + "'";
      }
      return false;
    }
    ++pos;
  }
  if (parts.size() == 1) {
    error = "table must be schema-qualified, e.g. public.users";
    return false;
  }
  if (parts.size() != 2) {
    error = "table name '" + text + "' must be schema.table";
    return false;
  }
  schema = std::move(parts[0]);
  table = std::move(parts[1]);
  error.clear();
  return true;
}

std::vector<const ColumnInfo*> TableInfo::primaryKey() const {
  std::vector<const ColumnInfo*> key;
  for (const auto& column : columns) {
    if (column.pk_position > 0) key.push_back(&column);
  }
  std::sort(key.begin(), key.end(), [](const ColumnInfo* a, const ColumnInfo* b) {
    return a->pk_position < b->pk_position;
  });
  return key;
}

const ColumnInfo* TableInfo::column(const std::string& name) const {
  for (const auto& c : columns) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

asio::awaitable<std::pair<std::optional<TableInfo>, PgError>> readTable(Connection& connection,
                                                                        const std::string& schema,
                                                                        const std::string& table) {
  using Answer = std::pair<std::optional<TableInfo>, PgError>;
  // A named Params: GCC 12 cannot keep a braced list alive across co_await.
  const Params params{schema, table};
  QueryOutcome out = co_await connection.query(kTableSql, params);
  if (!out.ok()) co_return Answer{std::nullopt, std::move(out.error)};
  const Result& r = out.result;
  if (r.rows() == 0) co_return Answer{std::nullopt, PgError{}};
  const std::string_view relkind = r.value(0, 0);
  if (relkind != "r" && relkind != "p") {
    // A view, sequence, index...: exists, but cannot back a keyspace.
    co_return Answer{
        std::nullopt,
        PgError{"42809", quoteIdentifier(schema) + "." + quoteIdentifier(table) +
                             " is not a table (relkind '" + std::string(relkind) + "')"}};
  }
  TableInfo info;
  info.schema = schema;
  info.name = table;
  for (int row = 0; row < r.rows(); ++row) {
    if (r.isNull(row, 1)) continue;  // the table has no columns
    ColumnInfo column;
    column.name = std::string(r.value(row, 1));
    column.type = std::string(r.value(row, 2));
    column.not_null = r.value(row, 3) == "t";
    column.has_default = r.value(row, 4) == "t";
    column.pk_position = std::atoi(std::string(r.value(row, 5)).c_str());
    column.base_type = std::string(r.value(row, 6));
    info.columns.push_back(std::move(column));
  }
  co_return Answer{std::move(info), PgError{}};
}

}  // namespace larder::pg
