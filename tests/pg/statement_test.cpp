// Prepared statements, scripts, server errors and their SQLSTATEs, timeouts,
// and connections that die under us.
#include <boost/asio/experimental/awaitable_operators.hpp>

#include "pg_test_support.hpp"

namespace larder::pg::test {
namespace {

using namespace asio::experimental::awaitable_operators;

TEST_CASE("prepared statements are reused, and prepared again after reconnect",
          "[pg][connection]") {
  const std::string url = dsn();
  std::vector<std::string> answers;
  std::vector<std::string> prepared_counts;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 2s, 5s);
    REQUIRE_NO_ERROR(co_await c.connect());
    auto count = [&]() -> asio::awaitable<void> {
      auto n = co_await c.query("SELECT count(*) FROM pg_prepared_statements WHERE name = 'dbl'");
      REQUIRE_OK(n);
      prepared_counts.emplace_back(n.result.value(0, 0));
    };
    const std::string sql = "SELECT $1::int * 2";
    for (const char* value : {"21", "50"}) {
      const Params params{value};
      auto out = co_await c.prepared("dbl", sql, params);
      REQUIRE_OK(out);
      answers.emplace_back(out.result.value(0, 0));
    }
    co_await count();  // 1: prepared once, run twice

    c.close();
    REQUIRE_NO_ERROR(co_await c.connect());
    co_await count();  // 0: a fresh session
    const Params seven{"7"};
    auto again = co_await c.prepared("dbl", sql, seven);
    REQUIRE_OK(again);
    answers.emplace_back(again.result.value(0, 0));
    co_await count();  // 1

    // Statements dropped behind our back are prepared again transparently.
    REQUIRE_OK(co_await c.script("DEALLOCATE ALL"));
    auto after_discard = co_await c.prepared("dbl", sql, seven);
    REQUIRE_OK(after_discard);
    answers.emplace_back(after_discard.result.value(0, 0));
  });
  CHECK(answers == std::vector<std::string>{"42", "100", "14", "14"});
  CHECK(prepared_counts == std::vector<std::string>{"1", "0", "1"});
}

TEST_CASE("scripts run several statements; a failed one rolls its transaction back",
          "[pg][connection]") {
  const std::string url = dsn();
  QueryOutcome multi;
  std::string last_value;
  std::string last_name;
  PgError failed;
  std::string count_after_commit;
  std::string count_after_failure;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 2s, 5s);
    REQUIRE_NO_ERROR(co_await c.connect());
    multi = co_await c.script(
        "CREATE TEMP TABLE s(x int); BEGIN; INSERT INTO s VALUES (1); "
        "INSERT INTO s VALUES (2); COMMIT;");
    auto count = co_await c.query("SELECT count(*) FROM s");
    REQUIRE_OK(count);
    count_after_commit = count.result.value(0, 0);

    auto last = co_await c.script("SELECT 1; SELECT 2 AS two");
    REQUIRE_OK(last);
    last_value = last.result.value(0, 0);
    last_name = last.result.columnName(0);

    auto bad = co_await c.script("BEGIN; INSERT INTO s VALUES (3); SELECT 1/0; COMMIT;");
    failed = bad.error;
    // Not 25P02 "current transaction is aborted": the script's transaction is gone.
    auto recount = co_await c.query("SELECT count(*) FROM s");
    REQUIRE_OK(recount);
    count_after_failure = recount.result.value(0, 0);
  });
  CHECK(multi.ok());
  CHECK(count_after_commit == "2");
  CHECK(last_value == "2");
  CHECK(last_name == "two");
  CHECK(failed.sqlstate == "22012");
  CHECK(count_after_failure == "2");
}

TEST_CASE("server errors carry their SQLSTATE and no row values", "[pg][connection]") {
  const std::string url = dsn();
  PgError unique, division, syntax, nul;
  bool healthy_after = false;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 2s, 5s);
    REQUIRE_NO_ERROR(co_await c.connect());
    REQUIRE_OK(co_await c.query("CREATE TEMP TABLE u(id int PRIMARY KEY, email text UNIQUE)"));
    const Params first{"1", "secret-value@example.com"};
    REQUIRE_OK(co_await c.query("INSERT INTO u VALUES ($1, $2)", first));
    const Params second{"2", "secret-value@example.com"};
    unique = (co_await c.query("INSERT INTO u VALUES ($1, $2)", second)).error;
    division = (co_await c.query("SELECT 1/0")).error;
    syntax = (co_await c.query("SELEC 1")).error;
    const Params with_nul{std::string("a\0b", 3)};
    nul = (co_await c.query("SELECT $1::text", with_nul)).error;
    healthy_after = c.healthy();
    auto after = co_await c.query("SELECT 1");
    healthy_after = healthy_after && after.ok();
  });
  CHECK(unique.sqlstate == "23505");
  CHECK_FALSE(unique.retryable());
  INFO(unique.message);
  CHECK(unique.message.find("secret-value") == std::string::npos);  // DETAIL is left out
  CHECK(unique.message.find("u_email_key") != std::string::npos);
  CHECK(division.sqlstate == "22012");
  CHECK(division.message == "division by zero");
  CHECK(syntax.sqlstate == "42601");
  CHECK(nul.sqlstate == "22021");
  CHECK(nul.message.find("$1") != std::string::npos);
  CHECK(healthy_after);
}

TEST_CASE("statement_timeout cancels a slow statement with 57014", "[pg][connection]") {
  const std::string url = dsn();
  PgError error;
  long long elapsed = 0;
  bool usable_after = false;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection c(ex, url, 2s, 200ms);
    REQUIRE_NO_ERROR(co_await c.connect());
    const auto start = Clock::now();
    error = (co_await c.query("SELECT pg_sleep(5)")).error;
    elapsed = millisSince(start);
    usable_after = c.healthy();
    auto after = co_await c.query("SELECT 1");
    usable_after = usable_after && after.ok();
  });
  CHECK(error.sqlstate == "57014");
  CHECK_FALSE(error.retryable());
  CHECK(elapsed >= 150);
  CHECK(elapsed < 3000);
  CHECK(usable_after);
}

TEST_CASE("a connection terminated by the server reports a retryable error", "[pg][connection]") {
  const std::string url = dsn();
  PgError first, second;
  bool healthy = true;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Connection victim(ex, url, 2s, 5s);
    REQUIRE_NO_ERROR(co_await victim.connect());
    auto pid = co_await victim.query("SELECT pg_backend_pid()");
    REQUIRE_OK(pid);
    co_await terminateBackend(std::string(pid.result.value(0, 0)));
    first = (co_await victim.query("SELECT 1")).error;
    healthy = victim.healthy();
    second = (co_await victim.query("SELECT 1")).error;
  });
  INFO(first.sqlstate << " " << first.message);
  REQUIRE(first);
  CHECK(first.retryable());
  CHECK_FALSE(healthy);
  CHECK(second.sqlstate == "08003");
  CHECK(second.retryable());
}

TEST_CASE("an abandoned query leaves the connection unhealthy, and it closes cleanly",
          "[pg][connection]") {
  const std::string url = dsn();
  std::size_t winner = 99;
  bool healthy = true;
  runAsync([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    auto c = std::make_unique<Connection>(ex, url, 2s, 5s);
    REQUIRE_NO_ERROR(co_await c->connect());
    asio::steady_timer timer(ex, 100ms);
    auto raced = co_await (c->query("SELECT pg_sleep(2)") || timer.async_wait(kUseTuple));
    winner = raced.index();
    healthy = c->healthy();
    c.reset();  // destroyed idle after the abandoned exchange
  });
  CHECK(winner == 1);
  CHECK_FALSE(healthy);
}

}  // namespace
}  // namespace larder::pg::test
