#include "larder/cache/redis_audit.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "larder/cache/write_scripts.hpp"
#include "larder/common/errors.hpp"
#include "larder/common/logging.hpp"
#include "larder/redis/call.hpp"
#include "larder/resp/reply_value.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace asio = boost::asio;

namespace {

constexpr auto kPoll = std::chrono::milliseconds(250);
// A cluster's primaries are asked again this often (and at once when the
// map names other primaries: a failover).
constexpr auto kClusterAuditEvery = std::chrono::seconds(5);

std::string request(std::initializer_list<std::string_view> parts) {
  std::string out;
  resp::appendMultibulk(out, parts);
  return out;
}

// "role:master\r\n..." -> "master"
std::string infoField(std::string_view info, std::string_view name) {
  const std::string needle = std::string(name) + ":";
  auto at = info.find(needle);
  if (at == std::string_view::npos) return {};
  at += needle.size();
  auto end = info.find_first_of("\r\n", at);
  return std::string(info.substr(at, end == std::string_view::npos ? end : end - at));
}

}  // namespace

std::vector<std::string> persistenceRisks(const RedisPersistence& p) {
  std::vector<std::string> out;
  if (p.appendonly.empty()) {
    out.emplace_back(
        "Redis' persistence settings could not be read (CONFIG GET refused): what a Redis crash "
        "loses is unknown");
    return out;
  }
  if (p.appendonly != "yes") {
    out.emplace_back(
        "appendonly is no: a Redis restart loses every acknowledged write not yet in "
        "PostgreSQL (RDB snapshots, if any, bring back an older queue)");
  } else if (p.appendfsync == "no") {
    out.emplace_back(
        "appendfsync is no: a crash of the machine may lose the last ~30 s of acknowledged "
        "writes not yet in PostgreSQL");
  }
  if (p.maxmemory_policy.rfind("allkeys-", 0) == 0) {
    out.emplace_back("maxmemory-policy is " + p.maxmemory_policy +
                     ": under memory pressure Redis may evict write queues and pending-write "
                     "markers (use noeviction or a volatile-* policy)");
  }
  if (!p.role.empty() && p.role != "master") {
    out.emplace_back("role is " + p.role + ": Larder's writes go to a replica");
  }
  return out;
}

std::string refusalText(WriteRefusal why, const std::string& keyspace) {
  switch (why) {
    case WriteRefusal::NotDurable:
      return std::string(errors::kNotDurable);
    case WriteRefusal::Draining:
      return errors::keyspaceDraining(keyspace);
    case WriteRefusal::Stranded:
      return errors::keyspaceStranded(keyspace);
    case WriteRefusal::None:
      break;
  }
  return {};
}

RedisAudit::RedisAudit(asio::io_context& context, const KeyspaceRegistry& registry,
                       const config::Config& config,
                       std::shared_ptr<redis::BackendConnection> redis,
                       std::function<void(int)> drain)
    : context_(context),
      registry_(registry),
      config_(config),
      redis_(std::move(redis)),
      drain_(std::move(drain)),
      timer_(context),
      refusals_(new std::atomic<int>[config::kMaxKeyspaces]) {
  for (std::size_t i = 0; i < config::kMaxKeyspaces; ++i) refusals_[i].store(0);
  // Until Redis has been looked at, a required durability is not known.
  not_durable_.store(config.write_behind.require_durable_redis);
}

RedisAudit::RedisAudit(asio::io_context& context, const KeyspaceRegistry& registry,
                       const config::Config& config,
                       std::function<std::vector<PrimaryNode>()> primaries,
                       std::function<void(int)> drain)
    : context_(context),
      registry_(registry),
      config_(config),
      drain_(std::move(drain)),
      primaries_(std::move(primaries)),
      timer_(context),
      refusals_(new std::atomic<int>[config::kMaxKeyspaces]) {
  for (std::size_t i = 0; i < config::kMaxKeyspaces; ++i) refusals_[i].store(0);
  not_durable_.store(config.write_behind.require_durable_redis);
}

void RedisAudit::start() { asio::co_spawn(context_, run(), logEscaped("Redis audit")); }

void RedisAudit::stop() {
  stopping_ = true;
  timer_.cancel();
}

void RedisAudit::drained(int keyspace) {
  int expected = static_cast<int>(WriteRefusal::Draining);
  if (refusals_[keyspace].compare_exchange_strong(expected, 0)) {
    spdlog::info("keyspace {}: its old write queue is empty; writes are accepted again",
                 registry_.at(static_cast<std::size_t>(keyspace)).name());
  }
}

WriteRefusal RedisAudit::refusal(int keyspace) const {
  const int stored = refusals_[keyspace].load(std::memory_order_relaxed);
  if (stored != 0) return static_cast<WriteRefusal>(stored);
  if (not_durable_.load(std::memory_order_relaxed)) return WriteRefusal::NotDurable;
  return WriteRefusal::None;
}

std::string RedisAudit::strandedSummary() const {
  std::lock_guard lock(stranded_mutex_);
  return stranded_;
}

asio::awaitable<void> RedisAudit::run() {
  while (!stopping_) {
    if (primaries_) {
      co_await checkClusterPersistence();
      co_await checkClusterQueues();
      timer_.expires_after(kPoll);
      co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    // After every (re)connect: it may be another Redis (a failover).
    const std::uint64_t connects = redis_->connects();
    if (redis_->ready() && connects != audited_connect_) {
      if (co_await audit()) audited_connect_ = connects;
    } else if (redis_->ready() && queueRecheckDue()) {
      // Until an operator puts the keyspace back or deletes the queue.
      co_await checkQueues();
    }
    timer_.expires_after(kPoll);
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

bool RedisAudit::anyBehind() const {
  for (std::size_t i = 0; i < registry_.size(); ++i) {
    if (registry_.at(i).config.write == config::WriteMode::Behind) return true;
  }
  return false;
}

asio::awaitable<bool> RedisAudit::audit() {
  // Not `anyBehind() && !co_await ...` in one condition: GCC 12 miscompiles
  // a co_await after a call in a short-circuit (SIGILL).
  if (anyBehind()) {
    const bool read = co_await checkPersistence();
    if (!read) co_return false;
  }
  co_return co_await checkQueues();
}

asio::awaitable<bool> RedisAudit::checkPersistence() {
  RedisPersistence p;
  const bool read = co_await readPersistence(*redis_, p);
  if (!read) co_return false;
  const std::vector<std::string> risks = persistenceRisks(p);
  not_durable_.store(config_.write_behind.require_durable_redis && !risks.empty());
  report(config_.redis.address.toString(), p, risks);
  co_return true;
}

asio::awaitable<bool> RedisAudit::checkClusterPersistence() {
  if (!anyBehind()) co_return true;
  const std::vector<PrimaryNode> nodes = primaries_();
  std::string names;
  for (const PrimaryNode& n : nodes) names += n.name + " ";
  const auto now = std::chrono::steady_clock::now();
  if (nodes.empty() || (names == audited_primaries_ && now < next_cluster_audit_)) {
    co_return true;
  }
  bool risky = false;
  for (const PrimaryNode& n : nodes) {
    RedisPersistence p;
    const bool read = co_await readPersistence(*n.route, p);
    if (!read) co_return false;  // asked again at the next poll
    const std::vector<std::string> risks = persistenceRisks(p);
    report(n.name, p, risks);
    risky = risky || !risks.empty();
  }
  // Every primary holds queues: one that can lose writes is enough to refuse.
  not_durable_.store(config_.write_behind.require_durable_redis && risky);
  audited_primaries_ = std::move(names);
  next_cluster_audit_ = now + kClusterAuditEvery;
  co_return true;
}

asio::awaitable<bool> RedisAudit::readPersistence(redis::Route& route, RedisPersistence& p) {
  resp::ReplyValue v;
  // Requests built before co_await: GCC 12 mishandles braced lists inside it.
  std::string config_get =
      request({"CONFIG", "GET", "appendonly", "appendfsync", "maxmemory-policy"});
  const std::string reply = co_await redis::call(route, std::move(config_get));
  if (reply.empty()) co_return false;
  if (resp::decodeReply(reply, v) && v.isArray()) {
    for (std::size_t i = 0; i + 1 < v.elements.size(); i += 2) {
      const std::string name = v.elements[i].str();
      const std::string value = v.elements[i + 1].str();
      if (name == "appendonly") p.appendonly = value;
      if (name == "appendfsync") p.appendfsync = value;
      if (name == "maxmemory-policy") p.maxmemory_policy = value;
    }
  }
  resp::ReplyValue info;
  std::string info_request = request({"INFO", "replication"});
  const std::string replication = co_await redis::call(route, std::move(info_request));
  if (resp::decodeReply(replication, info) && info.type == resp::ReplyValue::Type::Bulk) {
    p.role = infoField(info.str(), "role");
  } else if (reply.front() == '-' && replication.front() == '-') {
    co_return false;  // the connection went away meanwhile
  }
  co_return true;
}

void RedisAudit::report(const std::string& name, const RedisPersistence& p,
                        const std::vector<std::string>& risks) {
  std::string all;
  for (const auto& r : risks) all += r + "\n";
  std::string& logged = logged_risks_[name];
  if (all == logged) return;  // once per distinct finding, not per reconnect
  const bool required = config_.write_behind.require_durable_redis;
  for (const auto& r : risks) {
    if (required) {
      spdlog::error("Redis {}: {}; behind writes are refused (write_behind.require_durable_redis)",
                    name, r);
    } else {
      spdlog::warn("Redis {}: {}", name, r);
    }
  }
  if (risks.empty() && !logged.empty()) {
    spdlog::info("Redis {}: persistence keeps acknowledged writes (appendonly {}, appendfsync {})",
                 name, p.appendonly, p.appendfsync);
  }
  logged = std::move(all);
}

}  // namespace larder::cache
