#include "larder/cache/near_cache.hpp"

#include <catch2/catch.hpp>
#include <memory>

#include "larder/cache/mapped_read.hpp"

using larder::cache::NearCache;
using larder::cache::ReadPathStats;
using larder::cache::InvalidationFrame;
using larder::cache::NearValue;
using larder::cache::ReadKind;
using namespace std::chrono_literals;

namespace {

constexpr int kUsers = 0;  // hash keyspace, near-cached
constexpr int kNotes = 1;  // string keyspace, near-cached
constexpr int kPlain = 2;  // not near-cached

struct Fixture {
  ReadPathStats stats;
  std::unique_ptr<NearCache> cache;
  NearCache::Clock::time_point t0 = NearCache::Clock::now();

  explicit Fixture(std::size_t max_bytes = 1 << 20, larder::config::Millis max_ttl = 10s) {
    for (int i = 0; i < 3; ++i) {
      stats.keyspaces.push_back(std::make_unique<larder::cache::KeyspaceCounters>());
    }
    larder::config::NearCacheConfig on;
    on.enabled = true;
    on.max_bytes = max_bytes;
    on.max_ttl = max_ttl;
    larder::config::NearCacheConfig off;
    cache = std::make_unique<NearCache>(
        std::vector<NearCache::Keyspace>{{on, "user:"}, {on, "note:"}, {off, "plain:"}}, stats);
    cache->setUsable(true);
  }

  // A read that finds Redis' value and stores it, as MappedRead does.
  void fill(int ks, const std::string& key, const std::string& frame, long long pttl = -1,
            NearCache::Clock::duration at = 0s) {
    const auto ticket = cache->beginRead(key);
    REQUIRE(cache->finishRead(key, ticket));
    auto value = ks == kUsers ? NearValue::fromHGetAll(frame) : NearValue::fromGet(frame);
    REQUIRE(value);
    cache->store(ks, key, std::move(*value), pttl, t0 + at);
  }
};

const std::string kUser1 =
    "*6\r\n$4\r\nname\r\n$3\r\nAda\r\n$5\r\nemail\r\n$7\r\na@x.org\r\n$3\r\nage\r\n$2\r\n36\r\n";

}  // namespace

TEST_CASE("near cache: a stored value answers the reads it can", "[server][near_cache]") {
  Fixture f;
  f.fill(kUsers, "user:1", kUser1);
  f.fill(kNotes, "note:1", "$5\r\nhello\r\n");

  const NearValue* u = f.cache->lookup(kUsers, "user:1", f.t0);
  REQUIRE(u != nullptr);
  CHECK(u->reply(ReadKind::HGetAll, {"HGETALL", "user:1"}) == kUser1);
  CHECK(u->reply(ReadKind::HGet, {"HGET", "user:1", "email"}) == "$7\r\na@x.org\r\n");
  CHECK(u->reply(ReadKind::HGet, {"HGET", "user:1", "nope"}) == "$-1\r\n");
  CHECK(u->reply(ReadKind::HMGet, {"HMGET", "user:1", "age", "nope", "name"}) ==
        "*3\r\n$2\r\n36\r\n$-1\r\n$3\r\nAda\r\n");
  CHECK(u->reply(ReadKind::HExists, {"HEXISTS", "user:1", "age"}) == ":1\r\n");
  CHECK(u->reply(ReadKind::HExists, {"HEXISTS", "user:1", "x"}) == ":0\r\n");
  CHECK(u->reply(ReadKind::HLen, {"HLEN", "user:1"}) == ":3\r\n");
  CHECK(u->reply(ReadKind::HKeys, {"HKEYS", "user:1"}) ==
        "*3\r\n$4\r\nname\r\n$5\r\nemail\r\n$3\r\nage\r\n");
  CHECK(u->reply(ReadKind::HVals, {"HVALS", "user:1"}) ==
        "*3\r\n$3\r\nAda\r\n$7\r\na@x.org\r\n$2\r\n36\r\n");
  CHECK(u->reply(ReadKind::Exists, {"EXISTS", "user:1"}) == ":1\r\n");

  const NearValue* n = f.cache->lookup(kNotes, "note:1", f.t0);
  REQUIRE(n != nullptr);
  CHECK(n->reply(ReadKind::Get, {"GET", "note:1"}) == "$5\r\nhello\r\n");
  CHECK(f.cache->lookup(kNotes, "note:2", f.t0) == nullptr);
  CHECK(f.cache->entries(kUsers) == 1);
  CHECK(f.stats.keyspace(kNotes).near_entries.get() == 1);
  CHECK(f.stats.keyspace(kUsers).near_bytes.get() == f.cache->bytes(kUsers));
}

TEST_CASE("near cache: values worth keeping", "[server][near_cache]") {
  CHECK_FALSE(NearValue::fromGet("$-1\r\n"));
  CHECK_FALSE(NearValue::fromGet("-WRONGTYPE x\r\n"));
  CHECK(NearValue::fromGet("$0\r\n\r\n"));
  CHECK_FALSE(NearValue::fromHGetAll("*0\r\n"));
  CHECK_FALSE(NearValue::fromHGetAll("*1\r\n$1\r\na\r\n"));
  CHECK_FALSE(NearValue::fromHGetAll("%1\r\n$1\r\na\r\n$1\r\nb\r\n"));  // RESP3 map: not kept
  // Binary-safe field names and values.
  const std::string odd = "*2\r\n$4\r\na\r\nb\r\n$4\r\n\r\n\r\n\r\n";
  auto v = NearValue::fromHGetAll(odd);
  REQUIRE(v);
  CHECK(v->reply(ReadKind::HGet, {"HGET", "k", "a\r\nb"}) == "$4\r\n\r\n\r\n\r\n");
}

TEST_CASE("near cache: which reads are near-cacheable", "[server][near_cache]") {
  using larder::cache::nearCacheable;
  CHECK(nearCacheable(ReadKind::Get, 2, false));
  CHECK_FALSE(nearCacheable(ReadKind::Get, 2, true));
  CHECK_FALSE(nearCacheable(ReadKind::Get, 3, false));  // arity errors come from Redis
  CHECK(nearCacheable(ReadKind::HGet, 3, true));
  CHECK_FALSE(nearCacheable(ReadKind::HGet, 2, true));
  CHECK(nearCacheable(ReadKind::HMGet, 5, true));
  CHECK(nearCacheable(ReadKind::Exists, 2, true));
  CHECK_FALSE(nearCacheable(ReadKind::Exists, 3, true));
  CHECK_FALSE(nearCacheable(ReadKind::MGet, 2, false));
  CHECK_FALSE(nearCacheable(ReadKind::GetEx, 2, false));
  CHECK_FALSE(nearCacheable(ReadKind::Ttl, 2, false));
}

TEST_CASE("near cache: an invalidation during a read keeps its reply out", "[server][near_cache]") {
  Fixture f;
  const auto ticket = f.cache->beginRead("user:1");
  f.cache->invalidate("user:1");  // arrived before the (older) reply
  CHECK_FALSE(f.cache->finishRead("user:1", ticket));

  // Another key's invalidation does not matter; a read begun after does.
  const auto t2 = f.cache->beginRead("user:1");
  f.cache->invalidate("user:2");
  CHECK(f.cache->finishRead("user:1", t2));

  // Two reads in flight, invalidation between their starts: only the later may store.
  const auto a = f.cache->beginRead("user:1");
  f.cache->invalidate("user:1");
  const auto b = f.cache->beginRead("user:1");
  CHECK_FALSE(f.cache->finishRead("user:1", a));
  CHECK(f.cache->finishRead("user:1", b));

  // A flush (connection lost and back) spoils every read in flight.
  const auto c = f.cache->beginRead("user:3");
  f.cache->setUsable(false);
  f.cache->setUsable(true);
  CHECK_FALSE(f.cache->finishRead("user:3", c));
  // Unbalanced finish never stores.
  CHECK_FALSE(f.cache->finishRead("user:9", 0));
}

TEST_CASE("near cache: invalidation and flush drop entries", "[server][near_cache]") {
  Fixture f;
  f.fill(kUsers, "user:1", kUser1);
  f.fill(kUsers, "user:2", kUser1);
  f.fill(kNotes, "note:1", "$1\r\nx\r\n");
  f.cache->invalidate("user:1");
  f.cache->invalidate("other:1");
  CHECK(f.cache->lookup(kUsers, "user:1", f.t0) == nullptr);
  CHECK(f.cache->lookup(kUsers, "user:2", f.t0) != nullptr);
  CHECK(f.stats.keyspace(kUsers).near_evicted_invalidation.get() == 1);

  f.cache->flush();
  CHECK(f.cache->entries(kUsers) == 0);
  CHECK(f.cache->entries(kNotes) == 0);
  CHECK(f.cache->bytes(kUsers) == 0);
  CHECK(f.stats.keyspace(kUsers).near_bytes.get() == 0);
  CHECK(f.stats.keyspace(kUsers).near_entries.get() == 0);
  CHECK(f.stats.keyspace(kUsers).near_flushes.get() == 1);
  CHECK(f.stats.keyspace(kPlain).near_flushes.get() == 0);
}

TEST_CASE("near cache: not usable means no lookups and no stores", "[server][near_cache]") {
  Fixture f;
  f.fill(kNotes, "note:1", "$1\r\nx\r\n");
  CHECK(f.stats.near_tracking_up.get() == 1);
  f.cache->setUsable(false);
  CHECK(f.stats.near_tracking_up.get() == 0);
  CHECK(f.cache->lookup(kNotes, "note:1", f.t0) == nullptr);
  CHECK(f.cache->entries(kNotes) == 0);
  f.cache->store(kNotes, "note:2", *NearValue::fromGet("$1\r\ny\r\n"), -1, f.t0);
  CHECK(f.cache->entries(kNotes) == 0);
  // A keyspace without near_cache never stores.
  f.cache->setUsable(true);
  f.cache->store(kPlain, "plain:1", *NearValue::fromGet("$1\r\ny\r\n"), -1, f.t0);
  CHECK(f.cache->entries(kPlain) == 0);
  CHECK_FALSE(f.cache->enabled(kPlain));
  CHECK(f.cache->prefixes() == std::vector<std::string>{"user:", "note:"});
}

TEST_CASE("near cache: the byte bound evicts least recently used", "[server][near_cache]") {
  const std::string value = "$100\r\n" + std::string(100, 'v') + "\r\n";
  const std::size_t entry = NearCache::kEntryOverhead + 6 + value.size();  // "note:N"
  Fixture f(entry * 3);
  f.fill(kNotes, "note:1", value);
  f.fill(kNotes, "note:2", value);
  f.fill(kNotes, "note:3", value);
  CHECK(f.cache->lookup(kNotes, "note:1", f.t0) != nullptr);  // note:2 is now the oldest
  f.fill(kNotes, "note:4", value);
  CHECK(f.cache->entries(kNotes) == 3);
  CHECK(f.cache->bytes(kNotes) <= entry * 3);
  CHECK(f.cache->lookup(kNotes, "note:2", f.t0) == nullptr);
  CHECK(f.cache->lookup(kNotes, "note:1", f.t0) != nullptr);
  CHECK(f.stats.keyspace(kNotes).near_evicted_capacity.get() == 1);

  // A value bigger than the bound is never stored, and evicts nothing.
  const std::string huge = "$2000\r\n" + std::string(2000, 'h') + "\r\n";
  f.cache->store(kNotes, "note:9", *NearValue::fromGet(huge), -1, f.t0);
  CHECK(f.cache->lookup(kNotes, "note:9", f.t0) == nullptr);
  CHECK(f.cache->entries(kNotes) == 3);

  // Filling far past the bound keeps the gauge under it.
  for (int i = 10; i < 200; ++i) f.fill(kNotes, "note:" + std::to_string(i % 10), value);
  CHECK(f.stats.keyspace(kNotes).near_bytes.get() <= entry * 3);
}

TEST_CASE("near cache: entries live min(max_ttl, Redis TTL)", "[server][near_cache]") {
  Fixture f(1 << 20, 10s);
  f.fill(kNotes, "note:1", "$1\r\na\r\n", -1);      // no Redis TTL: max_ttl
  f.fill(kNotes, "note:2", "$1\r\nb\r\n", 2000);    // 2 s in Redis
  f.fill(kNotes, "note:3", "$1\r\nc\r\n", 60000);   // longer than max_ttl
  f.fill(kNotes, "note:4", "$1\r\nd\r\n", -1, 1s);  // stored a second later
  auto v = NearValue::fromGet("$1\r\ne\r\n");
  f.cache->store(kNotes, "note:5", std::move(*v), -2, f.t0);  // gone already: not kept
  CHECK(f.cache->entries(kNotes) == 4);

  CHECK(f.cache->lookup(kNotes, "note:2", f.t0 + 1999ms) != nullptr);
  CHECK(f.cache->lookup(kNotes, "note:2", f.t0 + 2s) == nullptr);
  CHECK(f.cache->lookup(kNotes, "note:1", f.t0 + 9999ms) != nullptr);
  CHECK(f.cache->lookup(kNotes, "note:1", f.t0 + 10s) == nullptr);
  CHECK(f.stats.keyspace(kNotes).near_evicted_ttl.get() == 2);

  // The sweep drops what nobody looks up, in insertion order.
  f.cache->sweep(f.t0 + 10s);
  CHECK(f.cache->entries(kNotes) == 1);  // note:4 was stored at t0 + 1 s
  f.cache->sweep(f.t0 + 11s);
  CHECK(f.cache->entries(kNotes) == 0);
  CHECK(f.stats.keyspace(kNotes).near_bytes.get() == 0);
  CHECK(f.stats.keyspace(kNotes).near_evicted_ttl.get() == 4);
}

TEST_CASE("near cache: a second store of a key replaces the first", "[server][near_cache]") {
  Fixture f;
  f.fill(kNotes, "note:1", "$1\r\na\r\n");
  f.fill(kNotes, "note:1", "$2\r\nbb\r\n");
  CHECK(f.cache->entries(kNotes) == 1);
  CHECK(f.cache->lookup(kNotes, "note:1", f.t0)->frame() == "$2\r\nbb\r\n");
  CHECK(f.stats.keyspace(kNotes).near_entries.get() == 1);
  CHECK(f.stats.keyspace(kNotes).near_evicted_invalidation.get() == 0);
}

TEST_CASE("near cache: invalidation messages", "[server][near_cache]") {
  using Type = InvalidationFrame::Type;
  auto keys = larder::cache::parseInvalidationFrame(
      "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*2\r\n$6\r\nuser:1\r\n$6\r\nuser:"
      "2\r\n");
  CHECK(keys.type == Type::Keys);
  CHECK(keys.keys == std::vector<std::string>{"user:1", "user:2"});
  CHECK(larder::cache::parseInvalidationFrame(
            "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n")
            .type == Type::FlushAll);
  CHECK(larder::cache::parseInvalidationFrame(
            "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*-1\r\n")
            .type == Type::FlushAll);
  CHECK(larder::cache::parseInvalidationFrame(
            "*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n")
            .type == Type::Subscribed);
  CHECK(larder::cache::parseInvalidationFrame("*2\r\n$4\r\npong\r\n$0\r\n\r\n").type ==
        Type::Pong);
  CHECK(larder::cache::parseInvalidationFrame("-ERR x\r\n").type == Type::Other);
  CHECK(larder::cache::parseInvalidationFrame("*3\r\n$7\r\nmessage\r\n").type == Type::Other);
}
