#include "larder/pg/connection.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <string>
#include <variant>

#include "larder/config/config.hpp"

namespace larder::pg {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

namespace {

enum class Ready { Read, Write, Timeout, Failed };

// libpq messages end in "\n" and continue on "\n\t" lines; one line reads
// better in logs and in RESP error replies.
std::string oneLine(const char* text) {
  std::string out;
  bool pending_break = false;
  for (const char* p = text ? text : ""; *p != '\0'; ++p) {
    if (*p == '\n' || *p == '\r' || *p == '\t') {
      pending_break = true;
      continue;
    }
    if (pending_break) {
      if (*p == ' ') continue;
      if (!out.empty() && out.back() != ' ') out += ' ';
      pending_break = false;
    }
    out += *p;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

PgError errorFromResult(const PGresult* result) {
  PgError error;
  if (const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE)) error.sqlstate = state;
  // The primary message only: DETAIL and CONTEXT often quote row values
  // ("Key (email)=(...) already exists"), which may be client data.
  if (const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY)) {
    error.message = oneLine(primary);
  }
  if (error.message.empty()) error.message = oneLine(PQresultErrorMessage(result));
  if (error.message.empty()) {
    error.message = std::string("unexpected result ") + PQresStatus(PQresultStatus(result));
  }
  return error;
}

// Pointers into `params` for libpq, nullptr for SQL NULL. Text parameters are
// NUL-terminated, so a value holding a NUL byte would be cut short silently:
// refuse it instead (PostgreSQL text cannot hold NUL anyway).
PgError bindParams(const Params& params, std::vector<const char*>& values) {
  if (params.size() > 65535) return {"54023", "too many parameters (at most 65535)"};
  values.reserve(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!params[i]) {
      values.push_back(nullptr);
      continue;
    }
    if (params[i]->find('\0') != std::string::npos) {
      return {"22021", "parameter $" + std::to_string(i + 1) + " contains a NUL byte"};
    }
    values.push_back(params[i]->c_str());
  }
  return {};
}

}  // namespace

struct Connection::Impl {
  Impl(asio::any_io_executor executor, ConnectParams params, Millis connect_timeout,
       Millis statement_timeout)
      : params_(std::move(params)),
        connect_timeout_(connect_timeout),
        statement_timeout_(statement_timeout),
        socket_(executor),
        deadline_(executor) {}
  ~Impl() { finish(); }

  // Marks the connection broken unless the operation ran to completion: a
  // coroutine destroyed or cancelled mid-exchange leaves the protocol state unknown.
  struct InFlight {
    explicit InFlight(Impl& impl) : impl(impl) { impl.busy_ = true; }
    ~InFlight() {
      impl.busy_ = false;
      if (!done) impl.broken_ = true;
    }
    Impl& impl;
    bool done = false;
  };

  bool usable() const {
    return conn_ != nullptr && !broken_ && socket_.is_open() && PQstatus(conn_) == CONNECTION_OK;
  }

  // An idle session has nothing to say: a readable socket means the server
  // closed it (often after a FATAL, e.g. pg_terminate_backend or shutdown).
  // Reading that now lets the pool replace the connection before it is lent.
  bool alive() {
    if (!usable()) return false;
    if (busy_) return true;  // never steal readiness from a running exchange
    for (int i = 0; i < 4; ++i) {
      pollfd probe{PQsocket(conn_), POLLIN, 0};
      if (::poll(&probe, 1, 0) <= 0) break;
      if (PQconsumeInput(conn_) == 0 || PQstatus(conn_) != CONNECTION_OK) {
        broken_ = true;
        break;
      }
    }
    return !broken_;
  }

  // Asio must never close libpq's socket: release, then let PQfinish close it.
  void releaseSocket() {
    if (socket_.is_open()) socket_.release();
  }

  void finish() {
    releaseSocket();
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
    broken_ = false;
    prepared_.clear();
  }

  PgError watchSocket() {
    releaseSocket();
    const int fd = PQsocket(conn_);
    if (fd < 0) return {"", "PostgreSQL connection has no socket"};
    boost::system::error_code ec;
    socket_.assign(fd, ec);
    if (ec) return {"", "cannot watch the PostgreSQL socket: " + ec.message()};
    return {};
  }

  // Bounds the next exchange; zero or less: no client-side bound.
  void armDeadline(Millis budget) {
    if (budget.count() > 0) {
      deadline_.expires_after(budget);
    } else {
      deadline_.expires_at(asio::steady_timer::time_point::max());
    }
    armed_ = budget;
  }

  // A watchdog for a server that stopped answering (network gone): the server
  // itself cancels at statement_timeout, so allow that plus a round trip.
  Millis answerBudget() const {
    if (statement_timeout_.count() <= 0) return Millis::zero();
    return statement_timeout_ + std::max(connect_timeout_, Millis(1000));
  }

  PgError lost() {
    broken_ = true;
    std::string message = conn_ != nullptr ? oneLine(PQerrorMessage(conn_)) : std::string();
    if (message.empty()) message = "connection to PostgreSQL lost";
    return {"", std::move(message)};
  }

  PgError timedOut() {
    broken_ = true;
    const std::string ms = std::to_string(armed_.count()) + " ms";
    if (connecting_) return {"", "timed out connecting to PostgreSQL after " + ms};
    return {"", "no answer from PostgreSQL within " + ms};
  }

  asio::awaitable<Ready> wait(bool read, bool write);
  asio::awaitable<PgError> establish();
  asio::awaitable<QueryOutcome> exchange();

  // Sends with `send` (a PQsend* call), then flushes and collects the results.
  template <class Send>
  asio::awaitable<QueryOutcome> run(Send send) {
    QueryOutcome out;
    if (!usable()) {
      out.error = {"08003", "no connection to PostgreSQL"};
      co_return out;
    }
    InFlight op(*this);
    if (send() == 0) {
      out.error = {"", oneLine(PQerrorMessage(conn_))};
      if (out.error.message.empty()) out.error.message = "could not send the query to PostgreSQL";
    } else {
      out = co_await exchange();
    }
    if (PQstatus(conn_) != CONNECTION_OK) broken_ = true;
    op.done = true;
    co_return out;
  }

  ConnectParams params_;
  Millis connect_timeout_;
  Millis statement_timeout_;
  PGconn* conn_ = nullptr;
  asio::posix::stream_descriptor socket_;  // watches PQsocket(); never owns it
  asio::steady_timer deadline_;
  Millis armed_{0};
  bool connecting_ = false;
  bool broken_ = false;
  bool busy_ = false;                         // an exchange is running
  std::unordered_set<std::string> prepared_;  // statement names prepared on this session
};

asio::awaitable<Ready> Connection::Impl::wait(bool read, bool write) {
  const int fd = PQsocket(conn_);
  if (fd < 0 || !socket_.is_open()) co_return Ready::Failed;
  // No poll() first: Asio's epoll registration is edge-triggered, but every
  // async_wait re-arms it (EPOLL_CTL_MOD), which reports bytes already waiting
  // — and PQconsumeInput reads at most one buffer, so bytes often are waiting.
  using Wait = asio::posix::descriptor_base;
  boost::system::error_code ec;
  Ready ready = read ? Ready::Read : Ready::Write;
  if (read && write) {
    auto any = co_await (socket_.async_wait(Wait::wait_read, kUseTuple) ||
                         socket_.async_wait(Wait::wait_write, kUseTuple) ||
                         deadline_.async_wait(kUseTuple));
    if (any.index() == 2) co_return Ready::Timeout;
    ready = any.index() == 0 ? Ready::Read : Ready::Write;
    ec = any.index() == 0 ? std::get<0>(std::get<0>(any)) : std::get<0>(std::get<1>(any));
  } else {
    auto any = co_await (socket_.async_wait(read ? Wait::wait_read : Wait::wait_write, kUseTuple) ||
                         deadline_.async_wait(kUseTuple));
    if (any.index() == 1) co_return Ready::Timeout;
    ec = std::get<0>(std::get<0>(any));
  }
  co_return ec ? Ready::Failed : ready;
}

asio::awaitable<PgError> Connection::Impl::establish() {
  // expand_dbname: the DSN may be a conninfo string or a URI. libpq applies
  // keywords in array order, so the overrides after "dbname" win over the DSN.
  std::vector<const char*> keys{"dbname", "fallback_application_name"};
  std::vector<const char*> values{params_.dsn.c_str(), "larder"};
  for (const auto& [key, value] : params_.overrides) {
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectStartParams(keys.data(), values.data(), 1);
  if (conn_ == nullptr) co_return PgError{"", "out of memory starting a PostgreSQL connection"};
  // libpq prints notices (and a FATAL sent to an idle session) to stderr by
  // default; they may quote data, and errors reach callers as results anyway.
  PQsetNoticeReceiver(
      conn_, [](void*, const PGresult*) {}, nullptr);
  PostgresPollingStatusType status = PGRES_POLLING_WRITING;  // as libpq's docs say to start
  while (status != PGRES_POLLING_OK) {
    if (PQstatus(conn_) == CONNECTION_BAD || status == PGRES_POLLING_FAILED) {
      PgError error = lost();
      if (error.message.empty()) error.message = "cannot connect to PostgreSQL";
      co_return error;
    }
    if (status == PGRES_POLLING_READING || status == PGRES_POLLING_WRITING) {
      // libpq may close and open sockets between steps (next address, SSL
      // fallback), so watch the current one and let go of it before polling.
      if (PgError error = watchSocket()) co_return error;
      const Ready ready =
          co_await wait(status == PGRES_POLLING_READING, status == PGRES_POLLING_WRITING);
      releaseSocket();
      if (ready == Ready::Timeout) co_return timedOut();
      if (ready == Ready::Failed) co_return PgError{"", "waiting for the PostgreSQL socket failed"};
    }
    status = PQconnectPoll(conn_);
  }
  if (PQsetnonblocking(conn_, 1) != 0) co_return lost();
  if (PgError error = watchSocket()) co_return error;

  // Bound as a parameter: no SQL text is ever built from values.
  const std::string ms = std::to_string(std::max<long long>(statement_timeout_.count(), 0));
  const char* const params[] = {ms.c_str()};
  QueryOutcome set = co_await run([&] {
    return PQsendQueryParams(conn_, "SELECT pg_catalog.set_config('statement_timeout', $1, false)",
                             1, nullptr, params, nullptr, nullptr, 0);
  });
  if (set.error) set.error.message = "setting statement_timeout: " + set.error.message;
  co_return set.error;
}

asio::awaitable<QueryOutcome> Connection::Impl::exchange() {
  QueryOutcome out;
  // PQflush returns 1 while libpq still holds unsent bytes. Read meanwhile
  // too: a server blocked on sending to us (notices) would otherwise deadlock.
  for (;;) {
    const int flushed = PQflush(conn_);
    if (flushed == 0) break;
    if (flushed < 0) {
      out.error = lost();
      co_return out;
    }
    const Ready ready = co_await wait(true, true);
    if (ready == Ready::Timeout) {
      out.error = timedOut();
      co_return out;
    }
    if (ready == Ready::Failed || (ready == Ready::Read && PQconsumeInput(conn_) == 0)) {
      out.error = lost();
      co_return out;
    }
  }

  bool failed = false;  // keep the first error, else the last result
  for (;;) {
    while (PQisBusy(conn_) == 0) {
      PGresult* raw = PQgetResult(conn_);
      if (raw == nullptr) co_return out;
      Result result(raw);
      switch (PQresultStatus(raw)) {
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
          if (!failed) out.result = std::move(result);
          break;
        case PGRES_COPY_IN:
        case PGRES_COPY_OUT:
        case PGRES_COPY_BOTH:
          // The server now expects COPY traffic this client neither sends nor
          // drains: the session cannot be used again.
          broken_ = true;
          if (!failed) out.error = {"0A000", "COPY is not supported by Larder's PostgreSQL client"};
          co_return out;
        default:
          if (!failed) {
            out.error = errorFromResult(raw);
            out.result = std::move(result);
            failed = true;
          }
      }
    }
    const Ready ready = co_await wait(true, false);
    if (ready == Ready::Timeout) {
      PgError error = timedOut();
      if (!failed) out.error = std::move(error);
      co_return out;
    }
    if (ready == Ready::Failed || PQconsumeInput(conn_) == 0) {
      // A server error already read (e.g. 57P01 at shutdown) explains more.
      PgError error = lost();
      if (!failed) out.error = std::move(error);
      co_return out;
    }
  }
}

ConnectParams connectParams(const config::PostgresConfig& config) {
  ConnectParams params(config.dsn);
  auto add = [&](const char* key, const std::string& value) {
    if (!value.empty()) params.overrides.emplace_back(key, value);
  };
  add("sslmode", config.sslmode);
  add("sslrootcert", config.sslrootcert);
  add("sslcert", config.sslcert);
  add("sslkey", config.sslkey);
  // TCP keepalives, so that a peer gone without a word (a dropped network)
  // is noticed on idle connections too; the DSN's own settings win.
  if (config.keepalive.count() > 0) {
    bool dsn_sets = false;
    char* error = nullptr;
    if (PQconninfoOption* options = PQconninfoParse(config.dsn.c_str(), &error)) {
      for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
        const std::string_view k = o->keyword;
        if (o->val != nullptr && (k.rfind("keepalives", 0) == 0 || k == "tcp_user_timeout")) {
          dsn_sets = true;
        }
      }
      PQconninfoFree(options);
    }
    if (error != nullptr) PQfreemem(error);
    if (!dsn_sets) {
      const long long idle = std::max<long long>(1, config.keepalive.count() / 1000);
      add("keepalives", "1");
      add("keepalives_idle", std::to_string(idle));
      add("keepalives_interval", std::to_string(std::max<long long>(1, idle / 2)));
      add("keepalives_count", "3");
      // Unacknowledged data (a query sent into a black hole) fails as soon
      // as the keepalive probes would have: idle + 3 intervals.
      add("tcp_user_timeout", std::to_string(config.keepalive.count() * 5 / 2));
    }
  }
  return params;
}

Connection::Connection(asio::any_io_executor executor, ConnectParams params, Millis connect_timeout,
                       Millis statement_timeout)
    : impl_(std::make_unique<Impl>(std::move(executor), std::move(params), connect_timeout,
                                   statement_timeout)) {}

Connection::~Connection() = default;

asio::awaitable<PgError> Connection::connect() {
  Impl& s = *impl_;
  s.finish();  // a reconnect starts a fresh session: nothing is prepared on it
  Impl::InFlight op(s);
  s.connecting_ = true;
  s.armDeadline(s.connect_timeout_);  // one bound for every step, set_config included
  PgError error = co_await s.establish();
  s.connecting_ = false;
  if (error) s.finish();
  op.done = true;
  co_return error;
}

asio::awaitable<QueryOutcome> Connection::query(std::string_view sql, const Params& params) {
  Impl& s = *impl_;
  std::vector<const char*> values;
  if (PgError error = bindParams(params, values)) co_return QueryOutcome{Result(), error};
  const std::string text(sql);
  s.armDeadline(s.answerBudget());
  co_return co_await s.run([&] {
    return PQsendQueryParams(s.conn_, text.c_str(), static_cast<int>(values.size()), nullptr,
                             values.data(), nullptr, nullptr, 0);
  });
}

asio::awaitable<QueryOutcome> Connection::prepared(const std::string& name, const std::string& sql,
                                                   const Params& params) {
  Impl& s = *impl_;
  // The unnamed statement is replaced by every query(): nothing to remember.
  if (name.empty()) co_return co_await query(sql, params);
  std::vector<const char*> values;
  if (PgError error = bindParams(params, values)) co_return QueryOutcome{Result(), error};
  for (int attempt = 0;; ++attempt) {
    if (!s.prepared_.contains(name)) {
      s.armDeadline(s.answerBudget());
      QueryOutcome prep = co_await s.run(
          [&] { return PQsendPrepare(s.conn_, name.c_str(), sql.c_str(), 0, nullptr); });
      if (!prep.ok()) co_return prep;
      s.prepared_.insert(name);
    }
    s.armDeadline(s.answerBudget());
    QueryOutcome out = co_await s.run([&] {
      return PQsendQueryPrepared(s.conn_, name.c_str(), static_cast<int>(values.size()),
                                 values.data(), nullptr, nullptr, 0);
    });
    // 26000: the statement left the session (DISCARD ALL, DEALLOCATE in a
    // script). Prepare once more, unless that error aborted a transaction.
    if (attempt == 0 && out.error.sqlstate == "26000" && s.usable() &&
        PQtransactionStatus(s.conn_) == PQTRANS_IDLE) {
      s.prepared_.erase(name);
      continue;
    }
    co_return out;
  }
}

asio::awaitable<QueryOutcome> Connection::script(std::string_view sql) {
  Impl& s = *impl_;
  const std::string text(sql);
  const bool was_idle = s.usable() && PQtransactionStatus(s.conn_) == PQTRANS_IDLE;
  // Bounded like one statement: statement_timeout applies to each statement
  // separately, but a network gone silent must not hang the caller forever.
  // Scripts are short (BEGIN; SET LOCAL ..., a few DDL statements).
  s.armDeadline(s.answerBudget());
  QueryOutcome out = co_await s.run([&] { return PQsendQuery(s.conn_, text.c_str()); });
  // An error inside "BEGIN; ...; COMMIT" skips the COMMIT and leaves the
  // transaction open and aborted, poisoning the session for its next user.
  // Only a transaction this script opened is rolled back.
  if (out.error && was_idle && s.usable() && PQtransactionStatus(s.conn_) == PQTRANS_INERROR) {
    s.armDeadline(s.answerBudget());
    QueryOutcome rollback = co_await s.run([&] { return PQsendQuery(s.conn_, "ROLLBACK"); });
    if (rollback.error) s.broken_ = true;
  }
  co_return out;
}

asio::awaitable<NotifyOutcome> Connection::notifications(Millis budget) {
  Impl& s = *impl_;
  NotifyOutcome out;
  auto collect = [&] {
    while (PGnotify* n = PQnotifies(s.conn_)) {
      out.notifications.push_back({n->relname, n->extra != nullptr ? n->extra : ""});
      PQfreemem(n);
    }
  };
  if (!s.usable()) {
    out.error = {"08003", "no connection to PostgreSQL"};
    co_return out;
  }
  collect();  // some may have come in with an earlier result
  if (!out.notifications.empty()) co_return out;
  Impl::InFlight op(s);
  s.armDeadline(budget);
  const Ready ready = co_await s.wait(true, false);
  if (ready == Ready::Failed || (ready == Ready::Read && PQconsumeInput(s.conn_) == 0)) {
    out.error = s.lost();
    co_return out;
  }
  if (ready == Ready::Read) collect();
  op.done = true;
  co_return out;
}

bool Connection::healthy() const { return impl_->alive(); }

void Connection::close() { impl_->finish(); }

void Connection::interrupt() {
  if (impl_->busy_) impl_->deadline_.expires_at(asio::steady_timer::clock_type::now());
}

}  // namespace larder::pg
