#include "larder/pg/pool.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <list>
#include <random>
#include <utility>
#include <vector>

namespace larder::pg {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr Millis kBackoffMin{100};
constexpr Millis kBackoffMax{5000};

Millis jittered(Millis base) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::uniform_int_distribution<long long> dist(base.count() / 2, base.count());
  return Millis(dist(rng));
}

PgError closedError() { return {"", "pool closed"}; }

// A connect may not outlive the acquire that started it; connect_timeout 0
// (no limit, as in libpq) leaves the acquire's own deadline.
Millis connectBudget(Millis connect_timeout, Millis remaining) {
  return connect_timeout.count() > 0 ? std::min(connect_timeout, remaining) : remaining;
}

// An acquire() parked until a connection (or a slot to open one) is handed to
// it. The pool wakes it by cancelling its timer; the timer's expiry is the
// acquire deadline.
struct Waiter {
  explicit Waiter(const asio::any_io_executor& executor) : wake(executor) {}
  asio::steady_timer wake;
  std::unique_ptr<Connection> connection;  // handed over by giveBack()
  bool slot = false;                       // a slot was reserved: connect a new one
  bool closed = false;                     // the pool closed
  bool queued = true;
};

}  // namespace

struct Pool::Impl {
  Impl(asio::any_io_executor executor, const config::PostgresConfig& config)
      : executor(std::move(executor)), config(config), size(std::max(config.pool_size, 1)) {
    idle.reserve(static_cast<std::size_t>(size));  // giveBack() runs in destructors: no allocation
  }

  asio::any_io_executor executor;
  config::PostgresConfig config;
  int size;
  std::vector<std::unique_ptr<Connection>> idle;  // most recently returned last
  std::list<Waiter*> waiters;                     // FIFO
  int slots = 0;  // connections open or being opened; at most `size`
  bool closed = false;
  Millis backoff{0};
  Clock::time_point retry_at{};
  PgError last_error;
  bool last_failed = false;

  // Hands a freed slot to the first waiter (which then connects), so nobody
  // waits out its timeout while the pool could open a connection.
  void releaseSlot() {
    if (!closed && !waiters.empty()) {
      Waiter* next = waiters.front();
      waiters.pop_front();
      next->queued = false;
      next->slot = true;
      next->wake.cancel();
      return;
    }
    --slots;
  }

  // Unqueues a waiter that stops waiting for any reason (timeout, destroyed
  // coroutine) and gives back what it was handed but did not take.
  struct WaiterGuard {
    Pool& pool;
    Waiter& waiter;
    std::list<Waiter*>::iterator position;
    ~WaiterGuard() {
      Impl& s = *pool.impl_;
      if (waiter.queued) s.waiters.erase(position);
      if (waiter.connection) {
        pool.stats_.in_use.add();  // giveBack() counts it out again
        pool.giveBack(std::move(waiter.connection));
      }
      if (waiter.slot) s.releaseSlot();
    }
  };
};

Lease::Lease(Pool* pool, std::unique_ptr<Connection> connection)
    : pool_(pool), connection_(std::move(connection)) {}

Lease::Lease(Lease&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)), connection_(std::move(other.connection_)) {}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    if (pool_ != nullptr && connection_) pool_->giveBack(std::move(connection_));
    pool_ = std::exchange(other.pool_, nullptr);
    connection_ = std::move(other.connection_);
  }
  return *this;
}

Lease::~Lease() {
  if (pool_ != nullptr && connection_) pool_->giveBack(std::move(connection_));
}

Pool::Pool(asio::any_io_executor executor, const config::PostgresConfig& config)
    : impl_(std::make_unique<Impl>(std::move(executor), config)) {}

Pool::~Pool() { close(); }

bool Pool::lastConnectFailed() const { return impl_->last_failed; }

void Pool::giveBack(std::unique_ptr<Connection> connection) {
  Impl& s = *impl_;
  if (!connection) return;
  stats_.in_use.sub();
  if (s.closed || !connection->healthy()) {
    connection.reset();
    stats_.open.sub();
    s.releaseSlot();
    return;
  }
  if (!s.waiters.empty()) {
    Waiter* next = s.waiters.front();
    s.waiters.pop_front();
    next->queued = false;
    next->connection = std::move(connection);
    next->wake.cancel();
    return;
  }
  s.idle.push_back(std::move(connection));
}

asio::awaitable<std::pair<Lease, PgError>> Pool::acquire(Millis timeout) {
  Impl& s = *impl_;
  // Clamped: a caller's Millis::max() must not overflow the deadline.
  const auto deadline = Clock::now() + std::clamp(timeout, Millis::zero(), Millis(86400000));
  auto lend = [this](std::unique_ptr<Connection> connection) {
    stats_.in_use.add();
    return std::pair<Lease, PgError>{Lease(this, std::move(connection)), PgError{}};
  };
  if (s.closed) co_return std::pair<Lease, PgError>{Lease(), closedError()};

  while (!s.idle.empty()) {
    std::unique_ptr<Connection> connection = std::move(s.idle.back());
    s.idle.pop_back();
    if (connection->healthy()) co_return lend(std::move(connection));
    connection.reset();  // broke while idle (server restart): replace it below
    stats_.open.sub();
    --s.slots;
  }

  if (s.slots < s.size) {
    ++s.slots;
  } else {
    Waiter waiter(s.executor);
    waiter.wake.expires_at(deadline);
    s.waiters.push_back(&waiter);
    Impl::WaiterGuard guard{*this, waiter, std::prev(s.waiters.end())};
    co_await waiter.wake.async_wait(kUseTuple);
    if (waiter.connection) co_return lend(std::move(waiter.connection));
    if (waiter.closed || s.closed) co_return std::pair<Lease, PgError>{Lease(), closedError()};
    if (!waiter.slot) {
      stats_.acquire_timeouts.add();
      co_return std::pair<Lease, PgError>{
          Lease(), PgError{"", "timed out waiting for a PostgreSQL connection"}};
    }
    waiter.slot = false;  // ours now
  }

  // A slot is held from here on: every path below uses it or releases it.
  const auto now = Clock::now();
  if (s.last_failed && now < s.retry_at) {
    // Backing off after a failed connect: answer at once with the reason.
    s.releaseSlot();
    co_return std::pair<Lease, PgError>{Lease(), s.last_error};
  }
  const auto remaining = std::chrono::duration_cast<Millis>(deadline - now);
  if (remaining.count() <= 0) {
    s.releaseSlot();
    stats_.acquire_timeouts.add();
    co_return std::pair<Lease, PgError>{
        Lease(), PgError{"", "timed out waiting for a PostgreSQL connection"}};
  }
  auto connection = std::make_unique<Connection>(s.executor, connectParams(s.config),
                                                 connectBudget(s.config.connect_timeout, remaining),
                                                 s.config.statement_timeout);
  PgError error = co_await connection->connect();
  if (s.closed) {
    connection.reset();
    --s.slots;
    co_return std::pair<Lease, PgError>{Lease(), closedError()};
  }
  if (error) {
    stats_.connect_failures.add();
    s.backoff = s.backoff.count() == 0 ? kBackoffMin : std::min(s.backoff * 2, kBackoffMax);
    s.retry_at = Clock::now() + jittered(s.backoff);
    s.last_error = error;
    s.last_failed = true;
    s.releaseSlot();
    co_return std::pair<Lease, PgError>{Lease(), std::move(error)};
  }
  stats_.connects.add();
  stats_.open.add();
  s.backoff = Millis::zero();
  s.last_failed = false;
  co_return lend(std::move(connection));
}

void Pool::close() {
  Impl& s = *impl_;
  s.closed = true;
  for (auto& connection : s.idle) {
    connection.reset();
    stats_.open.sub();
    --s.slots;
  }
  s.idle.clear();
  while (!s.waiters.empty()) {
    Waiter* waiter = s.waiters.front();
    s.waiters.pop_front();
    waiter->queued = false;
    waiter->closed = true;
    waiter->wake.cancel();
  }
}

}  // namespace larder::pg
