#include "larder/cache/loader.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>

#include "larder/cache/key_names.hpp"
#include "larder/cache/stampede.hpp"
#include "larder/cache/write_scripts.hpp"
#include "larder/common/errors.hpp"
#include "larder/redis/call.hpp"
#include "larder/resp/reply_value.hpp"

namespace larder::cache {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kSweepEvery = std::chrono::milliseconds(20);
constexpr auto kLinger = std::chrono::milliseconds(20);
// A key refreshed a moment ago is not refreshed again before this.
constexpr auto kRefreshQuiet = std::chrono::milliseconds(100);
constexpr std::size_t kRefreshQuietMax = 4096;
// Waiting for another instance's fill: first poll after this, doubling to the max.
constexpr auto kPeerPollMin = std::chrono::milliseconds(2);
constexpr auto kPeerPollMax = std::chrono::milliseconds(50);
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

auto logFailure(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("{} failed: {}", what, ex.what());
    }
  };
}

LoadResult errorResult(std::string text) {
  LoadResult r;
  r.status = LoadResult::Status::Error;
  r.error = std::move(text);
  return r;
}

}  // namespace

Loader::Loader(asio::io_context& context, pg::Pool& pool, const config::ReadThroughConfig& config)
    : context_(context), pool_(pool), config_(config), sweep_(context) {
  // Sized for every keyspace a reload may add, so that readers on other
  // threads (stats) never see these vectors grow.
  for (std::size_t i = 0; i < config::kMaxKeyspaces; ++i) {
    stats_.push_back(std::make_unique<LoaderStats>());
    windows_.push_back(std::make_unique<asio::steady_timer>(context));
  }
  queued_.resize(config::kMaxKeyspaces);
  std::random_device random;
  lease_token_ = fmt::format("{:08x}{:08x}{:08x}", random(), random(), random());
}

Loader::~Loader() = default;

void Loader::load(const Keyspace& ks, std::string key, std::vector<std::string> key_values,
                  bool fill, LoadCallback done, For purpose) {
  asio::post(context_, [this, &ks, key = std::move(key), kv = std::move(key_values), fill,
                        done = std::move(done), purpose]() mutable {
    enqueue(ks, std::move(key), std::move(kv), fill, std::move(done), purpose);
  });
}

void Loader::forgetAsync(std::string key) {
  asio::post(context_, [this, key = std::move(key)] { forget(key); });
}

void Loader::enqueue(const Keyspace& ks, std::string key, std::vector<std::string> key_values,
                     bool fill, LoadCallback done, For purpose) {
  LoaderStats& stats = *stats_[ks.id];
  const bool for_write = purpose == For::Write;
  if (auto it = flights_.find(key); it != flights_.end()) {
    stats.joins.add();
    const FlightPtr& flight = it->second;
    flight->for_write = flight->for_write || for_write;
    if (flight->answered) {
      done(flight->result);  // loaded, fill not yet acknowledged
    } else {
      flight->waiters.push_back({std::move(done), Clock::now()});
    }
    return;
  }
  if (negativeHit(key, ks)) {
    stats.negative_hits.add();
    if (!fill || !filler_ || !filler_->ready()) {
      done(LoadResult{});
      return;
    }
    // "No such row" holds only while no write to the key is pending (another
    // instance may have written it, or its cached value was evicted): no
    // SELECT, but the fill script still looks at the key and its marker.
    FlightPtr flight =
        takeOff(ks, std::move(key), std::move(key_values), true, for_write, std::move(done));
    flight->queried_at = Clock::now();
    if (!sweeping_) sweepDeadlines();
    asio::co_spawn(context_, settle(std::move(flight)), logFailure("loader fill"));
    return;
  }
  // A key that cannot name a row (user:abc for a bigint id) needs no query.
  for (std::size_t i = 0; i < key_values.size(); ++i) {
    if (!ks.plausibleKeyValue(i, key_values[i])) {
      done(LoadResult{});
      return;
    }
  }
  schedule(takeOff(ks, std::move(key), std::move(key_values), fill, for_write, std::move(done)));
}

Loader::FlightPtr Loader::takeOff(const Keyspace& ks, std::string key,
                                  std::vector<std::string> key_values, bool fill, bool for_write,
                                  LoadCallback done) {
  auto flight = std::make_shared<Flight>();
  flight->ks = &ks;
  flight->key = key;
  flight->key_values = std::move(key_values);
  flight->fill = fill;
  flight->for_write = for_write;
  flight->waiters.push_back({std::move(done), Clock::now()});
  flights_.emplace(std::move(key), flight);
  return flight;
}

void Loader::refresh(const Keyspace& ks, std::string key, std::vector<std::string> key_values) {
  asio::post(context_, [this, &ks, key = std::move(key), kv = std::move(key_values)]() mutable {
    const auto now = Clock::now();
    if (flights_.count(key) != 0 || !filler_ || !filler_->ready()) return;
    if (auto it = refresh_quiet_.find(key); it != refresh_quiet_.end()) {
      if (now < it->second) return;
      refresh_quiet_.erase(it);
    }
    if (refresh_quiet_.size() >= kRefreshQuietMax) {
      std::erase_if(refresh_quiet_, [now](const auto& entry) { return entry.second <= now; });
      if (refresh_quiet_.size() >= kRefreshQuietMax) return;  // a storm: let TTLs do it
    }
    refresh_quiet_.emplace(key, now + kRefreshQuiet);
    stats_[ks.id]->refreshes.add();
    auto flight = std::make_shared<Flight>();
    flight->ks = &ks;
    flight->key = key;
    flight->key_values = std::move(kv);
    flight->fill = true;
    flight->refresh = true;
    flights_.emplace(std::move(key), flight);
    schedule(std::move(flight));
  });
}

void Loader::schedule(FlightPtr flight) {
  const int id = flight->ks->id;
  auto& queue = queued_[id];
  queue.push_back(std::move(flight));
  if (!sweeping_) sweepDeadlines();

  if (queue.size() >= config_.max_batch) {
    windows_[id]->cancel();
    dispatch(id);
  } else if (queue.size() == 1) {
    auto& timer = *windows_[id];
    timer.expires_after(config_.batch_window);
    timer.async_wait([this, id](boost::system::error_code ec) {
      if (!ec) dispatch(id);
    });
  }
}

void Loader::dispatch(int keyspace) {
  auto& queue = queued_[keyspace];
  while (!queue.empty()) {
    const std::size_t n = std::min(queue.size(), config_.max_batch);
    std::vector<FlightPtr> batch(std::make_move_iterator(queue.begin()),
                                 std::make_move_iterator(queue.begin() + n));
    queue.erase(queue.begin(), queue.begin() + n);
    asio::co_spawn(context_, runBatch(std::move(batch)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("loader batch failed: {}", ex.what());
      }
    });
  }
}

asio::awaitable<void> Loader::runBatch(std::vector<FlightPtr> batch) {
  const Keyspace& ks = *batch.front()->ks;
  LoaderStats& stats = *stats_[ks.id];
  const std::vector<Lease> leases = co_await takeLeases(batch);
  std::vector<FlightPtr> mine;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const FlightPtr& flight = batch[i];
    const Lease outcome = leases[i];
    if (outcome == Lease::NotAsked || outcome == Lease::Won) {
      flight->leased = outcome == Lease::Won;
      if (flight->leased) stats.leases_won.add();
      mine.push_back(flight);
    } else if (flight->refresh && flight->waiters.empty()) {
      drop(flight);  // another instance refreshes it, or it is gone: a miss loads it
    } else if (outcome == Lease::Absent) {
      rememberMissing(*flight);
      answer(flight, LoadResult{});
      drop(flight);
    } else {
      stats.leases_waited.add();
      const auto first = outcome == Lease::Present ? std::chrono::milliseconds(0) : kPeerPollMin;
      asio::co_spawn(context_, awaitPeer(flight, first), logFailure("waiting for a lease"));
    }
  }
  if (!mine.empty()) co_await loadBatch(std::move(mine));
}

asio::awaitable<std::vector<Loader::Lease>> Loader::takeLeases(
    const std::vector<FlightPtr>& batch) {
  std::vector<Lease> outcomes(batch.size(), Lease::NotAsked);
  const Keyspace& ks = *batch.front()->ks;
  const auto lease_ms = ks.lease_ms.get();
  if (lease_ms <= 0 || !filler_ || !filler_->ready()) co_return outcomes;
  std::vector<std::size_t> asked;
  std::vector<std::string_view> asked_keys;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i]->fill) continue;  // Redis was down at the miss: no lease to share
    asked.push_back(i);
    asked_keys.push_back(batch[i]->key);
  }
  // One script call per slot on a cluster (each names one slot's keys), all
  // sent at once.
  const std::vector<std::vector<std::size_t>> groups = groupBySlot(asked_keys, filler_->sharded());
  std::vector<redis::ScriptCall> calls;
  for (const std::vector<std::size_t>& group : groups) {
    redis::ScriptCall& call = calls.emplace_back();
    call.args = {lease_token_, std::to_string(lease_ms)};
    for (std::size_t j : group) {
      const Flight& flight = *batch[asked[j]];
      call.keys.push_back(flight.key);
      call.keys.push_back(leaseKey(flight.key));
      call.keys.push_back(pendingMarker(flight.key));
      call.args.emplace_back(flight.refresh ? "r" : flight.for_write ? "w" : "l");
    }
  }
  const std::vector<std::string> replies =
      co_await redis::callScriptEach(*filler_, leaseScript(), calls);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    resp::ReplyValue value;
    if (!resp::decodeReply(replies[g], value) || !value.isArray() ||
        value.elements.size() != groups[g].size()) {
      spdlog::debug("keyspace {}: no lease taken ({}); loading without", ks.name(), replies[g]);
      continue;
    }
    for (std::size_t j = 0; j < groups[g].size(); ++j) {
      const long long said = value.elements[j].integer;
      if (said >= 0 && said <= 3) outcomes[asked[groups[g][j]]] = static_cast<Lease>(said);
    }
  }
  co_return outcomes;
}

asio::awaitable<void> Loader::awaitPeer(FlightPtr flight, std::chrono::milliseconds first) {
  const Keyspace& ks = *flight->ks;
  LoaderStats& stats = *stats_[ks.id];
  const auto deadline = Clock::now() + config_.load_timeout;
  auto delay = first;
  asio::steady_timer timer(context_);
  while (!flight->answered && Clock::now() < deadline) {
    if (delay.count() > 0) {
      timer.expires_after(delay);
      co_await timer.async_wait(kUseTuple);
    }
    delay = std::clamp(delay * 2, kPeerPollMin, kPeerPollMax);
    if (flight->answered || flight->waiters.empty()) break;  // timed out meanwhile
    if (!filler_ || !filler_->ready()) break;                // load it here, below
    std::vector<std::string> keys{flight->key, leaseKey(flight->key), pendingMarker(flight->key)};
    std::vector<std::string> args{ks.isHash() ? "h" : "s"};
    const std::string reply =
        co_await redis::callScript(*filler_, awaitFillScript(), std::move(keys), std::move(args));
    resp::ReplyValue value;
    if (!resp::decodeReply(reply, value) || value.isError()) {
      if (reply.rfind("-WRONGTYPE", 0) == 0) {
        answer(flight, errorResult(reply.substr(1, reply.size() - 3)));
        drop(flight);
        co_return;
      }
      break;  // Redis could not say: load it here
    }
    if (value.isArray() && value.elements.size() >= 2) {
      LoadResult found = decodeRow(ks, value, 2);
      found.ttl_ms = value.elements[1].integer;
      stats.peer_fills.add();
      answer(flight, found);
      drop(flight);
      co_return;
    }
    if (value.integer == 2) {
      rememberMissing(*flight);
      answer(flight, LoadResult{});
      drop(flight);
      co_return;
    }
    if (value.integer == -1) {  // the holder let go without a value (failed, or crashed)
      const std::vector<FlightPtr> alone(1, flight);
      const std::vector<Lease> taken = co_await takeLeases(alone);
      if (taken[0] == Lease::Won || taken[0] == Lease::NotAsked) {
        flight->leased = taken[0] == Lease::Won;
        if (flight->leased) stats.leases_won.add();
        co_await loadBatch(alone);
        co_return;
      }
      if (taken[0] == Lease::Present) delay = std::chrono::milliseconds(0);
    }
  }
  if (flight->answered || flight->waiters.empty()) {
    drop(flight);
    co_return;
  }
  // The holder outlived load_timeout: the sweep answers the waiters with the
  // timeout error. Otherwise Redis went away while waiting: ask PostgreSQL.
  if (Clock::now() >= deadline) {
    drop(flight);
    co_return;
  }
  std::vector<FlightPtr> alone(1, flight);
  co_await loadBatch(std::move(alone));
}

LoadResult Loader::decodeRow(const Keyspace& ks, const resp::ReplyValue& reply,
                             std::size_t from) const {
  LoadResult row;
  row.status = LoadResult::Status::Found;
  row.values.assign(ks.value_columns.size(), std::nullopt);
  if (!ks.isHash()) {
    if (from < reply.elements.size()) row.values[0] = reply.elements[from].str();
    return row;
  }
  for (std::size_t i = from; i + 1 < reply.elements.size(); i += 2) {
    const int column = ks.field(reply.elements[i].str());
    if (column >= 0) row.values[column] = reply.elements[i + 1].str();
  }
  return row;
}

void Loader::drop(const FlightPtr& flight) {
  auto it = flights_.find(flight->key);
  if (it != flights_.end() && it->second == flight) flights_.erase(it);
}

asio::awaitable<void> Loader::loadBatch(std::vector<FlightPtr> batch) {
  const Keyspace& ks = *batch.front()->ks;
  auto [lease, acquire_error] = co_await pool_.acquire(config_.load_timeout);
  pg::PgError error = acquire_error;
  if (!error) {
    co_await query(*lease, batch, error);
    // One malformed key (22xxx: bad text for the column type) must not fail
    // its neighbours: ask for each key alone.
    if (error && batch.size() > 1 && error.sqlstate.rfind("22", 0) == 0) {
      for (const auto& flight : batch) {
        pg::PgError single;
        std::vector<FlightPtr> alone(1, flight);
        co_await query(*lease, alone, single);
        if (single) answer(flight, errorResult(errors::postgresRefusedKey(single.message)));
      }
      error = {};
    }
  }
  if (error) {
    spdlog::warn("keyspace {}: loading {} key(s) failed: {}", ks.name(), batch.size(),
                 error.message);
    // 22xxx: PostgreSQL is up but refuses this key's text for the column type.
    const bool refused = error.sqlstate.rfind("22", 0) == 0;
    const LoadResult failed = errorResult(refused ? errors::postgresRefusedKey(error.message)
                                                  : errors::postgresUnavailable(error.message));
    for (const auto& flight : batch) {
      if (flight->fill && filler_ && filler_->ready()) {
        // A key with pending writes that replace the whole row needs no
        // PostgreSQL: the marker alone answers (read-your-writes in an outage).
        flight->loaded = failed;
        asio::co_spawn(context_, settle(flight), logFailure("loader fill"));
      } else {
        answer(flight, failed);
        drop(flight);
      }
    }
    co_return;
  }
  for (const auto& flight : batch)
    asio::co_spawn(context_, settle(flight), logFailure("loader fill"));
}

asio::awaitable<void> Loader::query(pg::Connection& connection, const std::vector<FlightPtr>& batch,
                                    pg::PgError& error) {
  const Keyspace& ks = *batch.front()->ks;
  LoaderStats& stats = *stats_[ks.id];
  pg::Params params;
  for (std::size_t column = 0; column < ks.key_columns.size(); ++column) {
    std::vector<std::optional<std::string_view>> items;
    items.reserve(batch.size());
    for (const auto& flight : batch) items.emplace_back(flight->key_values[column]);
    params.emplace_back(pg::arrayLiteral(items));
  }
  stats.queries.add();
  stats.keys_queried.add(batch.size());
  const auto now = Clock::now();
  for (const auto& flight : batch) flight->queried_at = now;
  auto outcome =
      co_await connection.prepared("larder_load_" + std::to_string(ks.id), ks.load_sql, params);
  if (!outcome.ok()) {
    error = outcome.error;
    co_return;
  }
  const auto took = Clock::now() - now;
  for (const auto& flight : batch) flight->took = took;
  std::vector<bool> found(batch.size(), false);
  const pg::Result& rows = outcome.result;
  for (int r = 0; r < rows.rows(); ++r) {
    const std::string_view ord_text = rows.value(r, 0);
    std::size_t ord = 0;
    for (char c : ord_text) ord = ord * 10 + static_cast<std::size_t>(c - '0');
    if (ord == 0 || ord > batch.size() || found[ord - 1]) continue;
    found[ord - 1] = true;
    LoadResult result;
    result.status = LoadResult::Status::Found;
    for (int c = 1; c < rows.columns(); ++c) {
      if (rows.isNull(r, c)) {
        result.values.emplace_back(std::nullopt);
      } else {
        result.values.emplace_back(std::string(rows.value(r, c)));
      }
    }
    stats.rows_found.add();
    batch[ord - 1]->loaded = std::move(result);
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!found[i]) batch[i]->loaded = LoadResult{};
  }
}

void Loader::answer(const FlightPtr& flight, const LoadResult& result) {
  if (flight->answered) return;
  flight->answered = true;
  flight->result = result;
  LoaderStats& stats = *stats_[flight->ks->id];
  const auto now = Clock::now();
  for (auto& w : flight->waiters) {
    if (result.status == LoadResult::Status::Error) stats.errors.add();
    stats.latency.observe(now - w.since);
    w.done(result);
  }
  flight->waiters.clear();
}

asio::awaitable<void> Loader::settle(FlightPtr flight) {
  if (flight->answered) {  // PostgreSQL refused this key: nothing to store
    drop(flight);
    co_await releaseLease(flight, "release", -1);
    co_return;
  }
  const Keyspace& ks = *flight->ks;
  LoaderStats& stats = *stats_[ks.id];
  LoadResult loaded = std::move(flight->loaded);
  const bool found = loaded.status == LoadResult::Status::Found;
  const bool unknown = loaded.status == LoadResult::Status::Error;  // PostgreSQL failed
  // A write since the load began (forget) or a load read too long ago: the
  // script still answers (pending writes, or the newer cached value), but
  // stores nothing.
  const bool store = flight->store && (unknown || Clock::now() - flight->queried_at < fill_window_);
  if (!flight->fill || !filler_ || !filler_->ready()) {
    // Redis is down: answer from PostgreSQL alone (pending writes are in Redis too).
    if (!found) rememberMissing(*flight);
    answer(flight, loaded);
    drop(flight);
    co_return;
  }
  loaded.ttl_ms = found || unknown ? cacheTtl(ks) : -1;
  if (flight->refresh && store && !unknown) {
    // Replace the cached value; a key that is gone meanwhile is filled below
    // as a miss would be, and pending writes leave the cached value alone.
    std::vector<std::string> args{ks.isHash() ? "h" : "s",
                                  std::to_string(std::max(0LL, loaded.ttl_ms)), found ? "1" : "0"};
    for (std::size_t i = 0; i < loaded.values.size(); ++i) {
      if (!loaded.values[i]) continue;
      args.push_back(ks.value_columns[i]);
      args.push_back(*loaded.values[i]);
    }
    std::vector<std::string> keys{flight->key, pendingMarker(flight->key)};
    const std::string replaced =
        co_await redis::callScript(*filler_, refreshScript(), std::move(keys), std::move(args));
    if (replaced == ":1\r\n" || replaced == ":2\r\n") {
      if (replaced == ":1\r\n") stats.refreshes_stored.add();
      if (!found) rememberMissing(*flight);
      answer(flight, loaded);
      drop(flight);
      const char* outcome = found ? "stored" : flight->for_write ? "release" : "absent";
      co_await releaseLease(flight, outcome, loaded.ttl_ms);
      co_return;
    }
  }
  std::vector<std::string> args{ks.isHash() ? "h" : "s",
                                store ? std::to_string(std::max(0LL, loaded.ttl_ms)) : "-1",
                                unknown ? "?"
                                : found ? "1"
                                        : "0"};
  if (unknown) args.push_back(std::to_string(ks.value_columns.size()));
  for (std::size_t i = 0; i < loaded.values.size(); ++i) {
    if (!loaded.values[i]) continue;  // NULL columns are absent fields
    args.push_back(ks.value_columns[i]);
    args.push_back(*loaded.values[i]);
  }
  std::vector<std::string> keys{flight->key, pendingMarker(flight->key)};
  const std::string reply =
      co_await redis::callScript(*filler_, fillScript(), std::move(keys), std::move(args));

  resp::ReplyValue value;
  bool stored = reply == ":1\r\n";
  if (stored) {
    stats.fills.add();
  } else if (reply == ":0\r\n" || reply == ":-1\r\n") {
    if (found) stats.fills_skipped.add();  // a newer write is in the cache
    if (!found && !unknown) rememberMissing(*flight);
  } else if (resp::decodeReply(reply, value) && value.isArray() && !value.elements.empty()) {
    // 2: pending writes decided the row; 3: a write landed since the miss and
    // the cached value is newer than anything loaded. Answer that.
    const bool current = value.elements[0].integer == 3;
    (current ? stats.fills_skipped : stats.pending_overlays).add();
    LoadResult decided;
    decided.ttl_ms = loaded.ttl_ms;
    if (value.elements.size() > 1) {
      decided.status = LoadResult::Status::Found;
      decided.values.assign(ks.value_columns.size(), std::nullopt);
      for (std::size_t i = 1; i + 1 < value.elements.size(); i += 2) {
        const int column = ks.isHash() ? ks.field(value.elements[i].str()) : 0;
        if (column >= 0) decided.values[column] = value.elements[i + 1].str();
      }
      stored = !current && store;
    }
    loaded = std::move(decided);
  } else {
    spdlog::debug("fill of {} failed: {}", flight->key, reply);
  }
  answer(flight, loaded);
  const bool absent = !unknown && loaded.status == LoadResult::Status::Missing;
  if (auto it = flights_.find(flight->key); it != flights_.end() && it->second == flight) {
    if (stored) {
      // Linger a moment: a read that missed Redis just before the fill landed
      // may still be on its way here, and should join rather than query again.
      flight->filled_at = Clock::now();
    } else {
      flights_.erase(it);  // never hand out this result again
    }
  }
  const char* outcome = stored ? "stored" : absent && !flight->for_write ? "absent" : "release";
  co_await releaseLease(flight, outcome, loaded.ttl_ms);
}

asio::awaitable<void> Loader::releaseLease(const FlightPtr& flight, const char* outcome,
                                           long long ttl_ms) {
  const Keyspace& ks = *flight->ks;
  const bool record_delta = std::string_view(outcome) == "stored" && ks.early_refresh.get() > 0;
  if (!flight->leased && !record_delta) co_return;
  if (!filler_ || !filler_->ready()) co_return;  // the lease runs out by itself
  flight->leased = false;
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(flight->took).count();
  std::vector<std::string> keys{leaseKey(flight->key), deltaKey(flight->key), flight->key,
                                pendingMarker(flight->key)};
  std::vector<std::string> args{lease_token_, outcome, std::to_string(std::max<long long>(1, took)),
                                std::to_string(ttl_ms), std::to_string(absentLeaseMs(ks))};
  const std::string reply =
      co_await redis::callScript(*filler_, leaseDoneScript(), std::move(keys), std::move(args));
  if (reply != ":1\r\n") spdlog::debug("lease of {} not released: {}", flight->key, reply);
}

void Loader::forget(const std::string& key) {
  negative_.erase(key);
  auto it = flights_.find(key);
  if (it == flights_.end()) return;
  it->second->store = false;  // loaded before the write: must not be stored
  flights_.erase(it);
}

void Loader::forgetKeyspace(int keyspace) {
  negative_.clear();
  std::erase_if(flights_, [keyspace](const auto& entry) {
    if (entry.second->ks->id != keyspace) return false;
    entry.second->store = false;
    return true;
  });
}

void Loader::sweepDeadlines() {
  sweeping_ = true;
  sweep_.expires_after(kSweepEvery);
  sweep_.async_wait([this](boost::system::error_code ec) {
    if (ec) {
      sweeping_ = false;
      return;
    }
    const auto now = Clock::now();
    const auto limit = config_.load_timeout + redis_wait_;
    const std::string message = redis_wait_.count() > 0 ? errors::loadTimeout(limit.count())
                                                        : errors::postgresTimeout(limit.count());
    std::erase_if(flights_, [now](const auto& entry) {
      const auto& filled = entry.second->filled_at;
      return filled && now - *filled >= kLinger;
    });
    for (auto& [key, flight] : flights_) {
      auto& waiters = flight->waiters;
      for (auto it = waiters.begin(); it != waiters.end();) {
        if (now - it->since < limit) {
          ++it;
          continue;
        }
        LoaderStats& stats = *stats_[flight->ks->id];
        stats.errors.add();
        stats.timeouts.add();
        it->done(errorResult(message));
        it = waiters.erase(it);
      }
    }
    if (flights_.empty()) {
      sweeping_ = false;
    } else {
      sweepDeadlines();
    }
  });
}

bool Loader::negativeHit(const std::string& key, const Keyspace& ks) {
  if (ks.negative_ttl_ms.get() == 0) return false;
  auto it = negative_.find(key);
  if (it == negative_.end()) return false;
  if (Clock::now() < it->second) return true;
  negative_.erase(it);
  return false;
}

void Loader::rememberMissing(const Flight& flight) {
  if (flight.for_write) return;  // the write follows at once
  const std::string& key = flight.key;
  const Keyspace& ks = *flight.ks;
  if (ks.negative_ttl_ms.get() == 0) return;
  // A fresh entry keeps its expiry: a negative hit confirmed by the fill
  // script must not keep the row "missing" forever.
  if (auto it = negative_.find(key); it != negative_.end() && Clock::now() < it->second) return;
  if (negative_.size() >= config_.negative_cache_entries) {
    const auto now = Clock::now();
    std::erase_if(negative_, [now](const auto& entry) { return entry.second <= now; });
    if (negative_.size() >= config_.negative_cache_entries) return;  // full of fresh entries
  }
  negative_[key] = Clock::now() + ks.negativeTtl();
}

long long Loader::absentLeaseMs(const Keyspace& ks) const {
  // A lease saying "absent" must die before a marker laid after it could:
  // readers trust the lease only while no marker exists, and a flushed
  // marker lingers longer than the fill window (flusher.hpp, markerLinger).
  // So no write ever has to remove the lease.
  return std::min<long long>(ks.negative_ttl_ms.get(), fill_window_.count());
}

long long Loader::cacheTtl(const Keyspace& ks) {
  const long long ttl = ttlWithJitter(ks);
  return ttl > 0 ? ks.hardTtlMs(ttl) : ttl;
}

long long Loader::ttlWithJitter(const Keyspace& ks) {
  const long long base = ks.ttl_ms.get();
  if (base <= 0) return -1;
  const double jitter = ks.ttl_jitter.get();
  if (jitter <= 0) return base;
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::uniform_real_distribution<double> spread(-jitter, jitter);
  return std::max(1LL, static_cast<long long>(static_cast<double>(base) * (1.0 + spread(rng))));
}

}  // namespace larder::cache
