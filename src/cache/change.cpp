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

std::string arrayOf(const std::vector<PendingRow>& rows, const std::vector<std::size_t>& which,
                    const auto& element) {
  std::vector<std::optional<std::string_view>> items;
  items.reserve(which.size());
  for (std::size_t row : which) items.push_back(element(rows[row]));
  return pg::arrayLiteral(items);
}

// Each parameter is one array of every row's value, parsed by the element
// type's own input function ($1::bigint[]). Types are cast without their
// modifier, so the column applies its length on assignment (22001 for a
// value too long) where `::varchar(3)` would silently cut it.
struct Unnest {
  std::string from;     // unnest($1::bigint[], $2::text[]) AS u(k1, v1)
  std::string columns;  // k1, v1
  pg::Params params;
};

Unnest unnestOf(const Keyspace& ks, const std::vector<PendingRow>& rows,
                const std::vector<std::size_t>& which, const std::vector<int>& columns,
                bool ordinality = false) {
  Unnest u;
  std::string args, names;
  std::size_t param = 0;
  auto add = [&](const std::string& cast, const std::string& name, std::string array) {
    args += (param ? ", $" : "$") + std::to_string(param + 1) + "::" + cast + "[]";
    names += (param ? ", " : "") + name;
    ++param;
    u.params.emplace_back(std::move(array));
  };
  for (std::size_t i = 0; i < ks.key_columns.size(); ++i) {
    add(ks.key_casts[i], "k" + std::to_string(i + 1),
        arrayOf(rows, which, [i](const PendingRow& r) {
          return std::optional<std::string_view>(r.key_values[i]);
        }));
  }
  std::size_t v = 0;
  for (int c : columns) {
    const std::string& name = ks.value_columns[c];
    add(ks.value_casts[c], "v" + std::to_string(++v),
        arrayOf(rows, which, [&name](const PendingRow& r) -> std::optional<std::string_view> {
          auto it = r.change.columns.find(name);
          if (it == r.change.columns.end() || !it->second) return std::nullopt;  // NULL
          return std::string_view(*it->second);
        }));
  }
  u.from = "unnest(" + args + ")" + (ordinality ? " WITH ORDINALITY" : "") + " AS u(" + names +
           (ordinality ? ", ord)" : ")");
  u.columns = std::move(names);
  return u;
}

ApplyStatement deleteStatement(const Keyspace& ks, const std::vector<PendingRow>& rows,
                               std::vector<std::size_t> which) {
  // DELETE FROM s.t t USING unnest($1::bigint[]) WITH ORDINALITY AS u(k1, ord)
  //   WHERE t."id" = u.k1 RETURNING u.ord
  // ord: which of the rows existed (1-based in `rows`), for DEL's reply.
  Unnest u = unnestOf(ks, rows, which, {}, true);
  ApplyStatement st;
  st.sql = "DELETE FROM " + qualifiedTable(ks) + " t USING " + u.from + " WHERE ";
  for (std::size_t i = 0; i < ks.key_columns.size(); ++i) {
    st.sql += (i ? " AND t." : "t.") + pg::quoteIdentifier(ks.key_columns[i]) + " = u.k" +
              std::to_string(i + 1);
  }
  st.sql += " RETURNING u.ord";
  st.deletes = true;
  st.params = std::move(u.params);
  st.rows = std::move(which);
  return st;
}

ApplyStatement upsertStatement(const Keyspace& ks, const std::vector<PendingRow>& rows,
                               std::vector<std::size_t> which, const std::vector<int>& columns) {
  Unnest u = unnestOf(ks, rows, which, columns);
  const std::string table = qualifiedTable(ks);
  std::string names, conflict, excluded, updates, key_match, upd_match, returning;
  for (std::size_t i = 0; i < ks.key_columns.size(); ++i) {
    const std::string quoted = pg::quoteIdentifier(ks.key_columns[i]);
    const std::string k = "k" + std::to_string(i + 1);
    names += (i ? ", " : "") + quoted;
    conflict += (i ? ", " : "") + quoted;
    key_match += (i ? " AND t." : "t.") + quoted + " = u." + k;
    upd_match += (i ? " AND upd." : "upd.") + quoted + " = u." + k;
    returning += (i ? ", t." : "t.") + quoted;
  }
  std::vector<std::string_view> written;
  std::size_t v = 0;
  for (int c : columns) {
    const std::string quoted = pg::quoteIdentifier(ks.value_columns[c]);
    written.push_back(ks.value_columns[c]);
    names += ", " + quoted;
    updates += (updates.empty() ? "" : ", ") + quoted + " = u.v" + std::to_string(++v);
    excluded += (excluded.empty() ? "" : ", ") + quoted + " = EXCLUDED." + quoted;
  }
  ApplyStatement st;
  const bool plain = std::all_of(
      ks.required_columns.begin(), ks.required_columns.end(), [&written](const std::string& c) {
        return std::find(written.begin(), written.end(), c) != written.end();
      });
  if (plain) {
    // INSERT INTO s.t ("id", "a") SELECT k1, v1 FROM unnest($1::bigint[], $2::text[])
    //   AS u(k1, v1) ON CONFLICT ("id") DO UPDATE SET "a" = EXCLUDED."a"
    st.sql = "INSERT INTO " + table + " (" + names + ") SELECT " + u.columns + " FROM " + u.from +
             " ON CONFLICT (" + conflict + ") DO UPDATE SET " + excluded;
  } else {
    // A NOT NULL column this write does not name: PostgreSQL checks NOT NULL
    // on the INSERT's proposed row before ON CONFLICT can make it an update,
    // so existing rows are updated first and only the rest inserted (ON
    // CONFLICT still covers a row inserted meanwhile):
    //
    //   WITH u AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS u(k1, v1)),
    //        upd AS (UPDATE s.t t SET "a" = u.v1 FROM u WHERE t."id" = u.k1 RETURNING t."id")
    //   INSERT INTO s.t ("id", "a") SELECT k1, v1 FROM u
    //     WHERE NOT EXISTS (SELECT 1 FROM upd WHERE upd."id" = u.k1)
    //   ON CONFLICT ("id") DO UPDATE SET "a" = EXCLUDED."a"
    st.sql = "WITH u AS (SELECT * FROM " + u.from + "), upd AS (UPDATE " + table + " t SET " +
             updates + " FROM u WHERE " + key_match + " RETURNING " + returning + ") INSERT INTO " +
             table + " (" + names + ") SELECT " + u.columns +
             " FROM u WHERE NOT EXISTS (SELECT 1 FROM upd WHERE " + upd_match + ") ON CONFLICT (" +
             conflict + ") DO UPDATE SET " + excluded;
  }
  st.params = std::move(u.params);
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
