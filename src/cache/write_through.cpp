#include "larder/cache/write_through.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <numeric>
#include <unordered_set>

#include "larder/cache/flush_plan.hpp"
#include "larder/cache/key_names.hpp"
#include "larder/cache/write_scripts.hpp"
#include "larder/common/errors.hpp"
#include "larder/common/logging.hpp"
#include "larder/redis/call.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// How long a batch of through writes waits for the first look at Redis'
// queues (RedisAudit::queuesChecked: one XLEN or one script per primary and
// keyspace, once Redis answers and a cluster's map is known), and how often
// it checks.
constexpr auto kFirstAuditWait = std::chrono::seconds(5);
constexpr auto kAdmissionPoll = std::chrono::milliseconds(10);

bool splittable(const pg::PgError& e) {
  return classifyFlushError(e) == FlushVerdict::Row || e.sqlstate == "21000";
}

std::string refusedReply(const pg::PgError& e) {
  return resp::errorReply(errors::postgresRefused(e.message, e.sqlstate));
}

std::string statementName(const std::string& sql) {
  return "larder_through_" + std::to_string(std::hash<std::string>{}(sql));
}

// The reply a committed write gives when the cache could not be updated.
std::string defaultReply(const ThroughWrite& w) {
  std::string out;
  if (w.op == "hset" || w.op == "hdel") {
    resp::appendInteger(out, static_cast<long long>(w.change.columns.size()));
  } else {
    out = "+OK\r\n";
  }
  return out;
}

}  // namespace

WriteThrough::WriteThrough(asio::io_context& context, pg::Pool& pool, Loader& loader,
                           const KeyspaceRegistry& registry, const config::Config& config,
                           std::shared_ptr<redis::Route> cache)
    : context_(context),
      pool_(pool),
      loader_(loader),
      registry_(registry),
      config_(config),
      cache_(std::move(cache)),
      queues_(config::kMaxKeyspaces),
      running_(config::kMaxKeyspaces, false) {
  // Sized for every keyspace a reload may add: stats are read from other threads.
  for (std::size_t i = 0; i < config::kMaxKeyspaces; ++i) {
    stats_.push_back(std::make_unique<ThroughStats>());
  }
}

void WriteThrough::write(ThroughWrite write, ReplyFn done) {
  asio::post(context_, [this, write = std::move(write), done = std::move(done)]() mutable {
    const int id = write.ks->id;
    queues_[id].push_back(Item{std::move(write), std::move(done), Clock::now()});
    if (running_[id]) return;
    running_[id] = true;
    asio::co_spawn(context_, run(id), logEscaped("write-through"));
  });
}

asio::awaitable<pg::PgError> WriteThrough::statements(pg::Connection& c, const Keyspace& ks,
                                                      const std::vector<PendingRow>& rows,
                                                      const std::vector<std::size_t>& which,
                                                      std::vector<Outcome>& out) {
  for (const ApplyStatement& st : buildApply(ks, rows, which)) {
    auto outcome = co_await c.prepared(statementName(st.sql), st.sql, st.params);
    if (!outcome.ok()) co_return outcome.error;
    if (!st.deletes) continue;
    for (int r = 0; r < outcome.result.rows(); ++r) {
      std::size_t ord = 0;
      for (char ch : outcome.result.value(r, 0))
        ord = ord * 10 + static_cast<std::size_t>(ch - '0');
      if (ord >= 1 && ord <= st.rows.size()) out[st.rows[ord - 1]].existed = true;
    }
  }
  co_return pg::PgError{};
}

asio::awaitable<pg::PgError> WriteThrough::bisect(pg::Connection& c, const Keyspace& ks,
                                                  const std::vector<PendingRow>& rows,
                                                  std::vector<std::size_t> which,
                                                  std::vector<Outcome>& out) {
  const auto middle = which.begin() + static_cast<std::ptrdiff_t>(which.size() / 2);
  std::vector<std::vector<std::size_t>> halves{{which.begin(), middle}, {middle, which.end()}};
  for (auto& half : halves) {
    if (half.empty()) continue;
    if (auto e = (co_await c.query("SAVEPOINT larder_rows")).error) co_return e;
    pg::PgError error = co_await statements(c, ks, rows, half, out);
    if (!error) {
      if (auto e = (co_await c.query("RELEASE SAVEPOINT larder_rows")).error) co_return e;
      continue;
    }
    if (auto e = (co_await c.query("ROLLBACK TO SAVEPOINT larder_rows")).error) co_return e;
    for (std::size_t i : half) out[i].existed = false;  // rolled back with the half
    if (!splittable(error)) co_return error;
    if (half.size() == 1) {
      out[half.front()].refused = refusedReply(error);
      continue;
    }
    if (auto e = co_await bisect(c, ks, rows, std::move(half), out)) co_return e;
  }
  co_return pg::PgError{};
}

asio::awaitable<pg::PgError> WriteThrough::commit(pg::Connection& c, const Keyspace& ks,
                                                  const std::vector<PendingRow>& rows,
                                                  std::vector<Outcome>& out) {
  std::vector<std::size_t> all(rows.size());
  std::iota(all.begin(), all.end(), std::size_t{0});
  auto rollback = [&c]() -> asio::awaitable<void> {
    if (c.healthy()) co_await c.query("ROLLBACK");
  };
  if (auto e = (co_await c.script(kBeginOwnTransaction)).error) co_return e;
  pg::PgError error = co_await statements(c, ks, rows, all, out);
  if (error && splittable(error)) {
    co_await rollback();
    out.assign(rows.size(), Outcome{});
    if (rows.size() == 1) {
      out[0].refused = refusedReply(error);
      co_return pg::PgError{};
    }
    if ((error = (co_await c.script(kBeginOwnTransaction)).error)) co_return error;
    error = co_await bisect(c, ks, rows, all, out);
  }
  if (error) {
    co_await rollback();
    co_return error;
  }
  co_return (co_await c.query("COMMIT")).error;
}

asio::awaitable<void> WriteThrough::updateCache(const Keyspace& ks, std::vector<Item>& batch,
                                                std::vector<Outcome>& out,
                                                std::vector<std::string>& replies) {
  // Committed: no load read before the commit may be stored, and the cache
  // gets the new values, in one call of the write script (one per slot on a
  // cluster).
  std::vector<std::size_t> updated;
  std::vector<std::string_view> keys;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!replies[i].empty()) continue;
    loader_.forget(batch[i].write.key);
    updated.push_back(i);
    keys.push_back(batch[i].write.key);
  }
  // One call per slot on a cluster, all sent at once.
  const std::vector<std::vector<std::size_t>> groups = groupBySlot(keys, cache_->sharded());
  std::vector<WriteCall> calls;
  std::vector<std::string> requests;
  for (const std::vector<std::size_t>& group : groups) {
    WriteCall& update = calls.emplace_back('c', config_.invalidation.publish_channel, 0);
    for (std::size_t j : group) {
      const ThroughWrite& w = batch[updated[j]].write;
      update.add(w.key, ks.name(), w.op, false, ks.hardTtlMs(ks.ttl_ms.get()), w.op_args);
    }
    requests.push_back(update.request(false));
  }
  std::vector<std::string> results = co_await redis::callAll(*cache_, std::move(requests));
  for (std::size_t g = 0; g < groups.size(); ++g) {
    if (results[g].rfind("-NOSCRIPT", 0) == 0) {
      results[g] = co_await redis::call(*cache_, calls[g].request(true));
    }
  }
  // The row is committed; a cache that cannot take it loses the key.
  std::vector<std::string> dropped;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const std::vector<std::size_t>& group = groups[g];
    const std::vector<std::string_view> elements = splitWriteReplies(results[g]);
    for (std::size_t e = 0; e < group.size(); ++e) {
      const std::size_t i = updated[group[e]];
      const ThroughWrite& w = batch[i].write;
      const std::string_view element =
          elements.size() == group.size() ? elements[e] : std::string_view();
      if (w.op == "del") {
        resp::appendInteger(replies[i], out[i].existed ? 1 : 0);
      } else if (element.empty() || element.front() == '-') {
        dropped.push_back(w.key);
        replies[i] = defaultReply(w);
      } else {
        replies[i] = std::string(element);
      }
    }
  }
  // DEL of many keys: a cluster's router splits it per slot.
  if (!dropped.empty()) {
    std::string del;
    std::vector<std::string_view> args{"DEL"};
    args.insert(args.end(), dropped.begin(), dropped.end());
    resp::appendMultibulk(del, args);
    co_await redis::call(*cache_, std::move(del));
  }
}

asio::awaitable<std::string> WriteThrough::admission(const Keyspace& ks) {
  if (!admission_) co_return std::string();
  const auto deadline = Clock::now() + kFirstAuditWait;
  for (;;) {
    std::optional<std::string> verdict = admission_(ks.id);
    if (verdict) co_return std::move(*verdict);
    if (Clock::now() >= deadline) co_return errors::keyspaceUnchecked(ks.name());
    asio::steady_timer pause(context_, kAdmissionPoll);
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

asio::awaitable<void> WriteThrough::run(int keyspace) {
  const Keyspace& ks = registry_.at(static_cast<std::size_t>(keyspace));
  ThroughStats& stats = *stats_[keyspace];
  auto& queue = queues_[keyspace];
  while (!queue.empty()) {
    const std::string refused = co_await admission(ks);
    if (!refused.empty()) {
      // Everything queued now, newer writes behind it included: in order.
      std::deque<Item> answered;
      answered.swap(queue);
      for (Item& item : answered) item.done(resp::errorReply(refused));
      continue;
    }
    // Distinct keys only: a second write to a key waits, so that each key's
    // writes commit (and reach the cache) in order.
    std::vector<Item> batch;
    std::unordered_set<std::string> keys;
    while (!queue.empty() && batch.size() < config_.write_behind.max_batch &&
           keys.insert(queue.front().write.key).second) {
      batch.push_back(std::move(queue.front()));
      queue.pop_front();
    }
    std::vector<PendingRow> rows;
    for (const auto& item : batch) {
      rows.push_back(PendingRow{item.write.key, item.write.key_values, item.write.change});
    }
    std::vector<Outcome> out(batch.size());
    std::vector<std::string> replies(batch.size());  // set: answered already
    auto [lease, error] = co_await pool_.acquire(config_.read_through.load_timeout);
    if (!error) error = co_await commit(*lease, ks, rows, out);
    lease = pg::Lease();
    if (error) {
      const std::string reply = transientFlushError(error)
                                    ? resp::errorReply(errors::postgresUnavailable(error.message))
                                    : refusedReply(error);
      for (auto& r : replies) r = reply;
      (transientFlushError(error) ? stats.failed : stats.refused).add(batch.size());
    } else {
      stats.commits.add();
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (out[i].refused.empty()) continue;
        replies[i] = out[i].refused;
        stats.refused.add();
      }
      co_await updateCache(ks, batch, out, replies);
    }
    const auto now = Clock::now();
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (!error && out[i].refused.empty()) stats.writes.add();
      stats.latency.observe(now - batch[i].since);
      batch[i].done(std::move(replies[i]));
    }
  }
  running_[keyspace] = false;
}

}  // namespace larder::cache
