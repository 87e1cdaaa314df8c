#include "larder/cache/change.hpp"

#include <catch2/catch.hpp>

#include "larder/cache/keyspace.hpp"

using namespace larder;
using cache::Change;

namespace {

using Columns = std::map<std::string, std::optional<std::string>, std::less<>>;

Change change(bool reset, Columns columns) {
  Change c;
  c.reset = reset;
  c.columns = std::move(columns);
  return c;
}

// "<NULL>" for a NULL parameter, so a failed CHECK prints something readable.
std::vector<std::string> paramsOf(const cache::ApplyStatement& st) {
  std::vector<std::string> out;
  for (const auto& p : st.params) out.push_back(p ? *p : std::string("<NULL>"));
  return out;
}

// public.members: primary key (tenant text, id bigint); columns name text, age integer.
cache::Keyspace membersKeyspace() {
  pg::TableInfo t;
  t.schema = "public";
  t.name = "members";
  t.columns = {{"tenant", "text", true, 1, false, ""},
               {"id", "bigint", true, 2, false, ""},
               {"name", "text", false, 0, false, ""},
               {"age", "integer", false, 0, false, ""}};
  config::KeyspaceConfig c;
  c.name = "members";
  c.key = "member:{tenant}:{id}";
  c.table = "public.members";
  c.shape = config::KeyShape::Hash;
  return cache::buildKeyspace(0, c, t);
}

cache::PendingRow row(std::string tenant, std::string id, Change c) {
  cache::PendingRow r;
  r.key = "member:" + tenant + ":" + id;
  r.key_values = {std::move(tenant), std::move(id)};
  r.change = std::move(c);
  return r;
}

const std::string kDelete =
    "DELETE FROM \"public\".\"members\" t USING unnest($1::text[], $2::bigint[]) WITH "
    "ORDINALITY AS u(k1, k2, ord) WHERE t.\"tenant\" = u.k1 AND t.\"id\" = u.k2 RETURNING u.ord";
// No NOT NULL column outside the key: a plain INSERT ... ON CONFLICT.
const std::string kUpsertName =
    "INSERT INTO \"public\".\"members\" (\"tenant\", \"id\", \"name\") SELECT k1, k2, v1 FROM "
    "unnest($1::text[], $2::bigint[], $3::text[]) AS u(k1, k2, v1) ON CONFLICT (\"tenant\", "
    "\"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\"";
const std::string kUpsertNameAge =
    "INSERT INTO \"public\".\"members\" (\"tenant\", \"id\", \"name\", \"age\") SELECT k1, k2, "
    "v1, v2 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::integer[]) AS u(k1, k2, v1, "
    "v2) ON CONFLICT (\"tenant\", \"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\", \"age\" = "
    "EXCLUDED.\"age\"";
const std::string kUpsertAge =
    "INSERT INTO \"public\".\"members\" (\"tenant\", \"id\", \"age\") SELECT k1, k2, v1 FROM "
    "unnest($1::text[], $2::bigint[], $3::integer[]) AS u(k1, k2, v1) ON CONFLICT (\"tenant\", "
    "\"id\") DO UPDATE SET \"age\" = EXCLUDED.\"age\"";

}  // namespace

TEST_CASE("a change is empty, deletes the row, or writes columns", "[cache][change]") {
  CHECK(Change{}.empty());
  CHECK_FALSE(Change{}.deletesRow());

  const Change del = change(true, {});
  CHECK(del.deletesRow());
  CHECK_FALSE(del.empty());

  const Change set = change(false, {{"a", "1"}});
  CHECK_FALSE(set.deletesRow());
  CHECK_FALSE(set.empty());

  // HDEL: a NULL column is still a write, not an empty change.
  const Change cleared = change(false, {{"a", std::nullopt}});
  CHECK_FALSE(cleared.empty());
  CHECK_FALSE(cleared.deletesRow());

  const Change replaced = change(true, {{"a", "1"}});
  CHECK_FALSE(replaced.deletesRow());
  CHECK_FALSE(replaced.empty());
}

TEST_CASE("then: the last value of a column wins", "[cache][change]") {
  Change c = change(false, {{"a", "1"}, {"b", "2"}});
  c.then(change(false, {{"a", "3"}}));
  c.then(change(false, {{"b", std::nullopt}, {"c", "4"}}));
  CHECK_FALSE(c.reset);
  CHECK(c.columns == Columns{{"a", "3"}, {"b", std::nullopt}, {"c", "4"}});

  // A value after a NULL brings the column back.
  c.then(change(false, {{"b", "5"}}));
  CHECK(c.columns == Columns{{"a", "3"}, {"b", "5"}, {"c", "4"}});

  // An empty later change changes nothing.
  c.then(Change{});
  CHECK_FALSE(c.reset);
  CHECK(c.columns == Columns{{"a", "3"}, {"b", "5"}, {"c", "4"}});
}

TEST_CASE("then: a reset forgets every earlier column", "[cache][change]") {
  SECTION("set then reset deletes the row") {
    Change c = change(false, {{"a", "1"}, {"b", std::nullopt}});
    c.then(change(true, {}));
    CHECK(c.reset);
    CHECK(c.columns.empty());
    CHECK(c.deletesRow());
  }
  SECTION("reset then set replaces the row") {
    Change c = change(true, {});
    c.then(change(false, {{"a", "1"}}));
    CHECK(c.reset);
    CHECK(c.columns == Columns{{"a", "1"}});
    CHECK_FALSE(c.deletesRow());
    CHECK_FALSE(c.empty());
  }
  SECTION("a reset with columns keeps only its own columns") {
    Change c = change(false, {{"a", "1"}, {"b", "2"}});
    c.then(change(true, {{"c", "3"}}));
    CHECK(c.reset);
    CHECK(c.columns == Columns{{"c", "3"}});
  }
  SECTION("a later plain write does not undo an earlier reset") {
    Change c = change(true, {{"a", "1"}});
    c.then(change(false, {{"b", "2"}}));
    CHECK(c.reset);
    CHECK(c.columns == Columns{{"a", "1"}, {"b", "2"}});
  }
}

TEST_CASE("encode writes flat field/value pairs and appends", "[cache][change]") {
  std::vector<std::string> out{"k", "user:1"};
  change(true, {{"a", "1"}, {"b", std::nullopt}}).encode(out);
  CHECK(out == std::vector<std::string>{"k", "user:1", "d", "1", "f:a", "1", "z:b", ""});

  std::vector<std::string> plain;
  change(false, {{"name", "x y"}}).encode(plain);
  CHECK(plain == std::vector<std::string>{"f:name", "x y"});

  std::vector<std::string> none;
  Change{}.encode(none);
  CHECK(none.empty());

  std::vector<std::string> del;
  change(true, {}).encode(del);
  CHECK(del == std::vector<std::string>{"d", "1"});
}

TEST_CASE("decodeField reads back what encode wrote", "[cache][change]") {
  const std::vector<Change> cases = {
      Change{},
      change(true, {}),
      change(false, {{"a", "1"}}),
      change(false, {{"a", std::nullopt}}),
      change(true, {{"a", ""}, {"b", std::nullopt}, {"col:with:colons", "v\r\nw"}}),
  };
  for (const auto& original : cases) {
    std::vector<std::string> fields;
    original.encode(fields);
    REQUIRE(fields.size() % 2 == 0);
    Change decoded;
    for (std::size_t i = 0; i < fields.size(); i += 2) {
      CHECK(decoded.decodeField(fields[i], fields[i + 1]));
    }
    CHECK(decoded.reset == original.reset);
    CHECK(decoded.columns == original.columns);
  }
}

TEST_CASE("decodeField: d resets, f sets, z clears, anything else is refused", "[cache][change]") {
  Change c;
  CHECK(c.decodeField("f:a", "1"));
  CHECK(c.decodeField("z:b", "ignored"));
  CHECK(c.columns == Columns{{"a", "1"}, {"b", std::nullopt}});
  CHECK(c.decodeField("d", "1"));
  CHECK(c.reset);
  CHECK(c.columns.empty());
  CHECK(c.decodeField("f:c", "3"));
  CHECK(c.columns == Columns{{"c", "3"}});

  Change untouched;
  CHECK_FALSE(untouched.decodeField("k", "user:1"));  // the stream entry's key field
  CHECK_FALSE(untouched.decodeField("_id", "1-0"));   // the marker's stream id
  CHECK_FALSE(untouched.decodeField("x:a", "1"));
  CHECK_FALSE(untouched.decodeField("f", "1"));
  CHECK_FALSE(untouched.decodeField("fa", "1"));
  CHECK_FALSE(untouched.decodeField("", ""));
  CHECK_FALSE(untouched.decodeField("dd", "1"));
  CHECK(untouched.empty());
}

TEST_CASE("buildApply: one DELETE, one upsert per set of columns written", "[cache][change]") {
  const cache::Keyspace ks = membersKeyspace();
  const std::vector<cache::PendingRow> rows = {
      row("acme", "1", change(false, {{"name", "Ann"}})),                 // 0: {name}
      row("beta", "2", change(true, {})),                                 // 1: delete
      row("acme", "3", change(false, {{"name", "Bob"}, {"age", "40"}})),  // 2: {name, age}
      row("beta", "4", change(false, {{"name", std::nullopt}})),          // 3: {name} NULL
      row("acme", "5", change(true, {{"age", "7"}})),                     // 4: replaced
      row("acme", "6", change(true, {})),                                 // 5: delete
      row("acme", "7", change(false, {{"nickname", "x"}})),               // 6: unmapped only
  };
  const auto statements = cache::buildApply(ks, rows, {0, 1, 2, 3, 4, 5, 6});
  REQUIRE(statements.size() == 3);

  const auto& del = statements[0];
  CHECK(del.sql == kDelete);
  // One text[] per key column, one element per row.
  CHECK(paramsOf(del) == std::vector<std::string>{R"({"beta","acme"})", R"({"2","6"})"});
  CHECK(del.rows == std::vector<std::size_t>{1, 5});

  const auto& name = statements[1];
  CHECK(name.sql == kUpsertName);
  CHECK(paramsOf(name) ==
        std::vector<std::string>{R"({"acme","beta"})", R"({"1","4"})", R"({"Ann",NULL})"});
  CHECK(name.rows == std::vector<std::size_t>{0, 3});

  // The replaced row (reset + age) writes every value column: name becomes NULL.
  const auto& both = statements[2];
  CHECK(both.sql == kUpsertNameAge);
  CHECK(paramsOf(both) == std::vector<std::string>{R"({"acme","acme"})", R"({"3","5"})",
                                                   R"({"Bob",NULL})", R"({"40","7"})"});
  CHECK(both.rows == std::vector<std::size_t>{2, 4});
}

TEST_CASE("buildApply: rows map back to the indexes given", "[cache][change]") {
  const cache::Keyspace ks = membersKeyspace();
  const std::vector<cache::PendingRow> rows = {
      row("acme", "1", change(false, {{"name", "a"}})),
      row("acme", "2", change(true, {})),
      row("acme", "3", change(false, {{"age", "3"}})),
      row("acme", "4", change(false, {{"name", "d"}})),
  };
  // Only some rows, out of order: groups in first-seen order, no DELETE at all.
  const auto statements = cache::buildApply(ks, rows, {3, 2, 0});
  REQUIRE(statements.size() == 2);
  CHECK(statements[0].sql == kUpsertName);
  CHECK(statements[0].rows == std::vector<std::size_t>{3, 0});
  CHECK(paramsOf(statements[0]) ==
        std::vector<std::string>{R"({"acme","acme"})", R"({"4","1"})", R"({"d","a"})"});
  CHECK(statements[1].sql == kUpsertAge);
  CHECK(statements[1].rows == std::vector<std::size_t>{2});
  CHECK(paramsOf(statements[1]) == std::vector<std::string>{R"({"acme"})", R"({"3"})", R"({"3"})"});

  CHECK(cache::buildApply(ks, rows, {}).empty());
  // A row naming only columns the keyspace does not map needs no statement.
  const std::vector<cache::PendingRow> unmapped = {
      row("acme", "1", change(false, {{"nickname", "x"}}))};
  CHECK(cache::buildApply(ks, unmapped, {0}).empty());
}

TEST_CASE("buildApply: values are quoted array elements, never SQL", "[cache][change]") {
  const cache::Keyspace ks = membersKeyspace();
  const std::vector<cache::PendingRow> rows = {
      row("a\"b\\c", "1", change(false, {{"name", "NULL"}})),
      row("x,y", "2", change(false, {{"name", "'); DROP TABLE members; --"}})),
      row("{}", "3", change(false, {{"name", ""}})),
  };
  const auto statements = cache::buildApply(ks, rows, {0, 1, 2});
  REQUIRE(statements.size() == 1);
  CHECK(statements[0].sql == kUpsertName);
  // The text "NULL" and the empty string stay values; only nullopt is NULL.
  CHECK(paramsOf(statements[0]) ==
        std::vector<std::string>{R"({"a\"b\\c","x,y","{}"})", R"({"1","2","3"})",
                                 R"({"NULL","'); DROP TABLE members; --",""})"});
}

TEST_CASE("buildApply: a NOT NULL column the write leaves out means update first",
          "[cache][change]") {
  // public.people: id bigint, name varchar(3) NOT NULL (no default), nick char(2).
  pg::TableInfo t;
  t.schema = "public";
  t.name = "people";
  t.columns = {{"id", "bigint", true, 1, false, "bigint"},
               {"name", "character varying(3)", true, 0, false, "character varying"},
               {"nick", "character(2)", false, 0, false, "bpchar"}};
  config::KeyspaceConfig c;
  c.name = "people";
  c.key = "p:{id}";
  c.table = "public.people";
  c.shape = config::KeyShape::Hash;
  const cache::Keyspace ks = cache::buildKeyspace(0, c, t);
  CHECK(ks.required_columns == std::vector<std::string>{"name"});
  cache::PendingRow nick;
  nick.key = "p:1";
  nick.key_values = {"1"};
  nick.change = change(false, {{"nick", "ab"}});
  cache::PendingRow name = nick;
  name.change = change(false, {{"name", "abcd"}});
  const std::vector<cache::PendingRow> rows{nick, name};

  // Writing nick alone: an INSERT would fail NOT NULL on name before ON
  // CONFLICT; values are cast without the length, so the column checks it.
  const auto left_out = cache::buildApply(ks, rows, {0});
  REQUIRE(left_out.size() == 1);
  CHECK(left_out[0].sql ==
        "WITH u AS (SELECT * FROM unnest($1::bigint[], $2::bpchar[]) AS u(k1, v1)), upd AS "
        "(UPDATE \"public\".\"people\" t SET \"nick\" = u.v1 FROM u WHERE t.\"id\" = u.k1 "
        "RETURNING t.\"id\") INSERT INTO \"public\".\"people\" (\"id\", \"nick\") SELECT k1, v1 "
        "FROM u WHERE NOT EXISTS (SELECT 1 FROM upd WHERE upd.\"id\" = u.k1) ON CONFLICT "
        "(\"id\") DO UPDATE SET \"nick\" = EXCLUDED.\"nick\"");

  // Writing name: the plain upsert, name cast to varchar without (3).
  const auto named = cache::buildApply(ks, rows, {1});
  REQUIRE(named.size() == 1);
  CHECK(named[0].sql ==
        "INSERT INTO \"public\".\"people\" (\"id\", \"name\") SELECT k1, v1 FROM "
        "unnest($1::bigint[], $2::character varying[]) AS u(k1, v1) ON CONFLICT (\"id\") DO "
        "UPDATE SET \"name\" = EXCLUDED.\"name\"");
}
