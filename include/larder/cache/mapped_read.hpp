#pragma once
// A read of mapped keys: ask Redis first; for every mapped key Redis does not
// have, ask the Loader; then answer the client's slot with one reply built as
// Redis would have built it.
//
//   start(): send the sub-requests (the command itself; EXISTS first for hash
//            commands, whose nil cannot tell a missing key from a NULL column)
//   deliver(): all sub-replies in -> which mapped keys missed? -> Loader
//   onLoaded(): all loads in -> format -> session.deliver(tag, reply)
//
// When Redis is unreachable the op falls back to PostgreSQL alone (no fill).
//
// Near cache (docs/near_cache.md): a single-key read it can answer is served
// from the worker's NearCache when the key is there; otherwise the whole value
// (GET or HGETALL) and its PTTL are asked for, the reply is built from the
// value, and the value is kept when no invalidation came in between.
//
// Refresh (cache/stampede.hpp): on a keyspace with early_refresh or
// stale_while_revalidate, a single-key read also asks the key's PTTL and the
// delta stored beside it; a hit near or past its soft expiry is answered at
// once and asks the Loader for one background refresh.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "larder/cache/loader.hpp"
#include "larder/commands/handling.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::cache {

class ReadThroughHost;

// Which mapped read: the registry row's read column.
using ReadKind = commands::ReadKind;

// True when the command needs that keyspace shape (GET on a hash keyspace: no).
bool shapeFits(ReadKind kind, bool hash_keyspace);

class MappedRead : public redis::ReplySink, public std::enable_shared_from_this<MappedRead> {
 public:
  struct Key {
    std::size_t arg;                  // index in args
    const Keyspace* ks;               // nullptr: unmapped (MGET/EXISTS mixes)
    std::vector<std::string> values;  // primary-key values
  };

  MappedRead(ReadThroughHost& worker, std::shared_ptr<redis::ReplySink> client, std::uint64_t tag,
             ReadKind kind, std::vector<std::string> args, std::vector<Key> keys);

  void start(redis::Route& route);
  void deliver(std::uint64_t sub, std::string_view frame) override;
  void fail(std::uint64_t sub, const redis::BackendFailure& failure) override;

 private:
  bool startNear(redis::Route& route);
  bool afterNear();
  void afterRedis();
  bool probesExpiry() const;
  // A hit: refresh it early (XFetch) or because it is stale, if it is time.
  // Returns the soft TTL left (ms; -1 none), for the near cache.
  long long maybeRefresh(long long pttl, std::string_view delta_frame);
  void onLoaded(std::size_t key, const LoadResult& result);
  void finish();
  std::string format() const;
  void answer(std::string_view reply);

  ReadThroughHost& worker_;
  std::shared_ptr<redis::ReplySink> client_;
  std::uint64_t tag_;
  ReadKind kind_;
  std::vector<std::string> args_;
  std::vector<Key> keys_;
  std::vector<std::string> replies_;  // one per sub-request
  std::size_t expected_ = 0;
  bool fallback_ = false;           // Redis down: PostgreSQL only
  std::vector<bool> missed_;        // per key
  std::vector<LoadResult> loaded_;  // per key
  std::size_t loads_pending_ = 0;
  bool near_ = false;   // the near-cache path: replies_ = {value, PTTL[, delta]}
  bool probe_ = false;  // replies_ ends with PTTL and the delta (refresh)
  std::uint64_t near_ticket_ = 0;
};

}  // namespace larder::cache
