#include "larder/cache/flusher.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>
#include <unordered_map>

#include "larder/cache/write_scripts.hpp"
#include "larder/redis/call.hpp"
#include "larder/resp/reply_value.hpp"

namespace larder::cache {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr Millis kLockRetry{500};

// A stream id "ms-seq" as a comparable pair.
std::pair<std::uint64_t, std::uint64_t> streamId(std::string_view id) {
  std::pair<std::uint64_t, std::uint64_t> out{0, 0};
  const auto dash = id.find('-');
  for (char c : id.substr(0, dash))
    out.first = out.first * 10 + static_cast<std::uint64_t>(c - '0');
  if (dash != std::string_view::npos) {
    for (char c : id.substr(dash + 1)) {
      out.second = out.second * 10 + static_cast<std::uint64_t>(c - '0');
    }
  }
  return out;
}

std::string randomId() {
  std::random_device device;
  std::uniform_int_distribution<unsigned> nibble(0, 15);
  std::string out;
  for (int i = 0; i < 32; ++i) out += "0123456789abcdef"[nibble(device)];
  return out;
}

}  // namespace

std::chrono::milliseconds markerLinger(const config::Config& config) {
  return loadWindow(config) + std::chrono::milliseconds(2000);
}

std::chrono::milliseconds loadWindow(const config::Config& config) {
  return config.postgres.statement_timeout + config.read_through.load_timeout;
}

bool retryableForFlush(const pg::PgError& error) {
  // 57014: statement_timeout, typically a lock another session holds: later
  // it may well succeed, and the row itself is not at fault.
  return error.retryable() || error.sqlstate == "57014";
}

Flusher::Flusher(asio::io_context& context, const Keyspace& ks, const config::Config& config,
                 std::shared_ptr<redis::BackendConnection> redis)
    : context_(context),
      ks_(ks),
      config_(config),
      redis_(std::move(redis)),
      candidate_id_(randomId()),
      timer_(context) {}

Flusher::~Flusher() = default;

void Flusher::start() {
  running_ = true;
  asio::co_spawn(context_, run(), [this](std::exception_ptr e) {
    running_ = false;
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::critical("keyspace {}: flusher stopped by an exception: {}", ks_.name(), ex.what());
    }
  });
}

void Flusher::stop() {
  stopping_ = true;
  timer_.cancel();
  // A batch blocked in PostgreSQL (a lock, an outage) must not hold up the
  // exit: closing the connection ends the statement; the batch stays queued.
  if (pg_) pg_->interrupt();
  auto waiters = std::move(waiters_);
  waiters_.clear();
  for (auto& w : waiters) {
    w.timer->cancel();
    w.done(false);
  }
}

void Flusher::flush(Clock::time_point deadline, std::function<void(bool)> done) {
  if (!running_) {
    done(false);
    return;
  }
  const std::uint64_t id = next_waiter_++;
  // The deadline holds even while a batch is stuck in PostgreSQL.
  auto timer = std::make_shared<asio::steady_timer>(context_, deadline);
  timer->async_wait([this, id](boost::system::error_code ec) {
    if (ec) return;  // answered before the deadline
    auto it = std::find_if(waiters_.begin(), waiters_.end(),
                           [id](const Waiter& w) { return w.id == id; });
    if (it == waiters_.end()) return;
    auto done = std::move(it->done);
    waiters_.erase(it);
    done(false);
  });
  waiters_.push_back(Waiter{id, deadline, std::move(done), {}, false, std::move(timer)});
  timer_.cancel();  // read now rather than at the end of the interval
}

asio::awaitable<void> Flusher::pause(Millis d) {
  if (stopping_) co_return;
  // Waiters need a look at least this often, for their deadlines.
  if (!waiters_.empty()) d = std::min(d, Millis(20));
  timer_.expires_after(d);
  co_await timer_.async_wait(kUseTuple);
}

void Flusher::dropConnection() {
  if (pg_) pg_->close();
  pg_.reset();
  if (!locked_for_.empty()) {
    locked_for_.clear();
    stats_.lock_held.sub();
  }
}

asio::awaitable<bool> Flusher::holdLock(const std::string& instance) {
  if (pg_ && !pg_->healthy()) dropConnection();
  if (!locked_for_.empty() && locked_for_ != instance) {
    // Redis has a new identity (flushed or replaced): the old lock names
    // another queue. Start over on a fresh connection.
    dropConnection();
  }
  if (!locked_for_.empty()) co_return true;
  if (!pg_) {
    pg_ = std::make_unique<pg::Connection>(
        context_.get_executor(), pg::connectParams(config_.postgres),
        config_.postgres.connect_timeout, config_.postgres.statement_timeout);
    if (auto error = co_await pg_->connect()) {
      spdlog::warn("keyspace {}: flusher cannot reach PostgreSQL: {}", ks_.name(), error.message);
      pg_.reset();
      co_return false;
    }
  }
  const pg::Params params{"larder:" + instance + ":" + ks_.name()};
  auto outcome =
      co_await pg_->query("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", params);
  if (!outcome.ok()) {
    spdlog::warn("keyspace {}: flusher lock: {}", ks_.name(), outcome.error.message);
    dropConnection();
    co_return false;
  }
  if (outcome.result.rows() != 1 || outcome.result.value(0, 0) != "t") {
    co_return false;  // another instance flushes this keyspace
  }
  locked_for_ = instance;
  stats_.lock_held.add();
  spdlog::info("keyspace {}: this instance now flushes the write queue", ks_.name());
  co_return true;
}

asio::awaitable<pg::PgError> Flusher::transaction(const std::vector<PendingRow>& rows,
                                                  const std::vector<std::size_t>& which) {
  auto begin = co_await pg_->script(kBeginOwnTransaction);
  if (!begin.ok()) co_return begin.error;
  for (const ApplyStatement& st : buildApply(ks_, rows, which)) {
    auto outcome = co_await pg_->query(st.sql, st.params);
    if (!outcome.ok()) {
      if (pg_->healthy()) co_await pg_->query("ROLLBACK");
      co_return outcome.error;
    }
  }
  auto commit = co_await pg_->query("COMMIT");
  co_return commit.error;
}

asio::awaitable<pg::PgError> Flusher::apply(
    const std::vector<PendingRow>& rows, std::vector<std::size_t> which,
    std::vector<std::pair<std::size_t, pg::PgError>>& dead) {
  pg::PgError error = co_await transaction(rows, which);
  if (!error || retryableForFlush(error)) co_return error;
  if (which.size() == 1) {
    dead.emplace_back(which.front(), error);
    co_return pg::PgError{};
  }
  // One row spoils the batch: halve until it stands alone, flushing the rest.
  const auto middle = which.begin() + static_cast<std::ptrdiff_t>(which.size() / 2);
  std::vector<std::size_t> left(which.begin(), middle), right(middle, which.end());
  if (auto e = co_await apply(rows, std::move(left), dead)) co_return e;
  co_return co_await apply(rows, std::move(right), dead);
}

void Flusher::settleWaiters(const std::vector<Entry>* entries, const std::string& last_id,
                            bool acked) {
  const auto now = Clock::now();
  std::erase_if(waiters_, [&](Waiter& w) {
    bool done = false;
    // A waiter gets its target (the newest entry) from the first read after
    // it came; until then no batch can answer it. nullptr: the read failed.
    if (entries && !w.has_target && !acked) {
      w.has_target = true;
      w.target = last_id;
    }
    if (entries && w.has_target) {
      done = w.target.empty() || entries->empty() ||
             streamId(entries->front().id) > streamId(w.target) ||
             (acked && streamId(entries->back().id) >= streamId(w.target));
    }
    if (done || now >= w.deadline) {
      w.timer->cancel();
      w.done(done);
      return true;
    }
    return false;
  });
}

asio::awaitable<void> Flusher::run() {
  const config::WriteBehindConfig& wb = config_.write_behind;
  const std::string queue = queueKey(ks_.name());
  while (!stopping_) {
    // Named vectors: GCC 12 miscompiles braced lists inside co_await.
    std::vector<std::string> read_keys{queue, std::string(kInstanceIdKey)};
    std::vector<std::string> read_args{candidate_id_, std::to_string(wb.max_batch)};
    const std::string reply = co_await redis::callScript(
        *redis_, readBatchScript(), std::move(read_keys), std::move(read_args));
    const auto started = Clock::now();
    resp::ReplyValue value;
    if (!resp::decodeReply(reply, value) || !value.isArray() || value.elements.size() != 5) {
      spdlog::debug("keyspace {}: reading the write queue: {}", ks_.name(), reply);
      settleWaiters(nullptr, {}, false);
      co_await pause(std::max(wb.flush_interval, Millis(100)));
      continue;
    }
    const std::string instance = value.elements[0].str();
    stats_.queue_depth.sub(stats_.queue_depth.get());
    stats_.queue_depth.add(static_cast<std::uint64_t>(value.elements[3].integer));
    stats_.oldest_age_ms.sub(stats_.oldest_age_ms.get());
    std::vector<Entry> entries;
    for (const auto& e : value.elements[1].elements) {
      if (e.elements.size() != 2) continue;
      Entry entry{e.elements[0].str(), {}, {}};
      const auto& fields = e.elements[1].elements;
      for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
        if (fields[i].str() == "k") {
          entry.key = fields[i + 1].str();
        } else if (!entry.change.decodeField(fields[i].str(), fields[i + 1].str())) {
          spdlog::warn("keyspace {}: queue entry {} has an unknown field '{}'", ks_.name(),
                       entry.id, fields[i].str());
        }
      }
      entries.push_back(std::move(entry));
    }
    if (!entries.empty()) {
      const auto first_ms = streamId(entries.front().id).first;
      const auto now_ms = static_cast<std::uint64_t>(value.elements[4].integer);
      stats_.oldest_age_ms.add(now_ms > first_ms ? now_ms - first_ms : 0);
    }
    if (entries.empty()) {
      settleWaiters(&entries, value.elements[2].str(), false);
      co_await pause(wb.flush_interval);
      continue;
    }
    settleWaiters(&entries, value.elements[2].str(), false);
    if (!co_await holdLock(instance)) {
      co_await pause(kLockRetry);
      continue;
    }

    // Coalesce per key, in queue order.
    std::vector<PendingRow> rows;
    std::vector<std::string> last_ids;
    std::unordered_map<std::string, std::size_t> index;
    std::vector<std::size_t> unmatched;  // keys that no longer fit the keyspace
    std::vector<std::string_view> values;
    for (const Entry& entry : entries) {
      auto [it, fresh] = index.try_emplace(entry.key, rows.size());
      if (fresh) {
        PendingRow row;
        row.key = entry.key;
        if (ks_.match(entry.key, values)) {
          row.key_values.assign(values.begin(), values.end());
        } else {
          unmatched.push_back(rows.size());
        }
        rows.push_back(std::move(row));
        last_ids.push_back(entry.id);
      } else {
        stats_.coalesced.add();
      }
      rows[it->second].change.then(entry.change);
      last_ids[it->second] = entry.id;
    }
    std::vector<std::size_t> which;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (std::find(unmatched.begin(), unmatched.end(), i) == unmatched.end()) which.push_back(i);
    }

    std::vector<std::pair<std::size_t, pg::PgError>> dead;
    for (std::size_t i : unmatched) {
      dead.emplace_back(i, pg::PgError{"", "the key no longer fits keyspace " + ks_.name()});
    }
    const pg::PgError error = co_await apply(rows, which, dead);
    if (error) {
      stats_.retries.add();
      if (!pg_->healthy()) dropConnection();
      backoff_ = std::clamp(backoff_ * 2, wb.retry_min, wb.retry_max);
      // Full jitter, so several instances do not retry in step.
      thread_local std::minstd_rand rng{std::random_device{}()};
      const Millis wait{
          std::uniform_int_distribution<long long>(backoff_.count() / 2, backoff_.count())(rng)};
      spdlog::warn("keyspace {}: flushing {} row(s) failed, retrying in {} ms: {}", ks_.name(),
                   which.size(), wait.count(), error.message);
      co_await pause(wait);
      continue;
    }
    backoff_ = Millis(0);

    bool dead_ok = true;
    for (const auto& [row, why] : dead) {
      std::vector<std::string> args{last_ids[row], std::to_string(wb.max_queue), rows[row].key,
                                    why.sqlstate, why.message};
      rows[row].change.encode(args);
      std::vector<std::string> dead_keys{deadLetterKey(ks_.name()), pendingMarker(rows[row].key),
                                         rows[row].key};
      const std::string r = co_await redis::callScript(*redis_, deadLetterScript(),
                                                       std::move(dead_keys), std::move(args));
      if (r != ":1\r\n") {
        dead_ok = false;
        spdlog::error("keyspace {}: cannot record a dead letter for {} ({}): {}", ks_.name(),
                      rows[row].key, why.message, r);
        break;
      }
      stats_.dead_letters.add();
      spdlog::warn("keyspace {}: PostgreSQL refused the write to {} for good ({} {}); moved to {}",
                   ks_.name(), rows[row].key, why.sqlstate, why.message, deadLetterKey(ks_.name()));
    }
    if (!dead_ok) {  // the batch stays queued: nothing is acknowledged without a record
      co_await pause(wb.retry_max);
      continue;
    }

    std::vector<std::string> keys{queue};
    std::vector<std::string> args{std::to_string(markerLinger(config_).count())};
    for (std::size_t i = 0; i < rows.size(); ++i) {
      keys.push_back(pendingMarker(rows[i].key));
      args.push_back(last_ids[i]);
    }
    for (const Entry& entry : entries) args.push_back(entry.id);
    const std::string ack =
        co_await redis::callScript(*redis_, ackScript(), std::move(keys), std::move(args));
    if (ack.empty() || ack.front() != ':') {
      // Committed but not acknowledged: the entries are replayed later, which
      // the idempotent apply makes harmless.
      spdlog::warn("keyspace {}: acknowledging a flushed batch failed: {}", ks_.name(), ack);
      co_await pause(std::max(wb.flush_interval, Millis(100)));
      continue;
    }
    stats_.batches.add();
    stats_.entries.add(entries.size());
    stats_.rows.add(rows.size() - dead.size());
    stats_.latency.observe(Clock::now() - started);
    settleWaiters(&entries, {}, true);
    if (entries.size() < wb.max_batch && waiters_.empty()) co_await pause(wb.flush_interval);
  }
  dropConnection();
}

}  // namespace larder::cache
