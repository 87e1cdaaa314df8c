#pragma once
// One PostgreSQL connection driven by Asio: libpq in non-blocking mode, with
// readiness waits on PQsocket(). Asio never owns (or closes) libpq's socket:
// the descriptor is released before PQfinish.
//
// Errors are values: every call returns a PgError that is empty on success.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace larder::config {
struct PostgresConfig;
}

struct pg_conn;
struct pg_result;

namespace larder::pg {

using Millis = std::chrono::milliseconds;

struct PgError {
  std::string sqlstate;  // e.g. "40001"; empty for connection-level failures
  std::string message;   // empty: no error
  explicit operator bool() const { return !message.empty(); }
  // Worth retrying on a fresh connection or later: connection loss, 08xxx,
  // serialization failure 40001, deadlock 40P01, 57P01 admin shutdown, 53xxx.
  bool retryable() const;
};

// An owned PGresult in text format.
class Result {
 public:
  Result() = default;
  explicit Result(pg_result* r);
  int rows() const;
  int columns() const;
  bool isNull(int row, int column) const;
  std::string_view value(int row, int column) const;
  std::string_view columnName(int column) const;
  // Rows touched by INSERT/UPDATE/DELETE (PQcmdTuples), 0 if none.
  long long affected() const;

 private:
  struct Deleter {
    void operator()(pg_result* r) const;
  };
  std::unique_ptr<pg_result, Deleter> result_;
};

struct QueryOutcome {
  Result result;
  PgError error;
  bool ok() const { return !error; }
};

using Params = std::vector<std::optional<std::string>>;  // text format; nullopt = NULL

// A NOTIFY received after LISTEN.
struct Notification {
  std::string channel;
  std::string payload;
};

struct NotifyOutcome {
  std::vector<Notification> notifications;  // empty when the wait timed out
  PgError error;                            // the connection was lost
};

// What libpq is given: the DSN (a conninfo string or URI) and keyword/value
// pairs that override what it says (sslmode, sslrootcert, ...). The pairs go to
// PQconnectStartParams as arrays, so no value is ever quoted into a string.
struct ConnectParams {
  ConnectParams(std::string dsn_only) : dsn(std::move(dsn_only)) {}  // NOLINT: a DSN alone
  std::string dsn;
  std::vector<std::pair<std::string, std::string>> overrides;
};
ConnectParams connectParams(const config::PostgresConfig& config);

class Connection {
 public:
  Connection(boost::asio::any_io_executor executor, ConnectParams params, Millis connect_timeout,
             Millis statement_timeout);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects (PQconnectStart/PQconnectPoll), then sets statement_timeout.
  boost::asio::awaitable<PgError> connect();
  // One statement with bound text parameters (PQsendQueryParams).
  boost::asio::awaitable<QueryOutcome> query(std::string_view sql, const Params& params = {});
  // Prepares `sql` under `name` on first use on this connection, then runs it.
  boost::asio::awaitable<QueryOutcome> prepared(const std::string& name, const std::string& sql,
                                                const Params& params);
  // Several statements in one round trip (simple query protocol, no params),
  // e.g. "BEGIN; ...; COMMIT". Returns the first error or the last result.
  // The whole script has one statement's client-side bound.
  boost::asio::awaitable<QueryOutcome> script(std::string_view sql);

  // Waits up to `budget` for notifications on a LISTENing connection; returns
  // what arrived (possibly nothing) or the error that ended the connection.
  // interrupt() ends the wait early, with nothing.
  boost::asio::awaitable<NotifyOutcome> notifications(Millis budget);

  bool healthy() const;  // connected and not broken by an I/O error
  void close();          // never while an operation is running: use interrupt()
  // Ends a running operation now, as if its deadline had passed (the
  // connection is then unusable); harmless when idle.
  void interrupt();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Quotes an identifier for SQL ("My Table" -> "\"My Table\""), doubling quotes.
std::string quoteIdentifier(std::string_view name);
// Builds a PostgreSQL array literal of text elements: {"a","b\"c",NULL}; bound
// as a parameter and cast in SQL ($1::bigint[]) — never spliced into SQL text.
std::string arrayLiteral(const std::vector<std::optional<std::string_view>>& items);

}  // namespace larder::pg
