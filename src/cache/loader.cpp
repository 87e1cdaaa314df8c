#include "larder/cache/loader.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <random>

#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kSweepEvery = std::chrono::milliseconds(20);
constexpr auto kLinger = std::chrono::milliseconds(20);

// Reports what the fill script said; the flight is dropped either way.
class FillSink : public redis::ReplySink {
 public:
  FillSink(std::function<void(std::string_view)> done) : done_(std::move(done)) {}
  void deliver(std::uint64_t, std::string_view frame) override { done_(frame); }

 private:
  std::function<void(std::string_view)> done_;
};

LoadResult errorResult(std::string text) {
  LoadResult r;
  r.status = LoadResult::Status::Error;
  r.error = std::move(text);
  return r;
}

}  // namespace

const char* Loader::fillScript() {
  // KEYS[1] the key, KEYS[2] its pending-write marker.
  // ARGV[1] "s" or "h", ARGV[2] TTL in ms (0: none), ARGV[3..] value or field/value pairs.
  return "if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then "
         "return 0 end "
         "if ARGV[1] == 's' then redis.call('SET', KEYS[1], ARGV[3]) "
         "else redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end "
         "if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
         "return 1";
}

std::string Loader::pendingMarker(std::string_view key) {
  return "__larder:pending:" + std::string(key);
}

Loader::Loader(asio::io_context& context, pg::Pool& pool, const KeyspaceRegistry& registry,
               const config::ReadThroughConfig& config)
    : context_(context), pool_(pool), config_(config), sweep_(context) {
  for (std::size_t i = 0; i < registry.size(); ++i) {
    stats_.push_back(std::make_unique<LoaderStats>());
    windows_.push_back(std::make_unique<asio::steady_timer>(context));
  }
  queued_.resize(registry.size());
}

Loader::~Loader() = default;

void Loader::load(const Keyspace& ks, std::string key, std::vector<std::string> key_values,
                  bool fill, LoadCallback done) {
  asio::post(context_, [this, &ks, key = std::move(key), kv = std::move(key_values), fill,
                        done = std::move(done)]() mutable {
    enqueue(ks, std::move(key), std::move(kv), fill, std::move(done));
  });
}

void Loader::forgetMissing(std::string key) {
  asio::post(context_, [this, key = std::move(key)] { negative_.erase(key); });
}

void Loader::enqueue(const Keyspace& ks, std::string key, std::vector<std::string> key_values,
                     bool fill, LoadCallback done) {
  LoaderStats& stats = *stats_[ks.id];
  if (auto it = flights_.find(key); it != flights_.end()) {
    stats.joins.add();
    const FlightPtr& flight = it->second;
    if (flight->answered) {
      done(flight->result);  // loaded, fill not yet acknowledged
    } else {
      flight->waiters.push_back({std::move(done), Clock::now()});
    }
    return;
  }
  if (negativeHit(key, ks)) {
    stats.negative_hits.add();
    done(LoadResult{});
    return;
  }
  // A key that cannot name a row (user:abc for a bigint id) needs no query.
  for (std::size_t i = 0; i < key_values.size(); ++i) {
    if (!ks.plausibleKeyValue(i, key_values[i])) {
      done(LoadResult{});
      return;
    }
  }
  auto flight = std::make_shared<Flight>();
  flight->ks = &ks;
  flight->key = key;
  flight->key_values = std::move(key_values);
  flight->fill = fill;
  flight->waiters.push_back({std::move(done), Clock::now()});
  flights_.emplace(std::move(key), flight);
  auto& queue = queued_[ks.id];
  queue.push_back(std::move(flight));
  if (!sweeping_) sweepDeadlines();

  if (queue.size() >= config_.max_batch) {
    windows_[ks.id]->cancel();
    dispatch(ks.id);
  } else if (queue.size() == 1) {
    auto& timer = *windows_[ks.id];
    timer.expires_after(config_.batch_window);
    timer.async_wait([this, id = ks.id](boost::system::error_code ec) {
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
        if (single)
          answer(flight, errorResult("ERR Larder: PostgreSQL refused the key: " + single.message));
      }
      error = {};
    }
  }
  if (error) {
    spdlog::warn("keyspace {}: loading {} key(s) failed: {}", ks.name(), batch.size(),
                 error.message);
    // 22xxx: PostgreSQL is up but refuses this key's text for the column type.
    const bool refused = error.sqlstate.rfind("22", 0) == 0;
    const LoadResult failed = errorResult((refused ? "ERR Larder: PostgreSQL refused the key: "
                                                   : "ERR Larder: PostgreSQL unavailable: ") +
                                          error.message);
    for (const auto& flight : batch) {
      answer(flight, failed);
      flights_.erase(flight->key);
    }
    co_return;
  }
  for (const auto& flight : batch) fillOrForget(flight);
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
  auto outcome =
      co_await connection.prepared("larder_load_" + std::to_string(ks.id), ks.load_sql, params);
  if (!outcome.ok()) {
    error = outcome.error;
    co_return;
  }
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
    const auto& flight = batch[ord - 1];
    if (flight->fill) result.ttl_ms = ttlWithJitter(ks);
    stats.rows_found.add();
    answer(flight, result);
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!found[i]) {
      rememberMissing(batch[i]->key, ks);
      answer(batch[i], LoadResult{});
    }
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

void Loader::fillOrForget(const FlightPtr& flight) {
  const LoadResult& r = flight->result;
  const bool storable =
      r.status == LoadResult::Status::Found && flight->fill && filler_ && filler_->ready();
  if (!storable) {
    flights_.erase(flight->key);
    return;
  }
  const Keyspace& ks = *flight->ks;
  std::vector<std::string_view> args{"EVAL", fillScript(), "2", flight->key};
  const std::string marker = pendingMarker(flight->key);
  args.push_back(marker);
  args.push_back(ks.isHash() ? "h" : "s");
  const std::string ttl = std::to_string(std::max(0LL, r.ttl_ms));
  args.push_back(ttl);
  std::size_t pairs = 0;
  for (std::size_t i = 0; i < r.values.size(); ++i) {
    if (!r.values[i]) continue;  // NULL columns are absent fields
    if (ks.isHash()) args.push_back(ks.value_columns[i]);
    args.push_back(*r.values[i]);
    ++pairs;
  }
  if (pairs == 0) {  // nothing Redis can hold (a NULL string, an all-NULL row)
    flights_.erase(flight->key);
    return;
  }
  std::string request;
  resp::appendMultibulk(request, args);
  LoaderStats& stats = *stats_[ks.id];
  auto sink = std::make_shared<FillSink>([this, flight, &stats](std::string_view reply) {
    if (reply == ":1\r\n") {
      stats.fills.add();
    } else if (reply == ":0\r\n") {
      stats.fills_skipped.add();
    } else {
      spdlog::debug("fill of {} failed: {}", flight->key, reply);
    }
    auto it = flights_.find(flight->key);
    if (it == flights_.end() || it->second != flight) return;
    if (reply == ":1\r\n") {
      // Linger a moment: a read that missed Redis just before the fill landed
      // may still be on its way here, and should join rather than query again.
      flight->filled_at = Clock::now();
    } else {
      flights_.erase(it);  // a newer write won: never hand out the loaded row again
    }
  });
  filler_->send(request, sink, 1);
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
    const auto limit = config_.load_timeout;
    const std::string message =
        "ERR Larder: PostgreSQL did not answer within " + std::to_string(limit.count()) + " ms";
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
  if (ks.config.negative_ttl.count() == 0) return false;
  auto it = negative_.find(key);
  if (it == negative_.end()) return false;
  if (Clock::now() < it->second) return true;
  negative_.erase(it);
  return false;
}

void Loader::rememberMissing(const std::string& key, const Keyspace& ks) {
  if (ks.config.negative_ttl.count() == 0) return;
  if (negative_.size() >= config_.negative_cache_entries) {
    const auto now = Clock::now();
    std::erase_if(negative_, [now](const auto& entry) { return entry.second <= now; });
    if (negative_.size() >= config_.negative_cache_entries) return;  // full of fresh entries
  }
  negative_[key] = Clock::now() + ks.config.negative_ttl;
}

long long Loader::ttlWithJitter(const Keyspace& ks) {
  const long long base = ks.config.ttl.count();
  if (base <= 0) return -1;
  const double jitter = ks.config.ttl_jitter;
  if (jitter <= 0) return base;
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::uniform_real_distribution<double> spread(-jitter, jitter);
  return std::max(1LL, static_cast<long long>(static_cast<double>(base) * (1.0 + spread(rng))));
}

}  // namespace larder::cache
