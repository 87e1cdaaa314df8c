#pragma once
// Shared helpers for the PostgreSQL client tests: the DSN of the throwaway
// server (run_pg_tests.sh), a way to run coroutines to completion, and ports
// that are closed or never answer.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <string>

#include "larder/pg/connection.hpp"

// Never co_await inside a Catch assertion: GCC 12 evaluates the expression of
// REQUIRE(co_await f()) three times (Catch repeats it in __builtin_constant_p
// and in the unevaluated loop condition). These take the value first, once,
// and report the error when it fails.
#define REQUIRE_OK(outcome_expr)                                    \
  do {                                                              \
    const auto& outcome_ = (outcome_expr);                          \
    INFO(outcome_.error.sqlstate << " " << outcome_.error.message); \
    REQUIRE(outcome_.ok());                                         \
  } while (false)

#define REQUIRE_NO_ERROR(error_expr)                   \
  do {                                                 \
    const ::larder::pg::PgError error_ = (error_expr); \
    INFO(error_.sqlstate << " " << error_.message);    \
    REQUIRE_FALSE(error_);                             \
  } while (false)

namespace larder::pg::test {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
inline constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

inline std::string dsn() {
  const char* value = std::getenv("LARDER_TEST_PG_DSN");
  if (value == nullptr || *value == '\0') {
    FAIL("LARDER_TEST_PG_DSN is not set: run the tests through tests/pg/run_pg_tests.sh");
  }
  return value;
}

// Completion handler for co_spawn that makes io_context::run() rethrow.
inline void rethrow(std::exception_ptr e) {
  if (e) std::rethrow_exception(e);
}

// Runs fn(executor) (returning awaitable<void>) on a fresh io_context until
// everything it started is done; assertions belong after this returns.
template <class Fn>
void runAsync(Fn fn) {
  asio::io_context io;
  bool finished = false;
  asio::co_spawn(io, fn(io.get_executor()), [&](std::exception_ptr e) {
    finished = true;
    rethrow(e);
  });
  io.run();
  REQUIRE(finished);
}

asio::awaitable<void> sleepFor(std::chrono::milliseconds d);

// A loopback port nothing listens on (bound, then closed again).
inline unsigned short closedPort() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

inline std::string closedPortDsn() {
  return "host=127.0.0.1 port=" + std::to_string(closedPort()) + " dbname=none user=none";
}

inline long long millisSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// Terminates backend `pid` from a separate session and waits until it is gone.
asio::awaitable<void> terminateBackend(const std::string& pid);

}  // namespace larder::pg::test
