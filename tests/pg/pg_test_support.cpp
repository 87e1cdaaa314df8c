// Out-of-line helpers for the PostgreSQL client tests.
#include "pg_test_support.hpp"

namespace larder::pg::test {

asio::awaitable<void> sleepFor(std::chrono::milliseconds d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(kUseTuple);
}

asio::awaitable<void> terminateBackend(const std::string& pid) {
  Connection admin(co_await asio::this_coro::executor, dsn(), 2s, 5s);
  REQUIRE_FALSE(co_await admin.connect());
  const Params params{pid};  // named: GCC 12 mishandles braced lists in co_await
  auto killed = co_await admin.query("SELECT pg_terminate_backend($1::int)", params);
  REQUIRE_OK(killed);
  REQUIRE(killed.result.value(0, 0) == "t");
  for (int i = 0; i < 100; ++i) {
    auto left =
        co_await admin.query("SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", params);
    REQUIRE_OK(left);
    if (left.result.value(0, 0) == "0") co_return;
    co_await sleepFor(20ms);
  }
  FAIL("backend " << pid << " did not exit");
}

}  // namespace larder::pg::test
