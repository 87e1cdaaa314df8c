// The Flusher's loop: owning the queue, reading, acknowledging, pausing.
// Applying a batch to PostgreSQL is in flusher_apply.cpp.
#include "larder/cache/flusher.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>

#include "larder/cache/flush_scripts.hpp"
#include "larder/cache/write_scripts.hpp"
#include "larder/common/logging.hpp"
#include "larder/redis/call.hpp"
#include "larder/resp/reply_value.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr Millis kLockRetry{500};
constexpr Millis kRedisRetry{100};
// The gauges are read on their own when no read of the queue came for this
// long (or flush_interval, if longer).
constexpr Millis kGaugePeriod{1000};

std::uint64_t packSqlstate(const std::string& s) {
  std::uint64_t out = 0;
  for (std::size_t i = 0; i < s.size() && i < 8; ++i) {
    out |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[i])) << (8 * i);
  }
  return out;
}

}  // namespace

std::string Flusher::randomId() {
  std::random_device device;
  std::uniform_int_distribution<unsigned> nibble(0, 15);
  std::string out;
  for (int i = 0; i < 32; ++i) out += "0123456789abcdef"[nibble(device)];
  return out;
}

std::string unpackSqlstate(std::uint64_t packed) {
  std::string out;
  for (; packed != 0; packed >>= 8) out += static_cast<char>(packed & 0xff);
  return out;
}

std::chrono::milliseconds markerLinger(const config::Config& config) {
  return loadWindow(config) + std::chrono::milliseconds(2000);
}

std::chrono::milliseconds loadWindow(const config::Config& config) {
  return config.postgres.statement_timeout + config.read_through.load_timeout;
}

Flusher::Flusher(asio::io_context& context, const Keyspace& ks, const config::Config& config,
                 std::shared_ptr<redis::Route> redis, std::optional<SlotQueues> slots)
    : context_(context),
      ks_(ks),
      config_(config),
      redis_(std::move(redis)),
      partitions_(static_cast<std::size_t>(std::max(1, config.write_behind.apply_connections))),
      marks_(partitions_),
      candidate_id_(randomId()),
      timer_(context),
      gauge_timer_(context),
      sharded_(std::move(slots)) {}

Flusher::~Flusher() = default;

void Flusher::start() {
  spawnRun();
  // A cluster's sweeps read the gauges.
  if (!sharded_) asio::co_spawn(context_, watchGauges(), logEscaped("flusher gauges"));
}

void Flusher::spawnRun() {
  running_ = true;
  asio::co_spawn(context_, sharded_ ? runSlots() : run(), [this](std::exception_ptr e) {
    running_ = false;
    if (e) logEscaped("flusher")(e);
  });
}

void Flusher::drainAgain() {
  if (!drained_ || running_ || stopping_) return;
  spdlog::info("keyspace {}: its old write queue has entries again; draining it again", ks_.name());
  spawnRun();  // (the gauges come from its reads)
}

void Flusher::stop() {
  stopping_ = true;
  timer_.cancel();
  gauge_timer_.cancel();
  // A batch blocked in PostgreSQL (a lock, an outage) must not hold up the
  // exit: ending the statement rolls the batch back; it stays queued.
  for (auto& c : apply_) {
    if (c) c->interrupt();
  }
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
    auto answer = std::move(it->done);
    waiters_.erase(it);
    answer(false);
  });
  waiters_.push_back(
      Waiter{id, deadline, std::move(done), std::nullopt, false, std::move(timer), {}});
  timer_.cancel();  // read now rather than at the end of the interval
}

asio::awaitable<void> Flusher::pause(Millis d) {
  if (stopping_) co_return;
  // Waiters need a look at least this often, for their deadlines.
  if (!waiters_.empty()) d = std::min(d, Millis(20));
  timer_.expires_after(d);
  co_await timer_.async_wait(kUseTuple);
}

bool Flusher::alreadyApplied(std::string_view key, StreamId id) const {
  if (!sharded_) return marks_.applied(key, id);
  const auto it = slots_.find(cluster::keySlot(key));
  return it != slots_.end() && !it->second.owner_for.empty() && it->second.marks.applied(key, id);
}

void Flusher::settleWaiters(const Read* read) {
  const auto now = Clock::now();
  std::erase_if(waiters_, [&](Waiter& w) {
    // A waiter's target is the newest entry at the first read after it came:
    // every entry queued before the call is at or below it.
    if (read && !w.has_target) {
      w.has_target = true;
      w.target = read->newest;
    }
    bool done = false;
    if (w.has_target) {
      done = !w.target || (read && read->depth == 0) || *w.target <= acked_;
    }
    if (done || now >= w.deadline) {
      w.timer->cancel();
      w.done(done);
      return true;
    }
    return false;
  });
}

void Flusher::dropOwnership() {
  for (auto& c : apply_) {
    if (c) c->close();
  }
  apply_.clear();
  state_.reset();
  cursor_ = "-";
  slots_.clear();
  table_ready_ = false;
  sweep_now_ = true;
  if (!owner_for_.empty()) {
    owner_for_.clear();
    stats_.lock_held.sub();
  }
}

Millis Flusher::nextBackoff() {
  const config::WriteBehindConfig& wb = config_.write_behind;
  backoff_ = std::clamp(backoff_ * 2, wb.retry_min, wb.retry_max);
  // Full jitter, so several instances do not retry in step.
  thread_local std::minstd_rand rng{std::random_device{}()};
  return Millis{
      std::uniform_int_distribution<long long>(backoff_.count() / 2, backoff_.count())(rng)};
}

void Flusher::failedStep(const pg::PgError& error) {
  stats_.retries.add();
  const std::string what = error.sqlstate + " " + error.message;
  if (pause_logged_.empty()) {
    paused_since_ = Clock::now();
    stats_.paused.add();
  }
  stats_.pause_state.sub(stats_.pause_state.get());
  stats_.pause_state.add(packSqlstate(error.sqlstate));
  // Logged once per distinct error: a keyspace paused for an hour says so
  // once, not every backoff.
  if (what != pause_logged_) {
    const auto level = transientFlushError(error) ? spdlog::level::info : spdlog::level::err;
    spdlog::log(level,
                "keyspace {}: flush paused, queue and cache kept: PostgreSQL said {}{}{}; "
                "retrying with backoff",
                ks_.name(), error.sqlstate.empty() ? "" : "SQLSTATE " + error.sqlstate,
                error.sqlstate.empty() ? "" : ": ", error.message);
    pause_logged_ = what;
  }
}

void Flusher::recovered() {
  backoff_ = Millis(0);
  if (pause_logged_.empty()) return;
  const auto secs =
      std::chrono::duration_cast<std::chrono::duration<double>>(Clock::now() - paused_since_);
  spdlog::info("keyspace {}: flush resumed after {:.1f} s", ks_.name(), secs.count());
  pause_logged_.clear();
  stats_.paused.sub(stats_.paused.get());
  stats_.pause_state.sub(stats_.pause_state.get());
}

asio::awaitable<std::string> Flusher::claimInstance() {
  std::vector<std::string> keys{std::string(kInstanceIdKey)};
  std::vector<std::string> args{candidate_id_};
  const std::string reply =
      co_await redis::callScript(*redis_, claimIdScript(), std::move(keys), std::move(args));
  resp::ReplyValue v;
  if (!resp::decodeReply(reply, v) || v.type != resp::ReplyValue::Type::Bulk) co_return "";
  co_return v.str();
}

asio::awaitable<Flusher::Own> Flusher::own(const std::string& instance, pg::PgError& error) {
  dropOwnership();
  apply_.resize(partitions_);
  for (auto& c : apply_) {
    c = std::make_unique<pg::Connection>(
        context_.get_executor(), pg::connectParams(config_.postgres),
        config_.postgres.connect_timeout, config_.postgres.statement_timeout);
  }
  if ((error = co_await apply_[0]->connect())) co_return Own::Failed;
  const pg::Params name{"larder:" + instance + ":" + ks_.name()};
  auto locked =
      co_await apply_[0]->query("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", name);
  if (!locked.ok()) {
    error = locked.error;
    co_return Own::Failed;
  }
  if (locked.result.rows() != 1 || locked.result.value(0, 0) != "t") {
    dropOwnership();
    co_return Own::Taken;  // another instance flushes this keyspace
  }
  for (std::size_t p = 1; p < partitions_; ++p) {
    if ((error = co_await apply_[p]->connect())) co_return Own::Failed;
  }
  if (sharded_) {  // each slot's marks are read when its queue is first read
    owner_for_ = instance;
    stats_.lock_held.add();
    spdlog::info(
        "keyspace {}: this instance now flushes the write queues of the cluster's slots ({} apply "
        "connection(s))",
        ks_.name(), partitions_);
    co_return Own::Yes;
  }
  state_ = std::make_unique<FlushState>(config_.write_behind.state_table,
                                        instance + ":" + ks_.name(), partitions_);
  if ((error = co_await state_->load(*apply_[0], marks_))) co_return Own::Failed;
  owner_for_ = instance;
  stats_.lock_held.add();
  spdlog::info(
      "keyspace {}: this instance now flushes the write queue ({} apply connection(s), "
      "applied through {})",
      ks_.name(), partitions_, marks_.highest().str());
  co_return Own::Yes;
}

asio::awaitable<std::optional<Flusher::Read>> Flusher::read(std::string start) {
  // XRANGE natively, then the script for the queue's state, one after the
  // other on the same connection: the state is read at or after the entries
  // (a Redis flushed or replaced in between shows a new instance id).
  std::string xrange;
  const std::string count = std::to_string(config_.write_behind.max_batch);
  resp::appendMultibulk(xrange, {"XRANGE", queueKey(ks_.name()), start, "+", "COUNT", count});
  const std::string entries = co_await redis::call(*redis_, std::move(xrange));
  std::vector<std::string> keys{queueKey(ks_.name()), std::string(kInstanceIdKey)};
  const std::string meta =
      co_await redis::callScript(*redis_, readBatchScript(), std::move(keys), {});
  Read r;
  if (!decodeQueueRead(entries, meta, r)) {
    spdlog::debug("keyspace {}: reading the write queue: {} / {}", ks_.name(),
                  entries.substr(0, 200), meta);
    co_return std::nullopt;
  }
  for (const auto& field : r.unknown_fields) {
    spdlog::warn("keyspace {}: queue entry {} has a field Larder does not write", ks_.name(),
                 field);
  }
  co_return r;
}

void Flusher::showGauges(const Read& r) {
  gauges_at_ = Clock::now();
  stats_.queue_depth.sub(stats_.queue_depth.get());
  stats_.queue_depth.add(static_cast<std::uint64_t>(std::max(0LL, r.depth)));
  stats_.oldest_age_ms.sub(stats_.oldest_age_ms.get());
  if (r.oldest && static_cast<std::uint64_t>(r.now_ms) > r.oldest->ms) {
    stats_.oldest_age_ms.add(static_cast<std::uint64_t>(r.now_ms) - r.oldest->ms);
  }
}

// The gauges come from each read of the queue. While a batch is stuck (a lock
// or an outage in PostgreSQL, a long backoff) nothing reads it, and they would
// stand still as the queue grows: then the queue's state alone is read.
asio::awaitable<void> Flusher::watchGauges() {
  const Millis every = std::max(config_.write_behind.flush_interval, kGaugePeriod);
  while (!stopping_ && running_) {  // a drained flusher's run ends on its own
    gauge_timer_.expires_after(every);
    co_await gauge_timer_.async_wait(kUseTuple);
    if (stopping_) break;
    if (Clock::now() - gauges_at_ < every) continue;
    std::vector<std::string> keys{queueKey(ks_.name()), std::string(kInstanceIdKey)};
    const std::string meta =
        co_await redis::callScript(*redis_, readBatchScript(), std::move(keys), {});
    Read r;
    if (!stopping_ && decodeQueueRead("*0\r\n", meta, r)) showGauges(r);
  }
}

asio::awaitable<void> Flusher::run() {
  const config::WriteBehindConfig& wb = config_.write_behind;
  std::optional<Read> prefetched;
  std::optional<FlushBatch> unacked;  // committed, its ack still to send
  auto finishAck = [&]() -> asio::awaitable<void> {
    if (!unacked) co_return;
    if (!co_await ack(*unacked)) cursor_ = "-";
    unacked.reset();
    settleWaiters(nullptr);
  };
  while (!stopping_) {
    // Own the queue before reading it: a batch read before the lock could be
    // stale by the time it is applied (another instance flushed newer writes).
    if (owner_for_.empty()) {
      prefetched.reset();
      const std::string instance = co_await claimInstance();
      if (instance.empty()) {
        settleWaiters(nullptr);
        co_await pause(std::max(wb.flush_interval, kRedisRetry));
        continue;
      }
      pg::PgError error;
      const Own own_result = co_await own(instance, error);
      if (own_result == Own::Taken) {
        // A drain waits too: the owner still has the keyspace `behind` and
        // queues writes that would land over this instance's through writes.
        co_await pause(kLockRetry);
        continue;
      }
      if (own_result == Own::Failed) {
        failedStep(error);
        dropOwnership();
        co_await pause(nextBackoff());
        continue;
      }
    }
    const auto started = Clock::now();
    std::optional<Read> got = std::move(prefetched);
    prefetched.reset();
    if (!got) got = co_await read(cursor_);
    if (!got) {  // Redis unreachable: read from the head once it is back
      co_await finishAck();
      cursor_ = "-";
      settleWaiters(nullptr);
      co_await pause(std::max(wb.flush_interval, kRedisRetry));
      continue;
    }
    Read& r = *got;
    if (r.instance != owner_for_) {
      // Redis has a new identity (flushed or replaced): the lock and marks
      // name another queue.
      unacked.reset();
      dropOwnership();
      continue;
    }
    showGauges(r);
    settleWaiters(&r);
    // Every id PostgreSQL applied came from this queue, so its generator is
    // past them all, unless Redis went back in time.
    if (r.generated.value_or(StreamId{}) < marks_.highest()) {
      co_await finishAck();
      if (!co_await resync()) co_await pause(std::max(wb.flush_interval, kRedisRetry));
      cursor_ = "-";
      continue;
    }
    if (r.entries.empty()) {
      co_await finishAck();
      if (drained_ && r.depth == 0) {
        spdlog::info("keyspace {}: old write queue drained", ks_.name());
        drained_();
        break;
      }
      const auto since = Clock::now() - started;
      if (since < wb.flush_interval && waiters_.empty()) {
        co_await pause(std::chrono::duration_cast<Millis>(wb.flush_interval - since));
      }
      continue;
    }

    FlushBatch batch = planBatch(ks_, r.entries, marks_);
    cursor_ = "(" + batch.last.str();
    const bool full = r.entries.size() >= wb.max_batch;
    // Unmatched keys are recorded before anything commits: once their
    // partition's mark moves past them they would count as applied.
    std::vector<Dead> unmatched;
    for (auto& u : batch.unmatched) {
      unmatched.push_back(
          Dead{u.row, u.last, {"", "the key no longer fits keyspace " + ks_.name()}});
    }
    pg::PgError error = co_await recordDead(unmatched);
    dead_rows_ = 0;
    // Apply this batch; meanwhile acknowledge the previous one and, when this
    // one was full, read the next.
    std::vector<std::function<asio::awaitable<void>()>> tasks;
    Clock::duration applied{}, acked{}, read_next{};
    auto timed = [](Clock::duration& into, auto step) -> asio::awaitable<void> {
      const auto t0 = Clock::now();
      co_await step();
      into = Clock::now() - t0;
    };
    if (!error) {
      tasks.push_back([&]() -> asio::awaitable<void> {
        co_await timed(applied,
                       [&]() -> asio::awaitable<void> { error = co_await applyAll(batch); });
      });
    }
    tasks.push_back([&]() -> asio::awaitable<void> { co_await timed(acked, finishAck); });
    if (full && !error) {
      tasks.push_back([&]() -> asio::awaitable<void> {
        co_await timed(read_next,
                       [&]() -> asio::awaitable<void> { prefetched = co_await read(cursor_); });
      });
    }
    const auto step_started = Clock::now();
    co_await runAll(std::move(tasks));
    auto ms = [](Clock::duration d) {
      return std::chrono::duration_cast<std::chrono::microseconds>(d).count() / 1000.0;
    };
    spdlog::debug(
        "keyspace {}: {} entries: read and plan {:.1f} ms; then apply {:.1f} ms | previous ack "
        "{:.1f} ms | next read {:.1f} ms, together {:.1f} ms",
        ks_.name(), r.entries.size(), ms(step_started - started), ms(applied), ms(acked),
        ms(read_next), ms(Clock::now() - step_started));
    if (error) {
      failedStep(error);
      prefetched.reset();
      // A lost connection may have lost the lock, and a failed COMMIT leaves
      // its outcome unknown: own the queue again, which reads the marks anew
      // and reads the queue from its head (the marks skip what is done).
      dropOwnership();
      co_await pause(nextBackoff());
      continue;
    }
    recovered();
    stats_.batches.add();
    stats_.entries.add(r.entries.size());
    std::size_t rows = 0;
    for (const auto& part : batch.parts) rows += part.rows.size();
    stats_.rows.add(rows - std::min(rows, dead_rows_));
    stats_.coalesced.add(batch.coalesced);
    stats_.replayed.add(batch.replayed_entries);
    stats_.latency.observe(Clock::now() - started);
    unacked = std::move(batch);
    if (!full) {
      co_await finishAck();
      const auto since = Clock::now() - started;
      if (since < wb.flush_interval && waiters_.empty()) {
        co_await pause(std::chrono::duration_cast<Millis>(wb.flush_interval - since));
      }
    }
  }
  dropOwnership();
}

}  // namespace larder::cache
