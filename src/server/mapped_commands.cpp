// Commands that name keys of a mapped keyspace or Larder's reserved keys.
// Where the keys are, and what the command does to each, comes from the
// registry row (Redis' key specs); what Larder does about it:
//
//   reserved key (__larder:...) in any key position    -> refused
//   mapped read (GET, HGETALL, ...)                     -> MappedRead (Loader on a miss)
//   mapped write (SET, HSET, DEL, ...)                  -> the write path
//   any other command on a mapped key:
//     a data type the keyspace shape does not have      -> -WRONGTYPE
//     a key spec that may change the key                -> refused (it would bypass the write path)
//     read only (TYPE, STRLEN, DUMP, EVAL_RO ...)       -> Redis, as it is
#include <array>
#include <chrono>

#include "larder/cache/write_scripts.hpp"
#include "larder/commands/keys.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/server/mapped_read.hpp"
#include "larder/server/near_cache.hpp"
#include "larder/server/session.hpp"
#include "larder/server/worker.hpp"

namespace larder::server {

namespace {

constexpr std::string_view kWrongType =
    "WRONGTYPE Operation against a key holding the wrong kind of value";
constexpr std::string_view kReservedKey =
    "ERR Larder: keys under '__larder:' are reserved for Larder";
using cache::kReservedPrefix;
using commands::Category;

bool reserved(std::string_view key) {
  return key.substr(0, kReservedPrefix.size()) == kReservedPrefix;
}

// False when the command works on a data type a key of this keyspace does
// not hold (LPUSH on any mapped key, GETRANGE on a hash keyspace's key).
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

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

bool Session::touchesReservedKey(const resp::Request& req, const commands::Command& command) {
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

std::string Session::refusalInTransaction(const resp::Request& req,
                                          const commands::Command& command) {
  const cache::KeyspaceRegistry& registry = worker_.server().keyspaces();
  if (registry.empty()) return {};
  if (touchesReservedKey(req, command)) return std::string(kReservedKey);
  if (command.handling.local == commands::LocalCommand::FlushAll) {
    return "ERR Larder: " + std::string(req.args[0]) +
           " inside MULTI would bypass the write queue; run it outside MULTI";
  }
  if (db_ != worker_.config().redis.db) return {};
  commands::findKeys(command, req.args, keys_);
  for (const commands::KeyRef& k : keys_) {
    const cache::Keyspace* ks = registry.match(req.args[k.pos], key_values_);
    if (ks == nullptr) continue;
    if (!typeFits(command, ks->isHash())) return std::string(kWrongType);
    if (command.handling.write != commands::WriteOp::None || (k.flags & commands::kKeyWrites)) {
      return "ERR Larder: writes to keyspace '" + ks->name() + "' cannot run inside MULTI";
    }
  }
  return {};
}

// The near cache's fast path: a GET or HGETALL whose value the worker holds is
// answered from the value's frame, with no MappedRead, no copy of the request
// and no backend. Anything else goes the general way (MappedRead::startNear).
bool Session::answerNear(const resp::Request& req, const commands::Command& command) {
  NearCache* near = worker_.nearCache();
  if (near == nullptr || req.args.size() != 2 || !command.handling.near_fast) return false;
  const bool get = command.handling.read == commands::ReadKind::Get;
  const cache::Keyspace* ks = worker_.server().keyspaces().match(req.args[1], key_values_);
  if (ks == nullptr || ks->isHash() == get || !near->enabled(ks->id)) return false;
  const NearValue* v = near->lookup(ks->id, req.args[1], std::chrono::steady_clock::now());
  if (v == nullptr) return false;  // counted as a near miss by MappedRead
  worker_.stats().keyspace(ks->id).near_hits.add();
  const std::uint64_t tag = queue_.reserve();
  mapped_read_end_ = tag + 1;
  deliver(tag, v->frame());
  return true;
}

bool Session::routeMapped(const resp::Request& req, const commands::Command& command, Flow& flow) {
  const cache::KeyspaceRegistry& registry = worker_.server().keyspaces();
  if (registry.empty() || req.args.size() < 2) return false;
  flow = Flow::Continue;
  if (touchesReservedKey(req, command)) {
    replyError(kReservedKey);
    return true;
  }
  // Keyspaces live in the configured db; other dbs hold no mapped keys.
  if (db_ != worker_.config().redis.db) return false;
  const commands::Handling& h = command.handling;
  if (h.read != commands::ReadKind::None && answerNear(req, command)) return true;
  commands::findKeys(command, req.args, keys_);
  if (keys_.empty()) return false;

  std::vector<MappedRead::Key> keys;
  std::vector<std::size_t> positions;
  const cache::Keyspace* first_mapped = nullptr;
  for (const commands::KeyRef& k : keys_) {
    const cache::Keyspace* ks = registry.match(req.args[k.pos], key_values_);
    positions.push_back(k.pos);
    MappedRead::Key key{k.pos, ks, {}};
    if (ks) {
      if (!first_mapped) first_mapped = ks;
      key.values.assign(key_values_.begin(), key_values_.end());
      if (h.read == commands::ReadKind::None && h.write == commands::WriteOp::None) {
        // Neither a mapped read nor a mapped write: Redis may run it only when
        // it reads the key as it is (docs/keyspaces.md).
        if (!typeFits(command, ks->isHash())) {
          worker_.stats().keyspace(ks->id).refused.add();
          replyError(kWrongType);
          return true;
        }
        if (k.flags & commands::kKeyWrites) {
          worker_.stats().keyspace(ks->id).refused.add();
          replyError("ERR Larder: " + upper(command.name()) +
                     " is not supported on keys of keyspace '" + ks->name() + "'");
          return true;
        }
      }
    }
    keys.push_back(std::move(key));
  }
  if (!first_mapped) return false;
  if (h.write != commands::WriteOp::None) {
    flow = routeWrite(req, command, positions);
    return true;
  }
  if (h.read == commands::ReadKind::None) return false;  // a raw read: Redis answers

  const ReadKind kind = h.read;
  // MGET never fails on a key of another type (Redis answers nil), so a hash
  // keyspace key in an MGET is left to Redis; single-key reads must fit.
  for (auto& key : keys) {
    if (key.ks && !shapeFits(kind, key.ks->isHash())) {
      if (kind == ReadKind::MGet) {
        key.ks = nullptr;
        continue;
      }
      worker_.stats().keyspace(key.ks->id).refused.add();
      replyError(kWrongType);
      return true;
    }
  }
  redis::BackendConnection* connection = currentConnection();
  if (connection == nullptr) {
    flow = Flow::Barrier;
    return true;
  }
  if (connection->saturated()) {
    flow = Flow::Saturated;
    return true;
  }
  const std::uint64_t tag = queue_.reserve();
  mapped_read_end_ = tag + 1;
  auto op = std::make_shared<MappedRead>(worker_, self(), tag, kind,
                                         std::vector<std::string>(req.args.begin(), req.args.end()),
                                         std::move(keys));
  op->start(*connection);
  return true;
}

}  // namespace larder::server
