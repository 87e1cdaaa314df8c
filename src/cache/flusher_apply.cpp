// The Flusher's PostgreSQL side: one transaction per partition, run in
// parallel, each moving its partition's applied mark; refused rows found by
// bisection inside the transaction and recorded before it commits. Then the
// ack in Redis, and the resync after Redis went back in time. The loop is in
// flusher.cpp.
//
//   BEGIN; SET LOCAL larder.origin = 'larder'
//   UPDATE state SET mark = <through> WHERE ... AND mark = <as read>   -- fence
//   statements(all rows) ----------------- ok -------------------------+
//     | 22xxx/23xxx (or 21000: two keys, one row)                      |
//   ROLLBACK; BEGIN; fence again                                        |
//   bisect: SAVEPOINT; statements(half); ROLLBACK TO SAVEPOINT on error |
//           ... down to single rows: those are the dead letters         |
//   dead letters -> Redis (before COMMIT: a crash re-applies, never loses)
//   COMMIT <------------------------------------------------------------+
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <numeric>

#include "larder/cache/flush_scripts.hpp"
#include "larder/cache/flusher.hpp"
#include "larder/cache/key_names.hpp"
#include "larder/cache/write_scripts.hpp"
#include "larder/common/logging.hpp"
#include "larder/redis/call.hpp"
#include "larder/resp/reply_value.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace asio = boost::asio;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

namespace {

// Worth splitting the rows over: one of them is at fault (22, 23), or two of
// them name the same row (21000, "cannot affect row a second time").
bool splittable(const pg::PgError& e) {
  return classifyFlushError(e) == FlushVerdict::Row || e.sqlstate == "21000";
}

std::string statementName(const std::string& sql) {
  // The SQL depends only on the keyspace and the columns written: prepared
  // once per connection under a name derived from its text.
  return "larder_apply_" + std::to_string(std::hash<std::string>{}(sql));
}

std::string globPrefix(std::string_view prefix) {
  std::string out;
  for (char c : prefix) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out + "*";
}

}  // namespace

asio::awaitable<void> Flusher::runAll(std::vector<std::function<asio::awaitable<void>()>> tasks) {
  auto executor = co_await asio::this_coro::executor;
  auto left = std::make_shared<std::size_t>(tasks.size());
  auto done = std::make_shared<asio::steady_timer>(executor, asio::steady_timer::time_point::max());
  for (auto& task : tasks) {
    asio::co_spawn(executor, task(), [left, done](std::exception_ptr e) {
      if (e) logEscaped("flusher step")(e);
      if (--*left == 0) done->cancel();
    });
  }
  if (*left > 0) co_await done->async_wait(kUseTuple);
}

asio::awaitable<pg::PgError> Flusher::applyAll(FlushBatch& batch) {
  std::vector<pg::PgError> errors(batch.parts.size());
  std::vector<std::function<asio::awaitable<void>()>> tasks;
  for (std::size_t p = 0; p < batch.parts.size(); ++p) {
    if (batch.parts[p].empty()) continue;
    tasks.push_back([this, &batch, &errors, p]() -> asio::awaitable<void> {
      errors[p] = co_await applyPart(p, batch.parts[p]);
    });
  }
  co_await runAll(std::move(tasks));
  for (auto& e : errors) {
    if (e) co_return e;
  }
  co_return pg::PgError{};
}

asio::awaitable<pg::PgError> Flusher::statements(pg::Connection& c, const PartitionBatch& part,
                                                 const std::vector<std::size_t>& which) {
  for (const ApplyStatement& st : buildApply(ks_, part.rows, which)) {
    auto outcome = co_await c.prepared(statementName(st.sql), st.sql, st.params);
    if (!outcome.ok()) co_return outcome.error;
  }
  co_return pg::PgError{};
}

asio::awaitable<pg::PgError> Flusher::bisect(pg::Connection& c, const PartitionBatch& part,
                                             std::vector<std::size_t> which,
                                             std::vector<Dead>& dead) {
  const auto middle = which.begin() + static_cast<std::ptrdiff_t>(which.size() / 2);
  std::vector<std::vector<std::size_t>> halves{{which.begin(), middle}, {middle, which.end()}};
  for (auto& half : halves) {
    if (half.empty()) continue;
    if (auto e = (co_await c.query("SAVEPOINT larder_rows")).error) co_return e;
    pg::PgError error = co_await statements(c, part, half);
    if (!error) {
      if (auto e = (co_await c.query("RELEASE SAVEPOINT larder_rows")).error) co_return e;
      continue;
    }
    if (auto e = (co_await c.query("ROLLBACK TO SAVEPOINT larder_rows")).error) co_return e;
    if (!splittable(error)) co_return error;
    if (half.size() == 1) {
      const std::size_t row = half.front();
      dead.push_back(Dead{part.rows[row], part.last[row], error});
      continue;
    }
    if (auto e = co_await bisect(c, part, std::move(half), dead)) co_return e;
  }
  co_return pg::PgError{};
}

asio::awaitable<pg::PgError> Flusher::applyPart(std::size_t p, PartitionBatch& part) {
  const StreamId from = marks_.current.marks[p];
  // A named local: a temporary in the co_await's full-expression does not
  // reliably outlive the suspension with GCC 12.
  const Fence fence = [this, p, from, &part](pg::Connection& c) {
    return state_->advance(c, p, from, part.through);
  };
  pg::PgError error = co_await applyRows(*apply_[p], part, fence);
  if (!error) marks_.current.marks[p] = part.through;
  co_return error;
}

asio::awaitable<pg::PgError> Flusher::applyRows(pg::Connection& c, const PartitionBatch& part,
                                                const Fence& fence) {
  std::vector<std::size_t> all(part.rows.size());
  std::iota(all.begin(), all.end(), std::size_t{0});
  std::vector<Dead> dead;
  auto rollback = [&c]() -> asio::awaitable<void> {
    if (c.healthy()) co_await c.query("ROLLBACK");
  };
  auto begin = [&]() -> asio::awaitable<pg::PgError> {
    if (auto e = (co_await c.script(kBeginOwnTransaction)).error) co_return e;
    // First, so that a second flusher waits here, and finds the mark moved.
    co_return co_await fence(c);
  };
  pg::PgError error = co_await begin();
  if (!error) error = co_await statements(c, part, all);
  if (error && splittable(error) && all.size() > 1) {
    co_await rollback();
    error = co_await begin();
    if (!error) error = co_await bisect(c, part, all, dead);
  } else if (error && splittable(error)) {
    dead.push_back(Dead{part.rows[0], part.last[0], error});
    co_await rollback();
    error = co_await begin();
  }
  if (!error && !dead.empty()) error = co_await recordDead(dead);
  if (error) {
    co_await rollback();
    co_return error;
  }
  if (auto e = (co_await c.query("COMMIT")).error) co_return e;
  dead_rows_ += dead.size();
  co_return pg::PgError{};
}

asio::awaitable<pg::PgError> Flusher::recordDead(std::vector<Dead>& dead) {
  for (const Dead& d : dead) {
    std::vector<std::string> args{d.last.str(), std::to_string(config_.write_behind.max_queue),
                                  d.row.key, d.why.sqlstate, d.why.message};
    d.row.change.encode(args);
    // The dead letters and dead keys of the key's queue: on a cluster in the key's slot.
    const std::string dead = queueFamilyKey(kDeadLetters, ks_.name(), d.row.key);
    std::vector<std::string> keys{dead, pendingMarker(d.row.key), d.row.key,
                                  queueFamilyKey(kDeadKeys, ks_.name(), d.row.key)};
    const std::string r =
        co_await redis::callScript(*redis_, deadLetterScript(), std::move(keys), std::move(args));
    if (r == ":-1\r\n") {
      co_return pg::PgError{"", "the dead-letter stream " + dead + " is full (max_queue " +
                                    std::to_string(config_.write_behind.max_queue) + ")"};
    }
    if (r != ":1\r\n") co_return pg::PgError{"", "cannot record a dead letter in Redis: " + r};
    stats_.dead_letters.add();
    spdlog::warn("keyspace {}: PostgreSQL refused the write to {} for good ({} {}); moved to {}",
                 ks_.name(), d.row.key, d.why.sqlstate, d.why.message, dead);
  }
  co_return pg::PgError{};
}

asio::awaitable<bool> Flusher::ack(const FlushBatch& batch) {
  // Named locals for the co_await's arguments: GCC 12 mishandles a
  // temporary in a co_await inside a condition.
  std::string queue = queueKey(ks_.name());
  const bool acked = co_await ackQueue(std::move(queue), batch);
  if (!acked) co_return false;
  acked_ = std::max(acked_, batch.last);
  co_return true;
}

asio::awaitable<bool> Flusher::ackQueue(std::string queue, const FlushBatch& batch) {
  std::vector<std::string> keys{std::move(queue)};
  std::vector<std::string> args{std::to_string(markerLinger(config_).count())};
  appendAckSection(args, batch);
  const std::string reply =
      co_await redis::callScript(*redis_, ackScript(), std::move(keys), std::move(args));
  if (reply.empty() || reply.front() != ':') {
    // Committed but not acknowledged: the entries are read again later, and
    // the marks make that a replay that changes nothing.
    spdlog::warn("keyspace {}: acknowledging a flushed batch failed: {}", ks_.name(), reply);
    co_return false;
  }
  co_return true;
}

asio::awaitable<bool> Flusher::resync() {
  std::string queue = queueKey(ks_.name());
  const bool done = co_await resyncQueue(std::move(queue), marks_.highest());
  co_return done;
}

asio::awaitable<bool> Flusher::resyncQueue(std::string queue, StreamId top) {
  stats_.redis_behind.add();
  spdlog::warn(
      "keyspace {}: Redis' write queue is behind PostgreSQL, which applied {} through {}: "
      "Redis was restored from an older snapshot, or failed over to a replica that lagged. "
      "Entries up to {} are not applied again; the keyspace's cached values are dropped (they "
      "may be older than PostgreSQL's rows)",
      ks_.name(), queue, top.str(), top.str());
  std::vector<std::string> keys{std::move(queue)};
  std::vector<std::string> args{top.str(), StreamId{top.ms, top.seq + 1}.str()};
  const std::string reply =
      co_await redis::callScript(*redis_, resyncScript(), std::move(keys), std::move(args));
  if (reply.empty() || reply.front() != ':') {
    spdlog::warn("keyspace {}: resyncing the write queue failed: {}", ks_.name(), reply);
    co_return false;
  }
  if (cache_dropped_) cache_dropped_(ks_.id);
  co_return co_await dropCachedValues();
}

asio::awaitable<bool> Flusher::scanEach(
    std::string pattern, std::function<asio::awaitable<bool>(const resp::ReplyValue&)> page) {
  std::string cursor = "0";
  do {
    std::string scan;
    resp::appendMultibulk(scan, {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
    const std::string reply = co_await redis::call(*redis_, std::move(scan));
    resp::ReplyValue v;
    if (!resp::decodeReply(reply, v) || !v.isArray() || v.elements.size() != 2) co_return false;
    cursor = v.elements[0].str();
    if (!co_await page(v.elements[1])) co_return false;
  } while (cursor != "0" && !stopping_);
  co_return true;
}

asio::awaitable<bool> Flusher::dropCachedValues() {
  if (!co_await dropAppliedMarkers()) co_return false;
  co_return co_await scanEach(
      globPrefix(ks_.key.prefix()), [this](const resp::ReplyValue& keys) -> asio::awaitable<bool> {
        std::vector<std::string_view> values;
        std::vector<std::string> page{"UNLINK"};
        for (const auto& element : keys.elements) {
          if (!ks_.match(element.str(), values)) continue;  // another keyspace's, or unmapped
          page.push_back(element.str());
        }
        if (page.size() == 1) co_return true;
        std::string request;
        const std::vector<std::string_view> parts(page.begin(), page.end());
        resp::appendMultibulk(request, parts);
        const std::string r = co_await redis::call(*redis_, std::move(request));
        co_return !r.empty() && r.front() == ':';
      });
}

// A marker that came back with Redis' older state and names an entry
// PostgreSQL already applied would lay that older write over the newer row
// at the next load: such markers go (markers of newer writes stay).
asio::awaitable<bool> Flusher::dropAppliedMarkers() {
  // One Redis: __larder:pending:<key>; a cluster: __larder:pending:{<tag>}<key>.
  std::string pattern = std::string(kReservedPrefix) + "pending:";
  if (sharded_) pattern += "{*}";
  pattern += globPrefix(ks_.key.prefix());
  co_return co_await scanEach(
      pattern, [this](const resp::ReplyValue& markers) -> asio::awaitable<bool> {
        std::vector<std::string_view> values;
        for (const auto& element : markers.elements) {
          const std::string marker = element.str();
          const std::string key(keyOfMarker(marker));
          if (!ks_.match(key, values)) continue;
          std::string get;
          resp::appendMultibulk(get, {"HGET", marker, "_id"});
          resp::ReplyValue id;
          if (!resp::decodeReply(co_await redis::call(*redis_, std::move(get)), id))
            co_return false;
          const auto entry = StreamId::parse(id.str());
          if (!entry || !alreadyApplied(key, *entry)) continue;
          // Only if it still names that entry (a write may have come meanwhile).
          std::vector<std::string> keys{marker};
          std::vector<std::string> args{id.str()};
          const std::string r = co_await redis::callScript(*redis_, dropMarkerScript(),
                                                           std::move(keys), std::move(args));
          if (r.empty() || r.front() != ':') co_return false;
        }
        co_return true;
      });
}

}  // namespace larder::cache
