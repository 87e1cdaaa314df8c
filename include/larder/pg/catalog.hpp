#pragma once
// Reads a table's shape from the PostgreSQL catalog, so key templates and
// columns in the config can be checked against the real table at start.
#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>
#include <vector>

#include "larder/pg/connection.hpp"

namespace larder::pg {

struct ColumnInfo {
  std::string name;
  std::string type;  // format_type(), e.g. "bigint", "character varying(20)"
  bool not_null = false;
  int pk_position = 0;  // 1-based position in the primary key; 0 = not a key column
  bool has_default = false;
  // The type without its modifier ("character varying", "bpchar", "numeric"):
  // what values are cast to, so that the column's own length or precision is
  // checked on assignment (22001) instead of cut by the cast. "": as `type`.
  std::string base_type;
};

struct TableInfo {
  std::string schema;
  std::string name;
  std::vector<ColumnInfo> columns;                    // in attnum order
  std::vector<const ColumnInfo*> primaryKey() const;  // in key order
  const ColumnInfo* column(const std::string& name) const;
};

// Splits a config table name into schema and table: `public.users`,
// `"My Schema"."My Table"`; unquoted parts fold to lower case as in SQL.
// Returns false (and sets `error`) when it is not schema-qualified or malformed.
bool splitTableName(const std::string& text, std::string& schema, std::string& table,
                    std::string& error);

// nullopt with an empty error: the table does not exist.
boost::asio::awaitable<std::pair<std::optional<TableInfo>, PgError>> readTable(
    Connection& connection, const std::string& schema, const std::string& table);

}  // namespace larder::pg
