// Commands that name keys of a mapped keyspace: reads go through MappedRead
// (Redis, then the Loader on a miss); commands that make no sense on a mapped
// key are refused with -WRONGTYPE before anything is written anywhere.
#include <array>
#include <chrono>

#include "larder/cache/write_scripts.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/server/command_keys.hpp"
#include "larder/server/mapped_read.hpp"
#include "larder/server/near_cache.hpp"
#include "larder/server/session.hpp"
#include "larder/server/worker.hpp"

namespace larder::server {

namespace {

constexpr std::string_view kWrongType =
    "WRONGTYPE Operation against a key holding the wrong kind of value";
using cache::kReservedPrefix;

std::string_view lowerName(std::string_view name, std::array<char, 32>& buf) {
  if (name.size() > buf.size()) return {};
  for (std::size_t i = 0; i < name.size(); ++i) {
    buf[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
  }
  return {buf.data(), name.size()};
}

}  // namespace

bool Session::touchesReservedKey(const resp::Request& req) const {
  // Cheap first pass: most requests name no argument with the prefix at all.
  bool suspect = false;
  for (std::size_t i = 1; i < req.args.size() && !suspect; ++i) {
    suspect = req.args[i].substr(0, kReservedPrefix.size()) == kReservedPrefix;
  }
  if (!suspect) return false;
  std::array<char, 32> buf;
  const KeyedCommand keyed = keysOf(lowerName(req.args[0], buf), req.args);
  for (std::size_t index : keyed.keys) {
    if (req.args[index].substr(0, kReservedPrefix.size()) == kReservedPrefix) return true;
  }
  return false;
}

std::string Session::refusalInTransaction(const resp::Request& req) const {
  if (touchesReservedKey(req)) return "ERR Larder: keys under '__larder:' are reserved for Larder";
  const cache::KeyspaceRegistry& registry = worker_.server().keyspaces();
  if (registry.empty()) return {};
  std::array<char, 32> buf;
  const std::string_view name = lowerName(req.args[0], buf);
  if (name == "flushall" || name == "flushdb") {
    return "ERR Larder: " + std::string(req.args[0]) +
           " inside MULTI would bypass the write queue; run it outside MULTI";
  }
  if (req.args.size() < 2) return {};
  const KeyedCommand keyed = keysOf(name, req.args);
  if (keyed.access != MappedAccess::Write && keyed.access != MappedAccess::Other) return {};
  std::vector<std::string_view> values;
  for (std::size_t index : keyed.keys) {
    const cache::Keyspace* ks = registry.match(req.args[index], values);
    if (ks == nullptr) continue;
    if (keyed.access == MappedAccess::Other) return std::string(kWrongType);
    return "ERR Larder: writes to keyspace '" + ks->name() + "' cannot run inside MULTI";
  }
  return {};
}

// The near cache's fast path: a GET or HGETALL whose value the worker holds is
// answered from the value's frame, with no MappedRead, no copy of the request
// and no backend. Anything else goes the general way (MappedRead::startNear).
bool Session::answerNear(const resp::Request& req, std::string_view name) {
  NearCache* near = worker_.nearCache();
  if (near == nullptr || req.args.size() != 2) return false;
  const bool get = name == "get";
  if (!get && name != "hgetall") return false;
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

bool Session::routeMapped(const resp::Request& req, Flow& flow) {
  const cache::KeyspaceRegistry& registry = worker_.server().keyspaces();
  if (registry.empty() || req.args.size() < 2) return false;
  // Keyspaces live in the configured db; other dbs hold no mapped keys.
  if (db_ != worker_.config().redis.db) return false;
  std::array<char, 32> buf;
  const std::string_view name = lowerName(req.args[0], buf);
  if (name.empty()) return false;
  const KeyedCommand keyed = keysOf(name, req.args);
  if (keyed.access == MappedAccess::None || keyed.access == MappedAccess::RawRead) return false;
  if (keyed.access == MappedAccess::Read && answerNear(req, name)) {
    flow = Flow::Continue;
    return true;
  }

  std::vector<MappedRead::Key> keys;
  const cache::Keyspace* first_mapped = nullptr;
  for (std::size_t index : keyed.keys) {
    const cache::Keyspace* ks = registry.match(req.args[index], key_values_);
    MappedRead::Key key{index, ks, {}};
    if (ks) {
      if (!first_mapped) first_mapped = ks;
      key.values.assign(key_values_.begin(), key_values_.end());
    }
    keys.push_back(std::move(key));
  }
  if (!first_mapped) return false;

  flow = Flow::Continue;
  if (keyed.access == MappedAccess::Other) {
    worker_.stats().keyspace(first_mapped->id).refused.add();
    replyError(kWrongType);
    return true;
  }
  if (keyed.access == MappedAccess::Write) {
    flow = routeWrite(req, name, keyed.keys);
    return true;
  }

  ReadKind kind;
  if (!readKindOf(name, kind)) return false;
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
