// Catalog reads against a real PostgreSQL, and table-name splitting.
#include "larder/pg/catalog.hpp"

#include "pg_test_support.hpp"

namespace larder::pg::test {
namespace {

struct Split {
  bool ok;
  std::string schema, table, error;
};

Split split(const std::string& text) {
  Split s;
  s.ok = splitTableName(text, s.schema, s.table, s.error);
  return s;
}

TEST_CASE("splitTableName folds, unquotes and rejects", "[pg][catalog]") {
  auto plain = split("public.users");
  CHECK(plain.ok);
  CHECK(plain.schema == "public");
  CHECK(plain.table == "users");
  CHECK(plain.error.empty());

  auto folded = split("Public.Users_2$");
  CHECK(folded.ok);
  CHECK(folded.schema == "public");
  CHECK(folded.table == "users_2$");

  auto quoted = split("\"My Schema\".\"My \"\"Table\"\"\"");
  CHECK(quoted.ok);
  CHECK(quoted.schema == "My Schema");
  CHECK(quoted.table == "My \"Table\"");

  auto mixed = split("\"MixedCase\".tbl");
  CHECK(mixed.ok);
  CHECK(mixed.schema == "MixedCase");
  CHECK(mixed.table == "tbl");

  auto dotted = split("\"a.b\".\"c\"");
  CHECK(dotted.ok);
  CHECK(dotted.schema == "a.b");
  CHECK(dotted.table == "c");

  CHECK(split("users").error == "table must be schema-qualified, e.g. public.users");
  CHECK(split("\"Users\"").error == "table must be schema-qualified, e.g. public.users");
  CHECK(split("\"public.users").error.find("unbalanced") != std::string::npos);
  CHECK(split("public.\"users").error.find("unbalanced") != std::string::npos);
  CHECK(split("public.users\"").error.find("unbalanced") != std::string::npos);
  CHECK(split("public.").error.find("empty") != std::string::npos);
  CHECK(split(".users").error.find("empty") != std::string::npos);
  CHECK(split("\"\".users").error.find("empty") != std::string::npos);
  CHECK(split("").error.find("empty") != std::string::npos);
  CHECK_FALSE(split("db.public.users").ok);
  CHECK_FALSE(split("public.us ers").ok);
  CHECK_FALSE(split("public.1users").ok);
  CHECK_FALSE(split("public.users;drop").ok);
}

TEST_CASE("readTable reads columns, flags and key positions", "[pg][catalog]") {
  const std::string url = dsn();
  std::optional<TableInfo> info, missing, no_key, partitioned;
  PgError error, missing_error, view_error;
  bool view_found = true;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 2s, 5s);
    REQUIRE_NO_ERROR(co_await c.connect());
    auto setup = co_await c.script(R"SQL(
      DROP SCHEMA IF EXISTS "MixedCase" CASCADE;
      CREATE SCHEMA "MixedCase";
      CREATE TABLE "MixedCase"."Tbl" (
        "Id" int, name text NOT NULL DEFAULT 'x', gone int, region text,
        created timestamptz DEFAULT now(), note varchar(20),
        PRIMARY KEY (region, "Id"));
      ALTER TABLE "MixedCase"."Tbl" DROP COLUMN gone;
      CREATE TABLE "MixedCase".nokey (a bigint, b numeric(10, 2));
      CREATE VIEW "MixedCase".v AS SELECT 1 AS one;
      CREATE TABLE "MixedCase".parted (id bigint PRIMARY KEY) PARTITION BY RANGE (id);
    )SQL");
    REQUIRE_OK(setup);
    std::string schema, table, split_error;
    REQUIRE(splitTableName("\"MixedCase\".\"Tbl\"", schema, table, split_error));
    std::tie(info, error) = co_await readTable(c, schema, table);
    std::tie(missing, missing_error) = co_await readTable(c, "MixedCase", "tbl");
    PgError ignored;
    std::tie(no_key, ignored) = co_await readTable(c, "MixedCase", "nokey");
    std::tie(partitioned, ignored) = co_await readTable(c, "MixedCase", "parted");
    std::optional<TableInfo> view;
    std::tie(view, view_error) = co_await readTable(c, "MixedCase", "v");
    view_found = view.has_value();
  });
  REQUIRE_FALSE(error);
  REQUIRE(info);
  CHECK(info->schema == "MixedCase");
  CHECK(info->name == "Tbl");
  REQUIRE(info->columns.size() == 5);  // the dropped column is gone
  std::vector<std::string> names;
  for (const auto& c : info->columns) names.push_back(c.name);
  CHECK(names == std::vector<std::string>{"Id", "name", "region", "created", "note"});

  const ColumnInfo* id = info->column("Id");
  REQUIRE(id != nullptr);
  CHECK(id->type == "integer");
  CHECK(id->not_null);  // primary key columns are NOT NULL
  CHECK(id->pk_position == 2);
  CHECK_FALSE(id->has_default);
  const ColumnInfo* name = info->column("name");
  REQUIRE(name != nullptr);
  CHECK(name->not_null);
  CHECK(name->has_default);
  CHECK(name->pk_position == 0);
  const ColumnInfo* created = info->column("created");
  REQUIRE(created != nullptr);
  CHECK(created->type == "timestamp with time zone");
  CHECK_FALSE(created->not_null);
  CHECK(created->has_default);
  CHECK(info->column("note")->type == "character varying(20)");
  CHECK(info->column("nope") == nullptr);
  CHECK(info->column("id") == nullptr);  // names are exact

  const auto key = info->primaryKey();
  REQUIRE(key.size() == 2);
  CHECK(key[0]->name == "region");
  CHECK(key[1]->name == "Id");

  CHECK_FALSE(missing);
  CHECK_FALSE(missing_error);

  REQUIRE(no_key);
  CHECK(no_key->primaryKey().empty());
  CHECK(no_key->column("b")->type == "numeric(10,2)");

  REQUIRE(partitioned);
  CHECK(partitioned->primaryKey().size() == 1);

  CHECK_FALSE(view_found);
  CHECK(view_error.sqlstate == "42809");
  CHECK(view_error.message.find("not a table") != std::string::npos);
}

}  // namespace
}  // namespace larder::pg::test
