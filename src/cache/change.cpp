#include "larder/cache/change.hpp"

#include <algorithm>

#include "larder/cache/keyspace.hpp"

namespace larder::cache {

void Change::then(const Change& later) {
  if (later.reset) {
    reset = true;
    columns.clear();
  }
  for (const auto& [name, value] : later.columns) columns[name] = value;
}

void Change::encode(std::vector<std::string>& out) const {
  if (reset) {
    out.emplace_back("d");
    out.emplace_back("1");
  }
  for (const auto& [name, value] : columns) {
    out.push_back((value ? "f:" : "z:") + name);
    out.push_back(value ? *value : std::string());
  }
}

bool Change::decodeField(std::string_view name, std::string_view value) {
  if (name == "d") {
    reset = true;
    columns.clear();
    return true;
  }
  if (name.size() < 2 || name[1] != ':') return false;
  const std::string column(name.substr(2));
  if (name[0] == 'f') {
    columns[column] = std::string(value);
  } else if (name[0] == 'z') {
    columns[column] = std::nullopt;
  } else {
    return false;
  }
  return true;
}

namespace {

std::string qualifiedTable(const Keyspace& ks) {
  return pg::quoteIdentifier(ks.schema) + "." + pg::quoteIdentifier(ks.table);
}

// unnest($1::text[], $2::text[], ...) AS u(c1, c2, ...)
std::string unnestFrom(std::size_t columns) {
  std::string sql = "unnest(";
  for (std::size_t i = 0; i < columns; ++i) {
    sql += (i ? ", $" : "$") + std::to_string(i + 1) + "::text[]";
  }
  sql += ") AS u(";
  for (std::size_t i = 0; i < columns; ++i) sql += (i ? ", c" : "c") + std::to_string(i + 1);
  return sql + ")";
}

std::string arrayOf(const std::vector<PendingRow>& rows, const std::vector<std::size_t>& which,
                    const auto& element) {
  std::vector<std::optional<std::string_view>> items;
  items.reserve(which.size());
  for (std::size_t row : which) items.push_back(element(rows[row]));
  return pg::arrayLiteral(items);
}

ApplyStatement deleteStatement(const Keyspace& ks, const std::vector<PendingRow>& rows,
                               std::vector<std::size_t> which) {
  // DELETE FROM s.t t USING unnest($1::text[]) AS u(c1) WHERE t."id" = u.c1::bigint
  ApplyStatement st;
  const std::size_t n = ks.key_columns.size();
  st.sql = "DELETE FROM " + qualifiedTable(ks) + " t USING " + unnestFrom(n) + " WHERE ";
  for (std::size_t i = 0; i < n; ++i) {
    st.sql += (i ? " AND t." : "t.") + pg::quoteIdentifier(ks.key_columns[i]) + " = u.c" +
              std::to_string(i + 1) + "::" + ks.key_types[i];
    st.params.emplace_back(arrayOf(rows, which, [i](const PendingRow& r) {
      return std::optional<std::string_view>(r.key_values[i]);
    }));
  }
  st.rows = std::move(which);
  return st;
}

ApplyStatement upsertStatement(const Keyspace& ks, const std::vector<PendingRow>& rows,
                               std::vector<std::size_t> which, const std::vector<int>& columns) {
  // INSERT INTO s.t ("id", "a") SELECT u.c1::bigint, u.c2::text FROM unnest(...) AS u(c1, c2)
  //   ON CONFLICT ("id") DO UPDATE SET "a" = EXCLUDED."a"
  ApplyStatement st;
  const std::size_t n = ks.key_columns.size();
  std::string names, casts, conflict, updates;
  std::size_t param = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string quoted = pg::quoteIdentifier(ks.key_columns[i]);
    names += (i ? ", " : "") + quoted;
    conflict += (i ? ", " : "") + quoted;
    casts += (i ? ", u.c" : "u.c") + std::to_string(++param) + "::" + ks.key_types[i];
    st.params.emplace_back(arrayOf(rows, which, [i](const PendingRow& r) {
      return std::optional<std::string_view>(r.key_values[i]);
    }));
  }
  for (int c : columns) {
    const std::string& name = ks.value_columns[c];
    const std::string quoted = pg::quoteIdentifier(name);
    names += ", " + quoted;
    casts += ", u.c" + std::to_string(++param) + "::" + ks.value_types[c];
    updates += (updates.empty() ? "" : ", ") + quoted + " = EXCLUDED." + quoted;
    st.params.emplace_back(
        arrayOf(rows, which, [&name](const PendingRow& r) -> std::optional<std::string_view> {
          auto it = r.change.columns.find(name);
          if (it == r.change.columns.end() || !it->second) return std::nullopt;  // NULL
          return std::string_view(*it->second);
        }));
  }
  st.sql = "INSERT INTO " + qualifiedTable(ks) + " (" + names + ") SELECT " + casts + " FROM " +
           unnestFrom(param) + " ON CONFLICT (" + conflict + ") DO UPDATE SET " + updates;
  st.rows = std::move(which);
  return st;
}

}  // namespace

std::vector<ApplyStatement> buildApply(const Keyspace& ks, const std::vector<PendingRow>& rows,
                                       const std::vector<std::size_t>& which) {
  std::vector<std::size_t> deletes;
  // Rows grouped by the set of columns they write, in first-seen order.
  std::vector<std::pair<std::vector<int>, std::vector<std::size_t>>> upserts;
  for (std::size_t row : which) {
    const Change& change = rows[row].change;
    if (change.deletesRow()) {
      deletes.push_back(row);
      continue;
    }
    std::vector<int> columns;
    for (std::size_t c = 0; c < ks.value_columns.size(); ++c) {
      // A replaced row (reset) writes every column: those not named become NULL.
      if (change.reset || change.columns.count(ks.value_columns[c]) != 0) {
        columns.push_back(static_cast<int>(c));
      }
    }
    if (columns.empty()) continue;  // names no mapped column: nothing to do
    auto group = std::find_if(upserts.begin(), upserts.end(),
                              [&columns](const auto& g) { return g.first == columns; });
    if (group == upserts.end()) {
      upserts.emplace_back(std::move(columns), std::vector<std::size_t>{row});
    } else {
      group->second.push_back(row);
    }
  }
  std::vector<ApplyStatement> out;
  if (!deletes.empty()) out.push_back(deleteStatement(ks, rows, std::move(deletes)));
  for (auto& [columns, members] : upserts) {
    out.push_back(upsertStatement(ks, rows, std::move(members), columns));
  }
  return out;
}

}  // namespace larder::cache
