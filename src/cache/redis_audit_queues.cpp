// The stranded-queue half of RedisAudit (redis_audit.hpp; docs/writes.md,
// "Queues nobody flushes any more"; docs/cluster.md): write queues that no
// keyspace of this config flushes any more.
//
//   scan     one Redis: SCAN MATCH __larder:q:*; a cluster: SCAN MATCH
//            __larder:q:{*}:* on each primary's own connection (a primary
//            holds the slot queues of its slots). Queues of `behind`
//            keyspaces are not read; the others' XLEN (a SCAN page's at
//            once) and one first entry per keyspace name
//   group    by the keyspace name in the key (queueKeyspace): a cluster's
//            slot queues of one keyspace, over every primary, are one finding
//   judge    per name, the same for both backends: still configured (through
//            or none now) -> Draining, and a flusher of its own drains them
//            and calls drained(); not configured -> the keyspace matching a
//            first entry's key is Stranded, the log says how to fix it,
//            /readyz names them
//   settle   Stranded is recomputed at each audit: a keyspace no stranded
//            queue holds keys of any more accepts writes again
#include <spdlog/spdlog.h>

#include "larder/cache/key_names.hpp"
#include "larder/cache/redis_audit.hpp"
#include "larder/cache/write_scripts.hpp"
#include "larder/redis/call.hpp"
#include "larder/redis/script.hpp"
#include "larder/redis/slot.hpp"
#include "larder/resp/reply_value.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace asio = boost::asio;

namespace {

// While a queue is stranded or draining, it is looked at again this often.
constexpr auto kRecheckEvery = std::chrono::seconds(5);

std::string queuePrefix() { return std::string(kReservedPrefix).append(kQueue).append(":"); }

// A cluster's primary: of the slot queues named in ARGV, how many it holds
// with entries, and their entries; the others (its slots or not) are skipped.
const redis::Script& slotQueuesOnNodeScript() {
  static const redis::Script s = redis::makeScript(R"lua(#!lua flags=no-writes,allow-cross-slot-keys
local queues, writes = 0, 0
for i = 1, #ARGV do
  local n = redis.pcall('XLEN', ARGV[i])
  if type(n) == 'number' and n > 0 then
    queues = queues + 1
    writes = writes + n
  end
end
return {queues, writes}
)lua");
  return s;
}

// The operator's fix on a cluster: delete every key matching `pattern` on
// every primary, one script per primary (it SCANs that primary's keys).
std::string clusterDeleteCommand(const std::string& seed, const std::string& pattern) {
  return "redis-cli --cluster call " + seed +
         " EVAL \"local c = '0' repeat local r = redis.call('SCAN', c, 'MATCH', ARGV[1], "
         "'COUNT', 1000) c = r[1] for _, k in ipairs(r[2]) do redis.call('UNLINK', k) end "
         "until c == '0' return 0\" 0 '" +
         pattern + "' --cluster-only-masters";
}

}  // namespace

bool RedisAudit::queueRecheckDue() const {
  if (std::chrono::steady_clock::now() < next_queue_check_) return false;
  for (std::size_t i = 0; i < config::kMaxKeyspaces; ++i) {
    const int why = refusals_[i].load();
    if (why == static_cast<int>(WriteRefusal::Draining) ||
        why == static_cast<int>(WriteRefusal::Stranded)) {
      return true;
    }
  }
  return !strandedSummary().empty();
}

asio::awaitable<bool> RedisAudit::checkQueues() {
  next_queue_check_ = std::chrono::steady_clock::now() + kRecheckEvery;
  // First each configured keyspace's own queue, one XLEN each: through
  // writes wait for this look (queuesChecked), not for the SCAN of every key.
  if (!queues_checked_.load()) {
    const bool looked = co_await checkSwitchedQueues();
    if (!looked) co_return false;
    queues_checked_.store(true, std::memory_order_release);
  }
  std::map<std::string, FoundQueues> found;
  const bool scanned = co_await scanQueues(*redis_, found);
  if (!scanned) co_return false;
  decide(found, "");
  co_return true;
}

asio::awaitable<bool> RedisAudit::checkSwitchedQueues() {
  QueueAudit unused;  // a configured keyspace is never stranded
  for (std::size_t i = 0; i < registry_.size(); ++i) {
    const Keyspace& ks = registry_.at(i);
    if (ks.config.write == config::WriteMode::Behind) continue;
    std::string xlen;
    resp::appendMultibulk(xlen, {"XLEN", queueKey(ks.name())});
    const std::string reply = co_await redis::call(*redis_, std::move(xlen));
    resp::ReplyValue length;
    if (!resp::decodeReply(reply, length) || length.type != resp::ReplyValue::Type::Integer) {
      co_return false;
    }
    if (length.integer > 0) {
      judge(FoundQueues{ks.name(), 1, length.integer, ""}, unused);
    }
  }
  co_return true;
}

asio::awaitable<bool> RedisAudit::checkSwitchedSlotQueues(const std::vector<PrimaryNode>& nodes) {
  QueueAudit unused;  // a configured keyspace is never stranded
  for (std::size_t k = 0; k < registry_.size(); ++k) {
    const Keyspace& ks = registry_.at(k);
    if (ks.config.write == config::WriteMode::Behind) continue;
    std::vector<std::string> names;
    names.reserve(cluster::kSlots);
    for (int slot = 0; slot < cluster::kSlots; ++slot) {
      names.push_back(slotQueueKey(kQueue, ks.name(), slot));
    }
    FoundQueues f{ks.name(), 0, 0, ""};
    const std::vector<std::string> no_keys;  // (no braced list inside co_await: GCC 12)
    for (const PrimaryNode& n : nodes) {
      const std::string reply =
          co_await redis::callScript(*n.route, slotQueuesOnNodeScript(), no_keys, names);
      resp::ReplyValue v;
      if (!resp::decodeReply(reply, v) || !v.isArray() || v.elements.size() != 2) {
        co_return false;
      }
      f.queues += static_cast<std::size_t>(v.elements[0].integer);
      f.writes += v.elements[1].integer;
    }
    spdlog::debug("keyspace {}: looked for its old slot write queues on {} primaries: {} write(s)",
                  ks.name(), nodes.size(), f.writes);
    if (f.writes > 0) judge(f, unused);
  }
  co_return true;
}

asio::awaitable<bool> RedisAudit::checkClusterQueues() {
  const std::vector<PrimaryNode> nodes = primaries_();
  if (nodes.empty()) co_return false;  // no map yet
  // First each configured keyspace's slot queues, one script per primary
  // and keyspace: through writes wait for this look (queuesChecked), not for
  // the SCAN of every key.
  if (!queues_checked_.load()) {
    const bool looked = co_await checkSwitchedSlotQueues(nodes);
    if (!looked) co_return false;
    queues_checked_.store(true, std::memory_order_release);
  }
  std::string names;
  for (const PrimaryNode& n : nodes) names += n.name + " ";
  // Not `names == ... && !queueRecheckDue()` around a co_await: plain bools.
  const bool same_primaries = names == queues_audited_on_;
  const bool due = queueRecheckDue();
  if (same_primaries && !due) co_return true;
  next_queue_check_ = std::chrono::steady_clock::now() + kRecheckEvery;
  std::map<std::string, FoundQueues> found;
  for (const PrimaryNode& n : nodes) {
    const bool scanned = co_await scanQueues(*n.route, found);
    if (!scanned) {
      spdlog::debug("looking for write queues on {}: no answer; again shortly", n.name);
      co_return false;  // asked again at the next poll
    }
  }
  decide(found, nodes.front().name);
  queues_audited_on_ = std::move(names);
  co_return true;
}

asio::awaitable<bool> RedisAudit::scanQueues(redis::Route& route,
                                             std::map<std::string, FoundQueues>& found) {
  const std::string pattern = queuePrefix() + (primaries_ ? "{*}:*" : "*");
  std::string cursor = "0";
  do {
    std::string scan;
    resp::appendMultibulk(scan, {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
    const std::string reply = co_await redis::call(route, std::move(scan));
    resp::ReplyValue page;
    if (!resp::decodeReply(reply, page) || !page.isArray() || page.elements.size() != 2) {
      co_return false;
    }
    cursor = page.elements[0].str();
    // A `behind` keyspace's queues are its flusher's: not read at all.
    std::vector<std::string> queues, lengths;
    for (const auto& element : page.elements[1].elements) {
      std::string queue = element.str();
      const std::string_view name = queueKeyspace(queue);
      if (name.empty()) continue;
      const Keyspace* ks = registry_.byName(name);
      if (ks && ks->config.write == config::WriteMode::Behind) continue;
      resp::appendMultibulk(lengths.emplace_back(), {"XLEN", queue});
      queues.push_back(std::move(queue));
    }
    if (queues.empty()) continue;
    const std::vector<std::string> replies = co_await redis::callAll(route, std::move(lengths));
    for (std::size_t i = 0; i < queues.size(); ++i) {
      resp::ReplyValue length;
      if (!resp::decodeReply(replies[i], length) ||
          length.type != resp::ReplyValue::Type::Integer) {
        co_return false;
      }
      if (length.integer <= 0) continue;  // empty: nothing stranded
      const std::string name(queueKeyspace(queues[i]));
      FoundQueues& f = found[name];
      f.keyspace = name;
      ++f.queues;
      f.writes += length.integer;
      if (!f.first_key.empty()) continue;
      // Whose keys these are: one first entry's key says it.
      std::string first_request;
      resp::appendMultibulk(first_request, {"XRANGE", queues[i], "-", "+", "COUNT", "1"});
      const std::string first_reply = co_await redis::call(route, std::move(first_request));
      resp::ReplyValue first;
      if (!resp::decodeReply(first_reply, first) || !first.isArray()) co_return false;
      if (first.elements.empty() || first.elements[0].elements.size() != 2) continue;
      const auto& fields = first.elements[0].elements[1].elements;
      for (std::size_t j = 0; j + 1 < fields.size(); j += 2) {
        if (fields[j].str() == "k") f.first_key = fields[j + 1].str();
      }
    }
  } while (cursor != "0" && !stopping_);
  co_return !stopping_;
}

void RedisAudit::decide(const std::map<std::string, FoundQueues>& found, std::string seed) {
  QueueAudit audit;
  audit.seed = std::move(seed);
  for (const auto& [name, f] : found) judge(f, audit);
  // Recomputed at every audit: a queue deleted since refuses nothing any more.
  for (std::size_t i = 0; i < config::kMaxKeyspaces; ++i) {
    int expected = static_cast<int>(WriteRefusal::Stranded);
    if (!audit.stranded_now[i] && refusals_[i].compare_exchange_strong(expected, 0)) {
      spdlog::info("keyspace {}: no old write queue holds its keys any more; writes accepted",
                   registry_.at(i).name());
    }
  }
  std::lock_guard lock(stranded_mutex_);
  stranded_ = std::move(audit.summary);
}

void RedisAudit::judge(const FoundQueues& f, QueueAudit& audit) {
  const Keyspace* ks = registry_.byName(f.keyspace);
  if (ks && ks->config.write == config::WriteMode::Behind) return;  // its flusher's
  const bool cluster = static_cast<bool>(primaries_);
  // One Redis: the queue's key; a cluster: the pattern of its slot queues.
  const std::string queue =
      cluster ? queuePrefix() + "{*}:" + f.keyspace : queuePrefix() + f.keyspace;
  const std::string queues =
      cluster ? std::to_string(f.queues) + " slot write queue(s) " + queue + " (on the primaries)"
              : "write queue " + queue;
  const char* hold = cluster ? "hold" : "holds";
  if (ks) {
    // Switched to through or none: its old writes go first, and its new
    // ones wait, or the old queue would put older values over them.
    int none = 0;
    if (refusals_[ks->id].compare_exchange_strong(none, static_cast<int>(WriteRefusal::Draining))) {
      spdlog::error(
          "keyspace {}: its {} still {} {} write(s) from when it was `write: behind`; flushing "
          "them to PostgreSQL now, refusing the keyspace's writes until that is done",
          f.keyspace, queues, hold, f.writes);
    }
    // Also when already draining: a drain that has ended runs again.
    if (refusals_[ks->id].load() == static_cast<int>(WriteRefusal::Draining)) drain_(ks->id);
    return;
  }
  // Removed or renamed: whose keys are these?
  std::vector<std::string_view> values;
  const Keyspace* owner = f.first_key.empty() ? nullptr : registry_.match(f.first_key, values);
  const std::string refused = owner ? ", and writes to keyspace '" + owner->name() +
                                          "' (whose keys they are) are refused meanwhile"
                                    : "";
  const std::string fix = cluster ? "delete every " + queue + " key on every primary: " +
                                        clusterDeleteCommand(audit.seed, queue)
                                  : "delete the queue: redis-cli DEL " + queue;
  spdlog::error(
      "{} {} {} write(s) of keyspace '{}', which is not in the config any more; they are "
      "neither applied nor dropped{}. Put the keyspace back (write: behind) until LARDER PENDING "
      "shows it empty, or {}",
      queues, hold, f.writes, f.keyspace, refused, fix);
  if (owner) {
    refusals_[owner->id].store(static_cast<int>(WriteRefusal::Stranded));
    audit.stranded_now[static_cast<std::size_t>(owner->id)] = true;
  }
  audit.summary +=
      queues + ": " + std::to_string(f.writes) + " write(s) of a keyspace not in the config\n";
}

}  // namespace larder::cache
