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
  // PostgreSQL checks NOT NULL on INSERT's proposed row before ON CONFLICT
  // can turn it into an update, so a plain upsert of some columns fails on a
  // table with other NOT NULL columns. Existing rows are updated first; only
  // the rest is inserted (ON CONFLICT still covers a row inserted meanwhile):
  //
  //   WITH u AS (SELECT c1::bigint AS k1, c2::text AS v1 FROM unnest($1::text[], $2::text[])
  //                AS u(c1, c2)),
  //        upd AS (UPDATE s.t t SET "a" = u.v1 FROM u WHERE t."id" = u.k1 RETURNING t."id")
  //   INSERT INTO s.t ("id", "a") SELECT k1, v1 FROM u
  //     WHERE NOT EXISTS (SELECT 1 FROM upd WHERE upd."id" = u.k1)
  //   ON CONFLICT ("id") DO UPDATE SET "a" = EXCLUDED."a"
  ApplyStatement st;
  const std::size_t n = ks.key_columns.size();
  std::string casts, names, picks, conflict, updates, excluded, key_match, upd_match;
  std::size_t param = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string quoted = pg::quoteIdentifier(ks.key_columns[i]);
    const std::string k = "k" + std::to_string(i + 1);
    casts += (i ? ", c" : "c") + std::to_string(++param) + "::" + ks.key_types[i] + " AS " + k;
    names += (i ? ", " : "") + quoted;
    picks += (i ? ", " : "") + k;
    conflict += (i ? ", " : "") + quoted;
    key_match += (i ? " AND t." : "t.") + quoted + " = u." + k;
    upd_match += (i ? " AND upd." : "upd.") + quoted + " = u." + k;
    st.params.emplace_back(arrayOf(rows, which, [i](const PendingRow& r) {
      return std::optional<std::string_view>(r.key_values[i]);
    }));
  }
  std::size_t v = 0;
  for (int c : columns) {
    const std::string& name = ks.value_columns[c];
    const std::string quoted = pg::quoteIdentifier(name);
    const std::string alias = "v" + std::to_string(++v);
    casts += ", c" + std::to_string(++param) + "::" + ks.value_types[c] + " AS " + alias;
    names += ", " + quoted;
    picks += ", " + alias;
    updates += (updates.empty() ? "" : ", ") + quoted + " = u." + alias;
    excluded += (excluded.empty() ? "" : ", ") + quoted + " = EXCLUDED." + quoted;
    st.params.emplace_back(
        arrayOf(rows, which, [&name](const PendingRow& r) -> std::optional<std::string_view> {
          auto it = r.change.columns.find(name);
          if (it == r.change.columns.end() || !it->second) return std::nullopt;  // NULL
          return std::string_view(*it->second);
        }));
  }
  const std::string table = qualifiedTable(ks);
  std::string returning;
  for (std::size_t i = 0; i < n; ++i) {
    returning += (i ? ", t." : "t.") + pg::quoteIdentifier(ks.key_columns[i]);
  }
  st.sql = "WITH u AS (SELECT " + casts + " FROM " + unnestFrom(param) + "), upd AS (UPDATE " +
           table + " t SET " + updates + " FROM u WHERE " + key_match + " RETURNING " + returning +
           ") INSERT INTO " + table + " (" + names + ") SELECT " + picks +
           " FROM u WHERE NOT EXISTS (SELECT 1 FROM upd WHERE " + upd_match + ") ON CONFLICT (" +
           conflict + ") DO UPDATE SET " + excluded;
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
