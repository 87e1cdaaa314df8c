#pragma once
// A bounded pool of PostgreSQL connections, used from one executor (the
// PostgreSQL thread): no locks. Broken connections are dropped and replaced on
// demand; connecting again after a failure waits with exponential backoff.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <memory>

#include "larder/common/counter.hpp"
#include "larder/config/config.hpp"
#include "larder/pg/connection.hpp"

namespace larder::pg {

struct PoolStats {
  Counter connects;
  Counter connect_failures;
  Counter acquire_timeouts;
  Counter open;    // connections currently open
  Counter in_use;  // connections currently lent out
};

class Pool;

// A lent connection; goes back to the pool when destroyed.
class Lease {
 public:
  Lease() = default;
  Lease(Pool* pool, std::unique_ptr<Connection> connection);
  Lease(Lease&&) noexcept;
  Lease& operator=(Lease&&) noexcept;
  ~Lease();
  Connection* operator->() const { return connection_.get(); }
  Connection& operator*() const { return *connection_; }
  explicit operator bool() const { return connection_ != nullptr; }

 private:
  Pool* pool_ = nullptr;
  std::unique_ptr<Connection> connection_;
};

class Pool {
 public:
  Pool(boost::asio::any_io_executor executor, const config::PostgresConfig& config);
  ~Pool();

  // A healthy connection within `timeout`, or an error saying why not.
  boost::asio::awaitable<std::pair<Lease, PgError>> acquire(Millis timeout);
  const PoolStats& stats() const { return stats_; }
  bool lastConnectFailed() const;
  void close();  // closes idle connections; later acquires fail

 private:
  friend class Lease;
  void giveBack(std::unique_ptr<Connection> connection);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  PoolStats stats_;
};

}  // namespace larder::pg
