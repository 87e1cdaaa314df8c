#include "larder/cache/keyspace.hpp"

#include <catch2/catch.hpp>

using namespace larder;

namespace {

pg::TableInfo usersTable() {
  pg::TableInfo t;
  t.schema = "public";
  t.name = "users";
  t.columns = {{"id", "bigint", true, 1, false, ""},
               {"name", "text", true, 0, false, ""},
               {"email", "text", false, 0, false, ""}};
  return t;
}

pg::TableInfo ordersTable() {
  pg::TableInfo t;
  t.schema = "public";
  t.name = "orders";
  t.columns = {{"total", "numeric(10,2)", false, 0, false, ""},
               {"tenant", "text", true, 1, false, ""},
               {"id", "integer", true, 2, false, ""}};
  return t;
}

config::KeyspaceConfig ksConfig(std::string name, std::string key, std::string table) {
  config::KeyspaceConfig c;
  c.name = std::move(name);
  c.key = std::move(key);
  c.table = std::move(table);
  return c;
}

std::vector<std::string> matchOf(const cache::Keyspace& ks, std::string_view key) {
  std::vector<std::string_view> values;
  if (!ks.match(key, values)) return {"<no match>"};
  return {values.begin(), values.end()};
}

}  // namespace

TEST_CASE("templates split keys into primary-key values", "[cache]") {
  auto users =
      cache::buildKeyspace(0, ksConfig("users", "user:{id}", "public.users"), usersTable());
  CHECK(matchOf(users, "user:1") == std::vector<std::string>{"1"});
  CHECK(matchOf(users, "user:a:b{c}") == std::vector<std::string>{"a:b{c}"});
  CHECK(matchOf(users, "user:") == std::vector<std::string>{"<no match>"});
  CHECK(matchOf(users, "users:1") == std::vector<std::string>{"<no match>"});
  CHECK(matchOf(users, "xuser:1") == std::vector<std::string>{"<no match>"});

  auto orders = cache::buildKeyspace(1, ksConfig("orders", "order:{tenant}:{id}", "public.orders"),
                                     ordersTable());
  CHECK(matchOf(orders, "order:acme:17") == std::vector<std::string>{"acme", "17"});
  // The first value stops at the ':' that follows it; the last takes the rest.
  CHECK(matchOf(orders, "order:acme:2024:17") == std::vector<std::string>{"acme", "2024:17"});
  CHECK(matchOf(orders, "order::17") == std::vector<std::string>{"<no match>"});
  CHECK(matchOf(orders, "order:acme") == std::vector<std::string>{"<no match>"});
}

TEST_CASE("a middle literal after the last placeholder must match exactly", "[cache]") {
  pg::TableInfo t = usersTable();
  auto ks = cache::buildKeyspace(0, ksConfig("u", "u:{id}:profile", "public.users"), t);
  CHECK(matchOf(ks, "u:5:profile") == std::vector<std::string>{"5"});
  CHECK(matchOf(ks, "u:5:profilex") == std::vector<std::string>{"<no match>"});
  CHECK(matchOf(ks, "u:5:prof") == std::vector<std::string>{"<no match>"});
}

TEST_CASE("the load query binds arrays and quotes identifiers", "[cache]") {
  auto orders = cache::buildKeyspace(1, ksConfig("orders", "order:{tenant}:{id}", "public.orders"),
                                     ordersTable());
  CHECK(orders.load_sql ==
        "SELECT k.ord, t.\"total\" FROM \"public\".\"orders\" t JOIN unnest($1::text[], "
        "$2::integer[]) WITH ORDINALITY AS k(k1, k2, ord) ON t.\"tenant\" = k.k1 AND t.\"id\" "
        "= k.k2");
  CHECK(orders.value_columns == std::vector<std::string>{"total"});
  CHECK(orders.key_columns == std::vector<std::string>{"tenant", "id"});
}

TEST_CASE("integer and uuid keys must be spelt as PostgreSQL spells them", "[cache]") {
  auto users =
      cache::buildKeyspace(0, ksConfig("users", "user:{id}", "public.users"), usersTable());
  CHECK(users.plausibleKeyValue(0, "7"));
  CHECK(users.plausibleKeyValue(0, "-7"));
  CHECK(users.plausibleKeyValue(0, "0"));
  CHECK_FALSE(users.plausibleKeyValue(0, "007"));
  CHECK_FALSE(users.plausibleKeyValue(0, "+7"));
  CHECK_FALSE(users.plausibleKeyValue(0, "-0"));
  CHECK_FALSE(users.plausibleKeyValue(0, "abc"));
  CHECK_FALSE(users.plausibleKeyValue(0, "12345678901234567890"));
  pg::TableInfo t = usersTable();
  t.columns[0].type = "uuid";
  auto byUuid = cache::buildKeyspace(0, ksConfig("u", "u:{id}", "public.users"), t);
  CHECK(byUuid.plausibleKeyValue(0, "0e8e1b2c-1a2b-4c3d-8e9f-0123456789ab"));
  CHECK_FALSE(byUuid.plausibleKeyValue(0, "0E8E1B2C-1A2B-4C3D-8E9F-0123456789AB"));
  t.columns[0].type = "text";
  auto byText = cache::buildKeyspace(0, ksConfig("u", "u:{id}", "public.users"), t);
  CHECK(byText.plausibleKeyValue(0, "007"));
  CHECK_FALSE(byText.plausibleKeyValue(0, std::string_view("a\0b", 3)));
}

TEST_CASE("configs that do not fit the table are refused with names", "[cache]") {
  auto build = [](config::KeyspaceConfig c, pg::TableInfo t) {
    return cache::buildKeyspace(0, c, t);
  };
  auto c = ksConfig("users", "user:{id}", "public.users");
  c.columns = {"name", "emial"};
  CHECK_THROWS_WITH(build(c, usersTable()),
                    "keyspace 'users' (table public.users): column 'emial' does not exist");
  c.columns = {"id"};
  CHECK_THROWS_WITH(build(c, usersTable()),
                    "keyspace 'users' (table public.users): column 'id' is part of the primary "
                    "key; it is already in the key");
  CHECK_THROWS_WITH(build(ksConfig("users", "user:{uid}", "public.users"), usersTable()),
                    "keyspace 'users' (table public.users): key placeholder {uid} is not a "
                    "column of the table");
  CHECK_THROWS_WITH(build(ksConfig("users", "user:{name}", "public.users"), usersTable()),
                    "keyspace 'users' (table public.users): key placeholder {name} is not a "
                    "primary-key column");
  CHECK_THROWS_WITH(
      build(ksConfig("orders", "order:{id}:{tenant}", "public.orders"), ordersTable()),
      "keyspace 'orders' (table public.orders): key placeholder {id} is in position 1 but "
      "primary-key column 1 is tenant");
  CHECK_THROWS_WITH(build(ksConfig("orders", "order:{id}", "public.orders"), ordersTable()),
                    "keyspace 'orders' (table public.orders): the key template has 1 "
                    "placeholder(s) but the primary key is (tenant, id)");
  auto s = ksConfig("names", "name:{id}", "public.users");
  s.shape = config::KeyShape::String;
  CHECK_THROWS_WITH(build(s, usersTable()),
                    "keyspace 'names' (table public.users): shape string needs exactly one "
                    "value column, found 2; list it in columns");
  pg::TableInfo nokey = usersTable();
  nokey.columns[0].pk_position = 0;
  CHECK_THROWS_WITH(build(ksConfig("users", "user:{id}", "public.users"), nokey),
                    "keyspace 'users' (table public.users): the table has no primary key");
}

TEST_CASE("the registry finds the one keyspace a key belongs to", "[cache]") {
  std::vector<cache::Keyspace> all;
  all.push_back(
      cache::buildKeyspace(0, ksConfig("users", "user:{id}", "public.users"), usersTable()));
  all.push_back(cache::buildKeyspace(1, ksConfig("orders", "order:{tenant}:{id}", "public.orders"),
                                     ordersTable()));
  cache::KeyspaceRegistry registry(std::move(all));
  std::vector<std::string_view> values;
  const cache::Keyspace* ks = registry.match("order:a:1", values);
  REQUIRE(ks != nullptr);
  CHECK(ks->name() == "orders");
  CHECK(registry.match("user:9", values)->name() == "users");
  CHECK(registry.match("session:9", values) == nullptr);
  CHECK(registry.byName("orders") == ks);
  CHECK(ks->field("total") == 0);
  CHECK(ks->field("nope") == -1);
}

TEST_CASE("integer keys beyond the column type's range name no row", "[cache]") {
  pg::TableInfo t = usersTable();
  auto big = cache::buildKeyspace(0, ksConfig("u", "u:{id}", "public.users"), t);
  CHECK(big.plausibleKeyValue(0, "9223372036854775807"));
  CHECK(big.plausibleKeyValue(0, "-9223372036854775808"));
  CHECK_FALSE(big.plausibleKeyValue(0, "9223372036854775808"));
  t.columns[0].type = "integer";
  auto mid = cache::buildKeyspace(0, ksConfig("u", "u:{id}", "public.users"), t);
  CHECK(mid.plausibleKeyValue(0, "2147483647"));
  CHECK(mid.plausibleKeyValue(0, "-2147483648"));
  CHECK_FALSE(mid.plausibleKeyValue(0, "2147483648"));
  t.columns[0].type = "smallint";
  auto small = cache::buildKeyspace(0, ksConfig("u", "u:{id}", "public.users"), t);
  CHECK(small.plausibleKeyValue(0, "-32768"));
  CHECK_FALSE(small.plausibleKeyValue(0, "32768"));
}

TEST_CASE("configured column names are quoted or folded as in SQL", "[cache]") {
  pg::TableInfo t = usersTable();
  t.columns.push_back({"Full Name", "text", false, 0, false, ""});
  auto c = ksConfig("u", "u:{id}", "public.users");
  c.columns = {"\"Full Name\"", "EMAIL"};
  auto ks = cache::buildKeyspace(0, c, t);
  CHECK(ks.value_columns == std::vector<std::string>{"Full Name", "email"});
  c.columns = {"\"full name\""};
  CHECK_THROWS_WITH(cache::buildKeyspace(0, c, t),
                    "keyspace 'u' (table public.users): column 'full name' does not exist");
}

TEST_CASE("a key value has one accepted spelling per row", "[cache]") {
  auto keyed = [](const std::string& type) {
    pg::TableInfo t;
    t.schema = "public";
    t.name = "k";
    t.columns = {{"id", type, true, 1, false, ""}, {"v", "text", false, 0, false, ""}};
    return cache::buildKeyspace(0, ksConfig("k", "k:{id}", "public.k"), t);
  };
  SECTION("integers") {
    auto ks = keyed("bigint");
    CHECK(ks.plausibleKeyValue(0, "7"));
    CHECK_FALSE(ks.plausibleKeyValue(0, "007"));
    CHECK_FALSE(ks.plausibleKeyValue(0, "+7"));
    CHECK_FALSE(ks.plausibleKeyValue(0, "-0"));
  }
  SECTION("boolean: as the invalidation trigger spells it") {
    auto ks = keyed("boolean");
    CHECK(ks.plausibleKeyValue(0, "true"));
    CHECK(ks.plausibleKeyValue(0, "false"));
    for (const char* v : {"t", "f", "yes", "1", "TRUE", "on"})
      CHECK_FALSE(ks.plausibleKeyValue(0, v));
  }
  SECTION("date: ISO, a real day") {
    auto ks = keyed("date");
    CHECK(ks.plausibleKeyValue(0, "2024-01-05"));
    CHECK(ks.plausibleKeyValue(0, "2024-02-29"));
    for (const char* v : {"2024-1-5", "2023-02-29", "2024-13-01", "20240105", "2024-01-05 ",
                          "0000-01-01", "01/05/2024"}) {
      CHECK_FALSE(ks.plausibleKeyValue(0, v));
    }
  }
  SECTION("numeric: the column's scale, or no trailing zeros") {
    auto scaled = keyed("numeric(10,2)");
    CHECK(scaled.plausibleKeyValue(0, "1.50"));
    CHECK(scaled.plausibleKeyValue(0, "-3.00"));
    for (const char* v : {"1.5", "1.500", "01.50", "+1.50", "1.5e0", "1"}) {
      CHECK_FALSE(scaled.plausibleKeyValue(0, v));
    }
    auto free = keyed("numeric");
    CHECK(free.plausibleKeyValue(0, "1.5"));
    CHECK(free.plausibleKeyValue(0, "12"));
    CHECK_FALSE(free.plausibleKeyValue(0, "1.50"));
    CHECK_FALSE(free.plausibleKeyValue(0, "1."));
  }
  SECTION("varchar(n) and char(n): no longer than n, char without trailing blanks") {
    auto v = keyed("character varying(3)");
    CHECK(v.plausibleKeyValue(0, "abc"));
    CHECK(v.plausibleKeyValue(0, "\xc3\xa9\xc3\xa9\xc3\xa9"));  // 3 characters, 6 bytes
    CHECK_FALSE(v.plausibleKeyValue(0, "abcd"));
    auto c = keyed("character(3)");
    CHECK(c.plausibleKeyValue(0, "ab"));
    CHECK_FALSE(c.plausibleKeyValue(0, "ab "));
    CHECK_FALSE(c.plausibleKeyValue(0, "abcd"));
  }
  CHECK(cache::Keyspace::keyTypeChecked("date"));
  CHECK_FALSE(cache::Keyspace::keyTypeChecked("timestamp without time zone"));
}
