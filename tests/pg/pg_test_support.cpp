// Out-of-line helpers for the PostgreSQL client tests.
#include "pg_test_support.hpp"

#include <signal.h>

#include <cerrno>

namespace larder::pg::test {

asio::awaitable<void> sleepFor(std::chrono::milliseconds d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(kUseTuple);
}

asio::awaitable<void> terminateBackend(const std::string& pid) {
  Connection admin(co_await asio::this_coro::executor, dsn(), 2s, 5s);
  REQUIRE_NO_ERROR(co_await admin.connect());
  const Params params{pid};  // named: GCC 12 mishandles braced lists in co_await
  auto killed = co_await admin.query("SELECT pg_terminate_backend($1::int)", params);
  REQUIRE_OK(killed);
  REQUIRE(killed.result.value(0, 0) == "t");
  for (int i = 0; i < 100; ++i) {
    auto left =
        co_await admin.query("SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", params);
    REQUIRE_OK(left);
    if (left.result.value(0, 0) == "0") break;
    co_await sleepFor(20ms);
  }
  // A backend leaves pg_stat_activity before its process (and so its socket)
  // is gone; wait for the process itself, so that the client side is closed.
  const pid_t process = static_cast<pid_t>(std::stoi(pid));
  for (int i = 0; i < 250; ++i) {
    const int rc = ::kill(process, 0);
    if (rc != 0 && errno == ESRCH) co_return;
    if (rc != 0 && errno == EPERM) break;  // not ours to signal: fall back to a pause
    co_await sleepFor(20ms);
  }
  co_await sleepFor(200ms);
}

}  // namespace larder::pg::test
