#include "larder/cache/write_service.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>

#include "larder/cache/write_scripts.hpp"
#include "larder/common/errors.hpp"
#include "larder/common/logging.hpp"
#include "larder/redis/call.hpp"
#include "larder/redis/slot.hpp"
#include "larder/resp/reply_value.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kRetryPage = 100;  // dead letters re-queued per script call

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

WriteService::WriteService(asio::io_context& context, pg::Pool& pool, Loader& loader,
                           const KeyspaceRegistry& registry, const config::Config& config,
                           std::shared_ptr<redis::BackendConnection> redis,
                           std::shared_ptr<redis::Route> cache,
                           std::function<std::vector<std::pair<int, int>>()> slot_ranges,
                           std::function<std::vector<PrimaryNode>()> primaries)
    : context_(context),
      pool_(pool),
      loader_(loader),
      registry_(registry),
      config_(config),
      redis_(std::move(redis)),
      cache_(cache),
      slot_ranges_(std::move(slot_ranges)),
      primaries_(std::move(primaries)),
      through_(context, pool, loader, registry, config, std::move(cache)) {
  if (redis_) {
    audit_ = std::make_unique<RedisAudit>(context_, registry_, config_, redis_,
                                          [this](int keyspace) { drainOldQueue(keyspace); });
  } else if (primaries_) {
    audit_ = std::make_unique<RedisAudit>(context_, registry_, config_, primaries_,
                                          [this](int keyspace) { drainOldQueue(keyspace); });
  }
  if (audit_) {
    through_.setAdmission([this](int keyspace) -> std::optional<std::string> {
      if (!audit_->queuesChecked()) return std::nullopt;
      const WriteRefusal why = audit_->refusal(keyspace);
      // NotDurable is about `behind` writes only.
      if (why != WriteRefusal::Draining && why != WriteRefusal::Stranded) return std::string();
      return refusalText(why, registry_.at(static_cast<std::size_t>(keyspace)).name());
    });
  }
  for (std::size_t i = 0; i < registry.size(); ++i) addKeyspace(registry.at(i));
}

WriteService::~WriteService() = default;

void WriteService::addKeyspace(const Keyspace& ks) {
  for (const auto& type : ks.key_types) {
    if (!Keyspace::keyTypeChecked(type)) {
      spdlog::warn(
          "keyspace {}: key column type {} may spell one value several ways; Larder does not "
          "check key spellings of this type, so two keys could name one row (docs/keyspaces.md)",
          ks.name(), type);
    }
  }
  if (ks.config.write != config::WriteMode::Behind) return;
  Flusher* f = flushers_.set(static_cast<std::size_t>(ks.id), makeFlusher(ks));
  f->onCacheDropped([this](int keyspace) { loader_.forgetKeyspace(keyspace); });
  if (started_) f->start();
}

std::unique_ptr<Flusher> WriteService::makeFlusher(const Keyspace& ks) {
  if (redis_) return std::make_unique<Flusher>(context_, ks, config_, redis_);
  // A cluster: a queue per slot, read through the cache's route.
  const auto id = static_cast<std::size_t>(ks.id);
  DirtySlots* dirty = dirty_.get(id);
  if (!dirty) dirty = dirty_.set(id, std::make_unique<DirtySlots>());
  return std::make_unique<Flusher>(context_, ks, config_, cache_, SlotQueues{dirty, slot_ranges_});
}

void WriteService::queued(int keyspace, std::string_view key) const {
  if (DirtySlots* dirty = dirty_.get(static_cast<std::size_t>(keyspace))) {
    dirty->mark(cluster::keySlot(key));
  }
}

void WriteService::drainOldQueue(int keyspace) {
  const Keyspace& ks = registry_.at(static_cast<std::size_t>(keyspace));
  if (Flusher* running = flushers_.get(static_cast<std::size_t>(keyspace))) {
    running->drainAgain();  // found again after its drain ended; else already draining
    return;
  }
  // On a cluster its slot queues, found by the flusher's sweeps (no worker
  // marks a slot of a keyspace that is not `behind`).
  Flusher* f = flushers_.set(static_cast<std::size_t>(keyspace), makeFlusher(ks));
  f->onCacheDropped([this](int id) { loader_.forgetKeyspace(id); });
  f->drainThenStop([this, keyspace] { audit_->drained(keyspace); });
  f->start();
}

void WriteService::start() {
  started_ = true;
  if (audit_) audit_->start();
  for (std::size_t i = 0; i < flushers_.capacity(); ++i) {
    if (Flusher* f = flushers_.get(i)) f->start();
  }
}

void WriteService::stop() {
  if (audit_) audit_->stop();
  for (std::size_t i = 0; i < flushers_.capacity(); ++i) {
    if (Flusher* f = flushers_.get(i)) f->stop();
  }
}

// --- write-through ---------------------------------------------------------

void WriteService::writeThrough(ThroughWrite write, ReplyFn done) {
  through_.write(std::move(write), std::move(done));
}

// --- operator commands -----------------------------------------------------

void WriteService::flushKeyspaces(std::vector<int> keyspaces, Clock::time_point deadline,
                                  std::function<void(bool)> done) {
  if (keyspaces.empty()) {
    for (std::size_t i = 0; i < flushers_.capacity(); ++i) {
      if (flushers_.get(i)) keyspaces.push_back(static_cast<int>(i));
    }
  }
  // A keyspace no longer `behind` has a flusher only to drain its old queue:
  // once that is done (not Draining) it has nothing to flush, and its
  // stopped flusher would answer false.
  std::erase_if(keyspaces, [this](int i) {
    const auto id = static_cast<std::size_t>(i);
    if (!flushers_.get(id)) return true;
    return registry_.at(id).config.write != config::WriteMode::Behind &&
           refusal(i) != WriteRefusal::Draining;
  });
  if (keyspaces.empty()) {
    done(true);
    return;
  }
  struct Join {
    std::size_t left;
    bool ok = true;
    std::function<void(bool)> done;
  };
  auto join = std::make_shared<Join>(Join{keyspaces.size(), true, std::move(done)});
  for (int i : keyspaces) {
    flushers_.get(static_cast<std::size_t>(i))->flush(deadline, [join](bool ok) {
      join->ok = join->ok && ok;
      if (--join->left == 0) join->done(join->ok);
    });
  }
}

void WriteService::drain(Clock::time_point deadline, std::function<void(bool)> done) {
  asio::post(context_, [this, deadline, done = std::move(done)]() mutable {
    flushKeyspaces({}, deadline, std::move(done));
  });
}

void WriteService::command(std::vector<std::string> args, ReplyFn done) {
  asio::post(context_, [this, args = std::move(args), done = std::move(done)]() mutable {
    const std::string sub = args.empty() ? std::string() : upper(args[0]);
    if (sub == "FLUSH" && args.size() <= 2) {
      std::vector<int> which;
      if (args.size() == 2) {
        const Keyspace* ks = registry_.byName(args[1]);
        if (!ks) {
          done(resp::errorReply(errors::noKeyspace(args[1])));
          return;
        }
        if (!flushers_.get(static_cast<std::size_t>(ks->id))) {
          done("+OK\r\n");
          return;
        }
        which.push_back(ks->id);
      }
      const auto limit = config_.write_behind.drain_timeout.count() > 0
                             ? config_.write_behind.drain_timeout
                             : std::chrono::milliseconds(10000);
      flushKeyspaces(std::move(which), Clock::now() + limit,
                     [done = std::move(done), limit](bool ok) {
                       done(ok ? std::string("+OK\r\n")
                               : resp::errorReply(errors::queueNotDrained(limit.count())));
                     });
      return;
    }
    if (sub == "PENDING" && args.size() == 1) {
      asio::co_spawn(context_, redis_ ? pending(std::move(done)) : pendingSlots(std::move(done)),
                     logEscaped("LARDER PENDING"));
      return;
    }
    if (sub == "DEADLETTERS" && args.size() >= 3) {
      asio::co_spawn(context_,
                     redis_ ? deadLetters(std::move(args), std::move(done))
                            : deadLettersSlots(std::move(args), std::move(done)),
                     logEscaped("LARDER DEADLETTERS"));
      return;
    }
    done(resp::errorReply(errors::kFlushUsage));
  });
}

asio::awaitable<void> WriteService::pending(ReplyFn done) {
  // A reload may add keyspaces while this waits on Redis: the ones there
  // now, as many as the header says.
  const std::size_t keyspaces = registry_.size();
  std::string out;
  resp::appendArrayHeader(out, keyspaces);
  for (std::size_t i = 0; i < keyspaces; ++i) {
    const Keyspace& ks = registry_.at(i);
    std::vector<std::string> keys{queueKey(ks.name()), deadLetterKey(ks.name())};
    const std::string reply =
        co_await redis::callScript(*redis_, pendingScript(), std::move(keys), {});
    resp::ReplyValue v;
    if (!resp::decodeReply(reply, v) || !v.isArray() || v.elements.size() != 4) {
      done(reply.size() > 0 && reply.front() == '-'
               ? reply
               : resp::errorReply(errors::operatorReply(reply)));
      co_return;
    }
    long long age = 0;
    if (const std::string& first = v.elements[1].str(); !first.empty()) {
      age = std::max(0LL, v.elements[2].integer - std::stoll(first.substr(0, first.find('-'))));
    }
    resp::appendArrayHeader(out, 8);
    resp::appendBulk(out, "keyspace");
    resp::appendBulk(out, ks.name());
    resp::appendBulk(out, "depth");
    resp::appendInteger(out, v.elements[0].integer);
    resp::appendBulk(out, "oldest_age_ms");
    resp::appendInteger(out, age);
    resp::appendBulk(out, "dead_letters");
    resp::appendInteger(out, v.elements[3].integer);
  }
  done(std::move(out));
}

asio::awaitable<void> WriteService::deadLetters(std::vector<std::string> args, ReplyFn done) {
  const Keyspace* ks = registry_.byName(args[1]);
  if (!ks) {
    done(resp::errorReply(errors::noKeyspace(args[1])));
    co_return;
  }
  const std::string dead = deadLetterKey(ks->name());
  const std::string action = upper(args[2]);
  if (action == "LIST" && args.size() <= 4) {
    const std::string count = args.size() == 4 ? args[3] : "100";
    std::string request;
    resp::appendMultibulk(request, {"XRANGE", dead, "-", "+", "COUNT", count});
    const std::string reply = co_await redis::call(*redis_, std::move(request));
    resp::ReplyValue v;
    if (!resp::decodeReply(reply, v) || !v.isArray()) {
      done(reply);
      co_return;
    }
    std::string out;
    resp::appendArrayHeader(out, v.elements.size());
    for (const auto& e : v.elements) {
      const auto& fields = e.elements[1].elements;
      resp::appendArrayHeader(out, 2 + fields.size());
      resp::appendBulk(out, "id");
      resp::appendBulk(out, e.elements[0].str());
      for (const auto& f : fields) resp::appendBulk(out, f.str());
    }
    done(std::move(out));
    co_return;
  }
  if (action == "RETRY" && args.size() == 4) {
    QueueNames names{queueKey(ks->name()), dead, deadKeysKey(ks->name())};
    const bool all = upper(args[3]) == "ALL";
    const Retried r = co_await retryDead(*redis_, std::move(names), args[3], all);
    if (!r.error.empty()) {
      done(r.error);
      co_return;
    }
    if (r.skipped > 0) {
      spdlog::info(
          "keyspace {}: {} dead letter(s) not retried: their key was written after they were "
          "refused (LARDER DEADLETTERS {} DROP removes them)",
          ks->name(), r.skipped, ks->name());
    }
    if (r.requeued > 0) loader_.forgetAllMissing();  // the retried rows may be created now
    std::string out;
    resp::appendInteger(out, r.requeued);
    done(std::move(out));
    co_return;
  }
  if (action == "DROP" && args.size() == 4) {
    if (upper(args[3]) == "ALL") {
      std::vector<std::string> keys{dead, deadKeysKey(ks->name())};
      std::vector<std::string> none;
      done(co_await redis::callScript(*redis_, dropDeadLettersScript(), std::move(keys),
                                      std::move(none)));
      co_return;
    }
    std::string request;
    resp::appendMultibulk(request, {"XDEL", dead, args[3]});
    done(co_await redis::call(*redis_, std::move(request)));
    co_return;
  }
  done(resp::errorReply(errors::kDeadLettersUsage));
}

asio::awaitable<WriteService::Retried> WriteService::retryDead(redis::Route& route,
                                                               QueueNames names, std::string id,
                                                               bool all) {
  // Oldest first, one page per script call: Redis never runs one long
  // script. Only dead letters present when the command began are looked at.
  Retried out;
  std::string start = id, stop = id;
  if (all) {
    std::string request;
    resp::appendMultibulk(request, {"XREVRANGE", names.dead, "+", "-", "COUNT", "1"});
    const std::string reply = co_await redis::call(route, std::move(request));
    resp::ReplyValue last;
    if (!resp::decodeReply(reply, last) || !last.isArray()) {
      out.error = resp::errorReply(errors::kNothingRetried);
      co_return out;
    }
    if (last.elements.empty()) co_return out;
    start = "-";
    stop = last.elements[0].elements[0].str();
  }
  for (;;) {
    // A page of dead letters is read first, so Larder names each key's marker.
    std::string read;
    resp::appendMultibulk(read,
                          {"XRANGE", names.dead, start, stop, "COUNT", std::to_string(kRetryPage)});
    const std::string entries = co_await redis::call(route, std::move(read));
    resp::ReplyValue page;
    if (!resp::decodeReply(entries, page) || !page.isArray()) {
      out.error = !entries.empty() && entries.front() == '-'
                      ? entries
                      : resp::errorReply(errors::operatorReply(entries));
      co_return out;
    }
    if (page.elements.empty()) break;
    std::vector<std::string> triples;
    for (const auto& e : page.elements) {
      if (e.elements.size() != 2) continue;
      const auto& fields = e.elements[1].elements;
      for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
        if (fields[i].str() != "k") continue;
        // On a cluster the script may touch only its slot's keys; a dead
        // letter naming a key of another slot is not Larder's, and is skipped.
        if (names.slot >= 0 && cluster::keySlot(fields[i + 1].str()) != names.slot) break;
        triples.push_back(e.elements[0].str());
        triples.push_back(fields[i + 1].str());
        triples.push_back(pendingMarker(fields[i + 1].str()));
        break;
      }
    }
    out.skipped += static_cast<long long>(page.elements.size() - triples.size() / 3);
    std::vector<std::string> keys{names.dead, names.queue, names.dead_keys};
    const std::string reply =
        co_await redis::callScript(route, requeueScript(), std::move(keys), std::move(triples));
    resp::ReplyValue v;
    if (!resp::decodeReply(reply, v) || !v.isArray() || v.elements.size() != 2) {
      out.error = reply.size() > 0 && reply.front() == '-'
                      ? reply
                      : resp::errorReply(errors::operatorReply(reply));
      co_return out;
    }
    out.requeued += v.elements[0].integer;
    out.skipped += v.elements[1].integer;
    if (!all || page.elements.size() < kRetryPage) break;
    start = "(" + page.elements.back().elements[0].str();
  }
  co_return out;
}

void WriteService::flushAllThenWipe(bool all_dbs, ReplyFn done) {
  asio::post(context_, [this, all_dbs, done = std::move(done)]() mutable {
    const auto limit = config_.write_behind.drain_timeout.count() > 0
                           ? config_.write_behind.drain_timeout
                           : std::chrono::milliseconds(10000);
    flushKeyspaces(
        {}, Clock::now() + limit, [this, all_dbs, done = std::move(done)](bool ok) mutable {
          if (!ok) {
            done(resp::errorReply(errors::kPendingNotFlushed));
            return;
          }
          asio::co_spawn(context_, wipe(all_dbs, std::move(done)), logEscaped("FLUSHALL"));
        });
  });
}

asio::awaitable<void> WriteService::wipe(bool all_dbs, ReplyFn done) {
  if (!redis_) {
    // A cluster: db 0 only, and SCAN sees one node's keys: each primary
    // wipes its own, on its own connection.
    const std::vector<PrimaryNode> nodes = primaries_ ? primaries_() : std::vector<PrimaryNode>{};
    if (nodes.empty()) {
      done(resp::errorReply(errors::kRedisNoAnswer));
      co_return;
    }
    for (const PrimaryNode& node : nodes) {
      const std::string error = co_await wipeNode(*node.route);
      if (!error.empty()) {
        done(error);
        co_return;
      }
    }
    done("+OK\r\n");
    co_return;
  }
  if (all_dbs) {
    // Other dbs hold no Larder keys: Redis' own FLUSHDB, db by db.
    std::string request;
    resp::appendMultibulk(request, {"CONFIG", "GET", "databases"});
    resp::ReplyValue v;
    const std::string reply = co_await redis::call(*redis_, std::move(request));
    long long databases = 16;
    if (resp::decodeReply(reply, v) && v.isArray() && v.elements.size() == 2) {
      databases = std::atoll(v.elements[1].str().c_str());
    }
    for (long long db = 0; db < databases; ++db) {
      if (db == config_.redis.db) continue;
      request.clear();
      const std::string index = std::to_string(db);
      resp::appendMultibulk(request, {"EVAL",
                                      "redis.call('SELECT', ARGV[1]) redis.call('FLUSHDB') "
                                      "return 1",
                                      "0", index});
      const std::string r = co_await redis::call(*redis_, std::move(request));
      if (r.empty() || r.front() == '-') {
        done(r.empty() ? resp::errorReply(errors::kRedisNoAnswer) : r);
        co_return;
      }
    }
  }
  const std::string error = co_await wipeNode(*redis_);
  done(error.empty() ? std::string("+OK\r\n") : error);
}

asio::awaitable<std::string> WriteService::wipeNode(redis::Route& node) {
  std::string cursor = "0";
  do {
    std::vector<std::string> args{cursor, "1000"};
    const std::string reply =
        co_await redis::callScript(node, wipeCacheScript(), {}, std::move(args));
    resp::ReplyValue v;
    if (!resp::decodeReply(reply, v) || v.type != resp::ReplyValue::Type::Bulk) {
      co_return reply.size() > 0 && reply.front() == '-'
          ? reply
          : resp::errorReply(errors::operatorReply(reply));
    }
    cursor = v.str();
  } while (cursor != "0");
  co_return std::string();
}

}  // namespace larder::cache
