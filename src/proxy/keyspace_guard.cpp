// Larder's reserved keys and the keys of mapped keyspaces, in every key
// position Redis' key specs give (docs/keyspaces.md lists the decisions):
//
//   a reserved key (__larder:...), any command, any db   -> refused
//   commands whose effect on keys their arguments do not show (Guard)
//                                                        -> refused or checked
//   a mapped key, in the keyspaces' db:
//     mapped read (GET, HGETALL, ...)                    -> the Loader on a miss
//     mapped write (SET, HSET, DEL, ...)                 -> the write path
//     any other command:
//       a data type the keyspace's shape does not hold   -> -WRONGTYPE
//       a key spec by which the key may change           -> refused (bypasses the write path)
//       read only (TYPE, STRLEN, DUMP, EVAL_RO ...)      -> Redis, as it is
#include <charconv>

#include "larder/cache/write_scripts.hpp"
#include "larder/common/errors.hpp"
#include "larder/proxy/pipeline.hpp"

namespace larder::proxy {

namespace {

using cache::kReservedPrefix;
using commands::Category;

bool reserved(std::string_view key) {
  return key.substr(0, kReservedPrefix.size()) == kReservedPrefix;
}

// False when the command works on a data type a key of this keyspace does not
// hold (LPUSH on any mapped key, GETRANGE on a hash keyspace's key).
bool typeFits(const commands::Command& command, bool hash_keyspace) {
  constexpr Category kTyped[] = {Category::String,      Category::Hash,      Category::List,
                                 Category::Set,         Category::Sortedset, Category::Stream,
                                 Category::Hyperloglog, Category::Geo,       Category::Bitmap};
  bool typed = false;
  for (Category c : kTyped) typed |= command.has(c);
  if (!typed) return true;  // generic: TYPE, DUMP, RENAME, EVAL ...
  return command.has(hash_keyspace ? Category::Hash : Category::String) &&
         !command.has(Category::Bitmap) && !command.has(Category::Hyperloglog);
}

// GET and friends need a string keyspace, HGET and friends a hash one;
// EXISTS, TTL and PTTL work on both.
bool shapeFits(commands::ReadKind kind, bool hash_keyspace) {
  using K = commands::ReadKind;
  switch (kind) {
    case K::Get:
    case K::GetEx:
    case K::MGet:
      return !hash_keyspace;
    case K::HGet:
    case K::HMGet:
    case K::HGetAll:
    case K::HExists:
    case K::HLen:
    case K::HKeys:
    case K::HVals:
      return hash_keyspace;
    default:
      return true;
  }
}

bool parseDb(std::string_view s, long long& db) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), db);
  return !s.empty() && ec == std::errc() && ptr == s.data() + s.size();
}

// Redis settings whose change decides what an acknowledged write survives,
// whether cached values and write queues stay in memory at all, or whether
// Larder can still log in.
constexpr std::string_view kGuardedSettings[] = {"appendonly",    "appendfsync", "save",
                                                 "dir",           "dbfilename",  "appendfilename",
                                                 "appenddirname", "maxmemory",   "maxmemory-policy",
                                                 "requirepass",   "aclfile"};

// The value of a write mode refusing a planned write; "" when it may go ahead.
std::string modeRefusal(const cache::WritePlan& plan, std::string_view command) {
  for (const auto& w : plan.writes) {
    if (w.cache_only) continue;  // EXPIRE and friends touch the cache only
    switch (w.ks->config.write) {
      case config::WriteMode::None:
        return errors::readOnlyKeyspace(w.ks->name());
      case config::WriteMode::Through:
        if (w.op == "getdel" || (w.op == "set" && w.needs_row)) {
          return errors::notWriteThrough(command, w.ks->name());
        }
        break;
      case config::WriteMode::Behind:
        break;
    }
  }
  return {};
}

}  // namespace

bool Pipeline::touchesReservedKey(const resp::Request& req, const commands::Command& command) {
  // Cheap first pass: most requests name no argument with the prefix at all.
  bool suspect = false;
  for (std::size_t i = 1; i < req.args.size() && !suspect; ++i) suspect = reserved(req.args[i]);
  if (!suspect) return false;
  commands::findKeys(command, req.args, keys_);
  for (const commands::KeyRef& k : keys_) {
    if (reserved(req.args[k.pos])) return true;
  }
  return false;
}

bool Pipeline::namesMappedKey(const resp::Request& req, const commands::Command& command) {
  commands::findKeys(command, req.args, keys_);
  for (const commands::KeyRef& k : keys_) {
    if (ports_.admin.keyspaces().match(req.args[k.pos], key_values_)) return true;
  }
  return false;
}

std::string Pipeline::guardKeys(const resp::Request& req, const commands::Command& command) {
  const cache::KeyspaceRegistry& registry = ports_.admin.keyspaces();
  const long long home = ports_.admin.config().redis.db;
  if (touchesReservedKey(req, command)) return std::string(errors::kReservedKey);
  const commands::Handling& h = command.handling;
  if (command.has(commands::Category::Scripting) && command.redis->spec_count > 0 &&
      ports_.admin.config().redis.client_acl_user.empty()) {
    // Without the client ACL user nothing stops a script at a reserved key.
    return errors::scriptsWithoutClientUser(req.args[0]);
  }
  switch (h.guard) {
    case commands::Guard::None:
      break;
    case commands::Guard::WithKeyspaces:
      return errors::refusedWithKeyspaces(req.args[0], h.refusal);
    case commands::Guard::ConfigSet:
      for (std::size_t i = 2; i < req.args.size(); i += 2) {
        for (std::string_view setting : kGuardedSettings) {
          if (commands::equalsLower(req.args[i], setting)) {
            return errors::refusedWithKeyspaces(
                "CONFIG SET " + std::string(setting),
                "Larder's write queues and its login depend on it (docs/keyspaces.md)");
          }
        }
      }
      break;
    case commands::Guard::MoveDb:
    case commands::Guard::CopyDb: {
      // MOVE key db / COPY src dst DB db: a key that lands in the keyspaces'
      // db from another one would be a mapped key nobody wrote.
      long long target = -1;
      std::size_t key = 1;
      if (h.guard == commands::Guard::MoveDb) {
        parseDb(req.args[2], target);
      } else {
        key = 2;
        for (std::size_t i = 3; i + 1 < req.args.size(); ++i) {
          if (commands::equalsLower(req.args[i], "db")) parseDb(req.args[i + 1], target);
        }
      }
      if (target == home && state_.db != home) {
        if (const cache::Keyspace* ks = registry.match(req.args[key], key_values_)) {
          return errors::notOnKeyspace(req.args[0], ks->name());
        }
      }
      break;
    }
  }
  if (state_.db != home) return {};  // other dbs hold no mapped keys
  if (h.read != commands::ReadKind::None || h.write != commands::WriteOp::None) return {};
  commands::findKeys(command, req.args, keys_);
  for (const commands::KeyRef& k : keys_) {
    const cache::Keyspace* ks = registry.match(req.args[k.pos], key_values_);
    if (ks == nullptr) continue;
    if (!typeFits(command, ks->isHash())) {
      ports_.admin.stats().keyspace(ks->id).refused.add();
      return std::string(errors::kWrongType);
    }
    if (k.flags & commands::kKeyWrites) {
      ports_.admin.stats().keyspace(ks->id).refused.add();
      return errors::notOnKeyspace(command.name(), ks->name());
    }
  }
  return {};
}

std::string Pipeline::refusalInTransaction(const resp::Request& req,
                                           const commands::Command& command) {
  const cache::KeyspaceRegistry& registry = ports_.admin.keyspaces();
  if (registry.empty()) return {};
  if (command.handling.local == commands::LocalCommand::FlushAll) {
    return errors::flushInMulti(req.args[0]);
  }
  if (std::string refusal = guardKeys(req, command); !refusal.empty()) return refusal;
  if (command.handling.write == commands::WriteOp::None ||
      state_.db != ports_.admin.config().redis.db) {
    return {};  // queued reads of mapped keys read the cache as it is
  }
  commands::findKeys(command, req.args, keys_);
  for (const commands::KeyRef& k : keys_) {
    if (const cache::Keyspace* ks = registry.match(req.args[k.pos], key_values_)) {
      return errors::writeInMulti(ks->name());
    }
  }
  return {};
}

// The near cache's fast path: a GET or HGETALL whose value the worker holds is
// answered from the value's frame, with no backend at all.
bool Pipeline::answerNear(const resp::Request& req, const commands::Command& command) {
  if (req.args.size() != 2 || !command.handling.near_fast) return false;
  const bool get = command.handling.read == commands::ReadKind::Get;
  const cache::Keyspace* ks = ports_.admin.keyspaces().match(req.args[1], key_values_);
  if (ks == nullptr || ks->isHash() == get) return false;
  const std::string* frame = ports_.reads.nearValue(*ks, req.args[1]);
  if (frame == nullptr) return false;  // counted as a near miss by the read
  ports_.admin.stats().keyspace(ks->id).near_hits.add();
  const std::uint64_t tag = queue_.reserve();
  mapped_read_end_ = tag + 1;
  complete(tag, *frame);
  return true;
}

bool Pipeline::routeMapped(const resp::Request& req, const commands::Command& command, Flow& flow) {
  const commands::Handling& h = command.handling;
  if (h.read == commands::ReadKind::None && h.write == commands::WriteOp::None) return false;
  // Keyspaces live in the configured db; other dbs hold no mapped keys.
  if (req.args.size() < 2 || state_.db != ports_.admin.config().redis.db) return false;
  flow = Flow::Continue;
  if (h.read != commands::ReadKind::None && answerNear(req, command)) return true;
  commands::findKeys(command, req.args, keys_);
  std::vector<MappedKey> keys;
  std::vector<std::size_t> positions;
  bool any = false;
  for (const commands::KeyRef& k : keys_) {
    const cache::Keyspace* ks = ports_.admin.keyspaces().match(req.args[k.pos], key_values_);
    positions.push_back(k.pos);
    MappedKey key{k.pos, ks, {}};
    if (ks) {
      any = true;
      key.values.assign(key_values_.begin(), key_values_.end());
    }
    keys.push_back(std::move(key));
  }
  if (!any) return false;
  if (h.write != commands::WriteOp::None) {
    flow = routeWrite(req, command, positions);
    return true;
  }
  // MGET never fails on a key of another type (Redis answers nil), so a hash
  // keyspace key in an MGET is left to Redis; single-key reads must fit.
  for (auto& key : keys) {
    if (key.ks && !shapeFits(h.read, key.ks->isHash())) {
      if (h.read == commands::ReadKind::MGet) {
        key.ks = nullptr;
        continue;
      }
      ports_.admin.stats().keyspace(key.ks->id).refused.add();
      replyError(errors::kWrongType);
      return true;
    }
  }
  const std::optional<Conn> conn = mappedConnection();
  if (!conn) {
    flow = Flow::Barrier;
    return true;
  }
  if (ports_.backend.saturated(*conn)) {
    flow = Flow::Saturated;
    return true;
  }
  const std::uint64_t tag = queue_.reserve();
  mapped_read_end_ = tag + 1;
  ports_.reads.read(*conn, h.read, req.args, std::move(keys), tag);
  return true;
}

Pipeline::Flow Pipeline::routeWrite(const resp::Request& req, const commands::Command& command,
                                    const std::vector<std::size_t>& keys) {
  cache::WritePlan plan = cache::planWrite(command, req.args, keys, ports_.admin.keyspaces());
  if (plan.error.empty()) plan.error = modeRefusal(plan, req.args[0]);
  if (!plan.error.empty()) {
    for (const auto& w : plan.writes) ports_.admin.stats().keyspace(w.ks->id).refused.add();
    replyError(plan.error);
    return Flow::Continue;
  }
  if (plan.writes.empty()) return forwardCurrent(req);
  // A read pipelined before this write may still be loading: if the write ran
  // first, the load would answer with it.
  if (!queue_.empty() && queue_.headTag() < mapped_read_end_) return Flow::Barrier;
  const std::optional<Conn> conn = mappedConnection();
  if (!conn) return Flow::Barrier;
  if (ports_.backend.saturated(*conn)) return Flow::Saturated;
  hold_ = ports_.reads.writeMayReorder(plan);
  const std::uint64_t tag = queue_.reserve();
  ports_.reads.write(*conn, std::move(plan), tag);
  return Flow::Continue;
}

}  // namespace larder::proxy
