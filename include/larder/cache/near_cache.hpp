#pragma once
// A worker's near cache: copies of mapped keys' values held in the worker
// thread, so that hot reads need no round trip to Redis. Pure (no I/O, the
// clock is an argument); NearCacheTracking keeps it right with Redis'
// server-assisted invalidation (docs/near_cache.md).
//
// The race it must not lose:
//
//   worker                              Redis
//   beginRead(k) -> ticket = seq        GET k  (old value)
//                                       SET k  by anyone -> invalidation of k
//   invalidate(k): pending k marked     (arrives on another socket, first)
//   finishRead(k, ticket) -> false      the old value is answered, not stored
//
// Every invalidation of a key with a read in flight, and every flush, takes a
// new sequence number; a reply is stored only when nothing newer than its
// ticket touched its key. A key is stored only while tracking is up.
//
// Per keyspace: a byte bound (LRU eviction) and a max TTL. Expiry is checked
// on lookup, and sweep() drops entries older than max_ttl in insertion order,
// so expired entries never hold memory longer than max_ttl.
#include <chrono>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "larder/cache/read_stats.hpp"
#include "larder/commands/handling.hpp"
#include "larder/config/config.hpp"

namespace larder::cache {

using ReadKind = commands::ReadKind;

// What an entry holds: the reply frame Redis gave for GET (a bulk string) or
// HGETALL (an array of field, value bulks), and where each field's frames are.
class NearValue {
 public:
  // nullopt when the frame is not a value worth keeping (nil, empty, error).
  static std::optional<NearValue> fromGet(std::string frame);
  static std::optional<NearValue> fromHGetAll(std::string frame);

  const std::string& frame() const { return frame_; }
  std::size_t fieldCount() const { return fields_.size(); }
  // The reply Redis would give to `kind` with `args` (the client's request),
  // for the reads near-cacheable() accepts.
  std::string reply(ReadKind kind, const std::vector<std::string>& args) const;
  std::size_t bytes() const { return frame_.size() + fields_.size() * sizeof(Field); }

 private:
  struct Field {
    std::uint32_t name;   // offset of the field name's bulk frame
    std::uint32_t value;  // offset of the value's bulk frame
    std::uint32_t end;    // end of the value's frame
  };
  std::string_view fieldName(const Field& f) const;  // the name's bytes
  std::string_view frameAt(std::uint32_t from, std::uint32_t to) const {
    return std::string_view(frame_).substr(from, to - from);
  }
  const Field* find(std::string_view name) const;

  std::string frame_;
  std::vector<Field> fields_;  // hash only
};

// True when `kind` with these arguments (exact arity: an arity error must
// still come from Redis) can be answered from a NearValue of that shape.
bool nearCacheable(ReadKind kind, std::size_t argc, bool hash_keyspace);

// A frame from the `__redis__:invalidate` subscription, as NearCacheTracking
// sees it.
struct InvalidationFrame {
  enum class Type {
    Keys,        // these keys changed
    FlushAll,    // FLUSHALL/FLUSHDB: everything changed (a nil payload)
    Subscribed,  // the subscription is confirmed
    Pong,        // a PING's answer in subscribed mode
    Other,
  };
  Type type = Type::Other;
  std::vector<std::string> keys;
};
InvalidationFrame parseInvalidationFrame(std::string_view frame);

class NearCache {
 public:
  using Clock = std::chrono::steady_clock;

  struct Keyspace {
    config::NearCacheConfig config;
    std::string prefix;  // the key template's literal prefix
  };

  // One per keyspace id at start; those with near_cache.enabled get a
  // partition. Counters go to stats.keyspace(id).
  NearCache(std::vector<Keyspace> keyspaces, ReadPathStats& stats);
  NearCache(const NearCache&) = delete;
  NearCache& operator=(const NearCache&) = delete;

  bool enabled(int ks) const;
  // Literal key prefixes of the near-cached keyspaces (for BCAST PREFIX).
  std::vector<std::string> prefixes() const;

  // Tracking up: lookups and stores allowed. Going down flushes.
  bool usable() const { return usable_; }
  void setUsable(bool up);

  // The live entry for `key`, or nullptr (missing, expired: dropped and
  // counted, or the cache is not usable). Marks it recently used.
  const NearValue* lookup(int ks, std::string_view key, Clock::time_point now);

  // A read of `key` is about to be sent to Redis; its reply may be stored
  // only with this ticket (finishRead). Only while usable().
  std::uint64_t beginRead(std::string_view key);
  // The read's reply is in. True when it may be stored: no invalidation of
  // `key` and no flush since beginRead, and still usable. Call once per
  // beginRead.
  bool finishRead(std::string_view key, std::uint64_t ticket);

  // Stores `value` for at most min(max_ttl, pttl_ms when >= 0). pttl_ms is
  // PTTL's answer: -1 no expiry, -2 (gone) stores nothing.
  void store(int ks, std::string_view key, NearValue value, long long pttl_ms,
             Clock::time_point now);

  // `key` changed (Redis said so, or this worker wrote it).
  void invalidate(std::string_view key);
  // Everything may have changed: the tracking connection was lost, FLUSHALL.
  void flush();
  // Drops entries older than their keyspace's max_ttl.
  void sweep(Clock::time_point now);

  std::size_t bytes(int ks) const;
  std::size_t entries(int ks) const;

  // Memory an entry is charged beyond its key and value (nodes, iterators).
  static constexpr std::size_t kEntryOverhead = 160;

 private:
  struct Entry;
  using Lru = std::list<Entry>;
  struct Entry {
    std::string key;
    int ks;
    NearValue value;
    std::size_t bytes;
    Clock::time_point inserted;
    Clock::time_point expires;
    std::list<Lru::iterator>::iterator fifo;  // position in the partition's insertion order
  };
  struct Partition {
    bool enabled = false;
    std::string prefix;
    std::size_t max_bytes = 0;
    Clock::duration max_ttl{};
    std::size_t bytes = 0;
    Lru lru;                        // front: most recently used
    std::list<Lru::iterator> fifo;  // front: oldest insertion
  };
  struct Pending {
    std::size_t readers = 0;
    std::uint64_t changed = 0;  // seq of the last invalidation while reads were in flight
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  enum class Why { Invalidation, Capacity, Ttl, Replaced, Flush };
  void erase(Lru::iterator it, Why why);
  Partition* partition(int ks);

  ReadPathStats& stats_;
  std::vector<Partition> partitions_;  // by keyspace id
  // std::hash<string_view> is not a "fast" hash to libstdc++: nodes cache it, so a
  // lookup compares keys only on a hash match.
  std::unordered_map<std::string_view, Lru::iterator> index_;
  std::unordered_map<std::string, Pending, Hash, std::equal_to<>> pending_;
  std::uint64_t seq_ = 0;
  std::uint64_t flushed_ = 0;  // seq of the last flush
  bool usable_ = false;
};

}  // namespace larder::cache
