// Pool against a real PostgreSQL: size limit, FIFO waiting, timeouts,
// replacement of broken connections, backoff and close.
#include "larder/pg/pool.hpp"

#include "pg_test_support.hpp"

namespace larder::pg::test {
namespace {

config::PostgresConfig poolConfig(std::string url, int size) {
  config::PostgresConfig config;
  config.dsn = std::move(url);
  config.pool_size = size;
  config.connect_timeout = 2s;
  config.statement_timeout = 5s;
  return config;
}

TEST_CASE("the pool never lends more than pool_size connections", "[pg][pool]") {
  asio::io_context io;
  Pool pool(io.get_executor(), poolConfig(dsn(), 3));
  int succeeded = 0;
  std::uint64_t max_in_use = 0;
  for (int i = 0; i < 6; ++i) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto [lease, error] = co_await pool.acquire(5s);
          REQUIRE_FALSE(error);
          // Hold the lease until the pool is fully lent (connect times vary),
          // watching that it never lends more.
          for (int i = 0; i < 300; ++i) {
            max_in_use = std::max(max_in_use, pool.stats().in_use.get());
            if (pool.stats().in_use.get() >= 3) break;
            co_await sleepFor(10ms);
          }
          auto out = co_await lease->query("SELECT pg_sleep(0.02)");
          if (out.ok()) ++succeeded;
        },
        rethrow);
  }
  io.run();
  CHECK(succeeded == 6);
  CHECK(max_in_use == 3);
  CHECK(pool.stats().connects.get() == 3);
  CHECK(pool.stats().open.get() == 3);
  CHECK(pool.stats().in_use.get() == 0);
  CHECK_FALSE(pool.lastConnectFailed());
}

TEST_CASE("waiters are served first come, first served", "[pg][pool]") {
  asio::io_context io;
  Pool pool(io.get_executor(), poolConfig(dsn(), 1));
  std::vector<int> order;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto [holder, error] = co_await pool.acquire(5s);
        REQUIRE_FALSE(error);
        for (int i = 0; i < 3; ++i) {
          asio::co_spawn(
              io,
              [&, i]() -> asio::awaitable<void> {
                auto [lease, e] = co_await pool.acquire(5s);
                REQUIRE_FALSE(e);
                order.push_back(i);
                co_await sleepFor(10ms);
              },
              rethrow);
          co_await sleepFor(5ms);  // queue them in a known order
        }
        co_await sleepFor(50ms);
      },
      rethrow);
  io.run();
  CHECK(order == std::vector<int>{0, 1, 2});
  CHECK(pool.stats().connects.get() == 1);
}

TEST_CASE("acquire times out when every connection is lent", "[pg][pool]") {
  asio::io_context io;
  Pool pool(io.get_executor(), poolConfig(dsn(), 1));
  PgError error;
  long long elapsed = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto [held, first] = co_await pool.acquire(5s);
        REQUIRE_FALSE(first);
        const auto start = Clock::now();
        auto [none, second] = co_await pool.acquire(200ms);
        elapsed = millisSince(start);
        error = second;
        CHECK_FALSE(none);
      },
      rethrow);
  io.run();
  CHECK(error.message == "timed out waiting for a PostgreSQL connection");
  CHECK(error.retryable());
  CHECK(elapsed >= 180);
  CHECK(elapsed < 2000);
  CHECK(pool.stats().acquire_timeouts.get() == 1);
}

TEST_CASE("broken connections are dropped and replaced", "[pg][pool]") {
  asio::io_context io;
  Pool pool(io.get_executor(), poolConfig(dsn(), 1));
  std::string pid1, pid2, pid3;
  PgError broken_error;
  bool idle_replacement_ok = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        {
          auto [lease, error] = co_await pool.acquire(5s);
          REQUIRE_FALSE(error);
          pid1 = (co_await lease->query("SELECT pg_backend_pid()")).result.value(0, 0);
          co_await terminateBackend(pid1);
          broken_error = (co_await lease->query("SELECT 1")).error;
        }  // returned broken: dropped
        {
          auto [lease, error] = co_await pool.acquire(5s);
          REQUIRE_FALSE(error);
          pid2 = (co_await lease->query("SELECT pg_backend_pid()")).result.value(0, 0);
        }                                 // returned healthy: idle in the pool
        co_await terminateBackend(pid2);  // dies while idle
        auto [lease, error] = co_await pool.acquire(5s);
        REQUIRE_FALSE(error);
        auto out = co_await lease->query("SELECT pg_backend_pid()");
        idle_replacement_ok = out.ok();
        if (out.ok()) pid3 = out.result.value(0, 0);
      },
      rethrow);
  io.run();
  CHECK(broken_error.retryable());
  CHECK(pid1 != pid2);
  CHECK(idle_replacement_ok);  // noticed at acquire, not by the caller's query
  CHECK(pid3 != pid2);
  CHECK(pool.stats().connects.get() == 3);
  CHECK(pool.stats().open.get() == 1);
}

TEST_CASE("after a failed connect the pool backs off and fails fast", "[pg][pool]") {
  asio::io_context io;
  Pool pool(io.get_executor(), poolConfig(closedPortDsn(), 2));
  PgError first, fast, later;
  long long fast_ms = 0;
  std::uint64_t failures_after_fast = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        first = (co_await pool.acquire(1s)).second;
        const auto start = Clock::now();
        fast = (co_await pool.acquire(1s)).second;
        fast_ms = millisSince(start);
        failures_after_fast = pool.stats().connect_failures.get();
        co_await sleepFor(150ms);  // the first backoff is 50..100 ms
        later = (co_await pool.acquire(1s)).second;
      },
      rethrow);
  io.run();
  REQUIRE(first);
  INFO(first.message);
  CHECK(first.message.find("127.0.0.1") != std::string::npos);
  CHECK(first.message.back() != '\n');
  CHECK(fast.message == first.message);
  CHECK(fast_ms < 50);
  CHECK(failures_after_fast == 1);
  CHECK(later);
  CHECK(pool.stats().connect_failures.get() == 2);
  CHECK(pool.lastConnectFailed());
  CHECK(pool.stats().open.get() == 0);
}

TEST_CASE("close fails pending and later acquires and drops returned connections", "[pg][pool]") {
  asio::io_context io;
  Pool pool(io.get_executor(), poolConfig(dsn(), 1));
  PgError pending, later;
  long long pending_ms = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto [held, error] = co_await pool.acquire(5s);
        REQUIRE_FALSE(error);
        const auto start = Clock::now();
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
              pending = (co_await pool.acquire(5s)).second;
              pending_ms = millisSince(start);
            },
            rethrow);
        co_await sleepFor(20ms);
        pool.close();
        co_await sleepFor(20ms);
        later = (co_await pool.acquire(5s)).second;
        held = Lease();  // given back after close: closed, not kept
      },
      rethrow);
  io.run();
  CHECK(pending.message == "pool closed");
  CHECK(pending_ms < 1000);
  CHECK(later.message == "pool closed");
  CHECK(pool.stats().open.get() == 0);
  CHECK(pool.stats().in_use.get() == 0);
}

}  // namespace
}  // namespace larder::pg::test
