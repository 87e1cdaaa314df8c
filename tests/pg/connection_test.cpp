// Connection against a real PostgreSQL: connecting, parameters, text
// formats of common types, array literals, large values.
#include <boost/asio/ip/tcp.hpp>
#include <thread>

#include "pg_test_support.hpp"

namespace larder::pg::test {
namespace {

TEST_CASE("connect succeeds and applies statement_timeout", "[pg][connection]") {
  const std::string url = dsn();
  PgError error;
  bool healthy = false;
  bool healthy_after_close = true;
  std::string timeout;
  std::string application;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 2s, 1234ms);
    error = co_await c.connect();
    healthy = c.healthy();
    auto shown = co_await c.query("SHOW statement_timeout");
    if (shown.ok()) timeout = shown.result.value(0, 0);
    auto app = co_await c.query("SELECT current_setting('application_name')");
    if (app.ok()) application = app.result.value(0, 0);
    c.close();
    healthy_after_close = c.healthy();
  });
  REQUIRE_FALSE(error);
  CHECK(healthy);
  CHECK(timeout == "1234ms");
  CHECK(application == "larder");  // fallback_application_name
  CHECK_FALSE(healthy_after_close);
}

TEST_CASE("connect to a closed port fails fast with libpq's message", "[pg][connection]") {
  const std::string url = closedPortDsn();
  PgError error;
  bool healthy = true;
  QueryOutcome after;
  long long elapsed = 0;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 2s, 1s);
    const auto start = Clock::now();
    error = co_await c.connect();
    elapsed = millisSince(start);
    healthy = c.healthy();
    after = co_await c.query("SELECT 1");
  });
  REQUIRE(error);
  INFO(error.message);
  CHECK(error.message.find("127.0.0.1") != std::string::npos);
  CHECK(error.message.find('\n') == std::string::npos);
  CHECK(error.sqlstate.empty());
  CHECK(error.retryable());
  CHECK(elapsed < 2000);
  CHECK_FALSE(healthy);
  CHECK(after.error.sqlstate == "08003");
}

TEST_CASE("connect to a server that never answers times out", "[pg][connection]") {
  asio::io_context probe;
  // Listening but never accepting: the kernel completes the TCP handshake,
  // and libpq then waits forever for an answer to its first message.
  asio::ip::tcp::acceptor silent(probe, {asio::ip::make_address("127.0.0.1"), 0});
  const std::string url = "host=127.0.0.1 port=" + std::to_string(silent.local_endpoint().port()) +
                          " dbname=none user=none";
  PgError error;
  long long elapsed = 0;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 300ms, 1s);
    const auto start = Clock::now();
    error = co_await c.connect();
    elapsed = millisSince(start);
  });
  REQUIRE(error);
  CHECK(error.message.find("timed out") != std::string::npos);
  CHECK(error.retryable());
  CHECK(elapsed >= 280);
  CHECK(elapsed < 2000);
}

TEST_CASE("text parameters round-trip unchanged, NULL included", "[pg][connection]") {
  const std::string url = dsn();
  const std::vector<std::string> samples = {"plain",
                                            "it's \"quoted\"",
                                            "back\\slash \\x00 \\\\",
                                            "new\nline\ttab\r",
                                            "ünïcødé ✓",
                                            "",
                                            "NULL",
                                            "{a,\"b\"}",
                                            "'; DROP TABLE x; --",
                                            std::string(100000, 'z')};
  std::vector<std::string> echoed;
  bool null_is_null = false;
  bool null_flag = false;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 2s, 5s);
    REQUIRE_NO_ERROR(co_await c.connect());
    for (const auto& sample : samples) {
      const Params params{sample};
      auto out = co_await c.query("SELECT $1::text", params);
      REQUIRE_OK(out);
      echoed.emplace_back(out.result.value(0, 0));
    }
    const Params nulls{std::nullopt};
    auto out = co_await c.query("SELECT $1::text IS NULL, $1::text", nulls);
    REQUIRE_OK(out);
    null_is_null = out.result.value(0, 0) == "t";
    null_flag = out.result.isNull(0, 1);
  });
  REQUIRE(echoed.size() == samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i) CHECK(echoed[i] == samples[i]);
  CHECK(null_is_null);
  CHECK(null_flag);
}

TEST_CASE("common types come back in PostgreSQL's text format", "[pg][connection]") {
  const std::string url = dsn();
  std::vector<std::string> values;
  std::vector<std::string> names;
  bool last_null = false;
  std::vector<std::string> from_params;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 2s, 5s);
    REQUIRE_NO_ERROR(co_await c.connect());
    REQUIRE_OK(co_await c.query("SET TimeZone = 'UTC'"));
    auto out = co_await c.query(
        "SELECT 42::int AS i, 9007199254740993::bigint AS big, 123.4500::numeric AS num, "
        "true AS yes, false AS no, '2024-01-02 03:04:05.5+02'::timestamptz AS ts, "
        "'{\"b\": 1, \"a\": [1, 2]}'::jsonb AS doc, '\\xdeadbeef'::bytea AS raw, "
        "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid AS id, NULL::int AS nothing");
    REQUIRE_OK(out);
    REQUIRE(out.result.rows() == 1);
    for (int col = 0; col < out.result.columns(); ++col) {
      values.emplace_back(out.result.value(0, col));
      names.emplace_back(out.result.columnName(col));
    }
    last_null = out.result.isNull(0, out.result.columns() - 1);
    const Params params{"9007199254740992", "true", "{\"k\": \"v\"}", "\\x0001ff", "1.25"};
    auto typed = co_await c.query(
        "SELECT $1::bigint + 1, $2::bool, $3::jsonb ->> 'k', $4::bytea, $5::numeric * 2", params);
    REQUIRE_OK(typed);
    for (int col = 0; col < typed.result.columns(); ++col) {
      from_params.emplace_back(typed.result.value(0, col));
    }
  });
  const std::vector<std::string> expected = {"42",
                                             "9007199254740993",
                                             "123.4500",
                                             "t",
                                             "f",
                                             "2024-01-02 01:04:05.5+00",
                                             "{\"a\": [1, 2], \"b\": 1}",
                                             "\\xdeadbeef",
                                             "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                                             ""};
  CHECK(values == expected);
  CHECK(names.front() == "i");
  CHECK(names.back() == "nothing");
  CHECK(last_null);
  CHECK(from_params == std::vector<std::string>{"9007199254740993", "t", "v", "\\x0001ff", "2.50"});
}

TEST_CASE("array literals bind as arrays, never as SQL", "[pg][connection]") {
  const std::string url = dsn();
  std::vector<std::string> ids;
  std::vector<std::optional<std::string>> texts;
  std::string empty_cardinality;
  const std::vector<std::optional<std::string_view>> items = {
      "a\"b", "c\\d", "e,f", "{g}", std::nullopt, "", "NULL", " spaced ", "ü"};
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 2s, 5s);
    REQUIRE_NO_ERROR(co_await c.connect());
    REQUIRE_OK(
        co_await c.script("CREATE TEMP TABLE ids(id bigint PRIMARY KEY); "
                          "INSERT INTO ids SELECT generate_series(1, 10)"));
    const Params wanted{arrayLiteral({"2", "5", "7", "42"})};
    auto out =
        co_await c.query("SELECT id FROM ids WHERE id = ANY($1::bigint[]) ORDER BY id", wanted);
    REQUIRE_OK(out);
    for (int row = 0; row < out.result.rows(); ++row) ids.emplace_back(out.result.value(row, 0));

    const Params text_items{arrayLiteral(items)};
    auto unnested = co_await c.query(
        "SELECT x FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n", text_items);
    REQUIRE_OK(unnested);
    for (int row = 0; row < unnested.result.rows(); ++row) {
      if (unnested.result.isNull(row, 0)) {
        texts.emplace_back(std::nullopt);
      } else {
        texts.emplace_back(std::string(unnested.result.value(row, 0)));
      }
    }
    const Params none{arrayLiteral({})};
    auto empty = co_await c.query("SELECT cardinality($1::text[])", none);
    REQUIRE_OK(empty);
    empty_cardinality = empty.result.value(0, 0);
  });
  CHECK(ids == std::vector<std::string>{"2", "5", "7"});
  REQUIRE(texts.size() == items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    INFO("element " << i);
    CHECK(texts[i].has_value() == items[i].has_value());
    if (items[i] && texts[i]) CHECK(*texts[i] == *items[i]);
  }
  CHECK(empty_cardinality == "0");
}

TEST_CASE("large results and many rows arrive completely", "[pg][connection]") {
  // Many reads per result; a missed readiness would hang here until the
  // client-side watchdog turned it into an error.
  const std::string url = dsn();
  std::size_t big_size = 0;
  int rows = 0;
  std::string last;
  long long affected = -1;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 2s, 20s);
    REQUIRE_NO_ERROR(co_await c.connect());
    auto big = co_await c.query("SELECT repeat('x', 8000000)");
    REQUIRE_OK(big);
    big_size = big.result.value(0, 0).size();
    auto many = co_await c.query("SELECT g, md5(g::text) FROM generate_series(1, 200000) g");
    REQUIRE_OK(many);
    rows = many.result.rows();
    last = many.result.value(rows - 1, 0);
    REQUIRE_OK(co_await c.query("CREATE TEMP TABLE t(x int)"));
    auto inserted = co_await c.query("INSERT INTO t SELECT generate_series(1, 3)");
    REQUIRE_OK(inserted);
    affected = inserted.result.affected();
  });
  CHECK(big_size == 8000000);
  CHECK(rows == 200000);
  CHECK(last == "200000");
  CHECK(affected == 3);
}

TEST_CASE("a response that arrived while the thread was busy is read completely",
          "[pg][connection]") {
  // The whole answer lands in the socket while the thread is blocked: no new
  // readiness edge will come, yet libpq reads at most one buffer per
  // PQconsumeInput. Each wait must still see the bytes already there.
  const std::string url = dsn();
  QueryOutcome out;
  long long elapsed = 0;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 1s, 2s);
    REQUIRE_NO_ERROR(co_await c.connect());
    asio::co_spawn(
        ex,
        []() -> asio::awaitable<void> {
          std::this_thread::sleep_for(300ms);  // busy elsewhere: no reading
          co_return;
        },
        rethrow);
    const auto start = Clock::now();
    out = co_await c.query("SELECT g, repeat('y', 40) FROM generate_series(1, 20000) g");
    elapsed = millisSince(start);
  });
  INFO(out.error.message);
  REQUIRE(out.ok());
  CHECK(out.result.rows() == 20000);
  CHECK(elapsed < 2000);
}

}  // namespace
}  // namespace larder::pg::test
