#pragma once
// Stampede control beyond the Loader's single-flight (docs/stampede.md).
//
//   lease    several instances miss the same cold key: the one whose
//            SET __larder:lease:<key> <token> NX PX <lease> succeeds loads it,
//            the others poll Redis until its fill lands (or the lease is gone).
//            A row that does not exist leaves the lease saying "absent" for the
//            keyspace's negative_ttl, so the others answer nil without a query.
//   refresh  a hit near (XFetch) or past (stale-while-revalidate) its soft
//            expiry answers at once and starts one background reload, which
//            takes the lease too, so one instance refreshes for all.
//
// The time the last load of a key took (XFetch's delta) is stored beside the
// value, in __larder:delta:<key>, with the value's TTL.
#include <string>
#include <string_view>

#include "larder/redis/script.hpp"

namespace larder::cache {

std::string leaseKey(std::string_view key);  // __larder:lease:<key>
std::string deltaKey(std::string_view key);  // __larder:delta:<key>

// What the lease holder leaves in the lease when the row does not exist.
inline constexpr std::string_view kLeaseAbsent = "absent";

// KEYS: per flight, its key, its lease key and its pending-write marker (an
// "absent" lease is not trusted while writes are pending). ARGV: token, lease ms, then
// per flight "l" (a load: a key that exists now needs no load) or "r" (a
// refresh). Reply: per flight 1 (won), 0 (held by another), 2 (held, the row
// is absent), 3 (the key exists now).
const redis::Script& leaseScript();
// KEYS: key, lease key, marker. ARGV: "s" or "h". Reply: [1, pttl, value or
// field, value, ...] when the key exists, else 2 (the holder found no row),
// 0 (the lease is still held) or -1 (no lease and no key).
const redis::Script& awaitFillScript();
// KEYS: lease key, delta key, key, marker. ARGV: token, outcome ("stored", "absent" or
// "release"), delta ms, ttl ms, negative ttl ms. Records the delta of a stored
// row and lets go of the lease if it is still this instance's; an absent row
// leaves it saying so for the negative ttl (the cross-instance negative cache).
const redis::Script& leaseDoneScript();
// KEYS: key, marker. ARGV: "s" or "h", ttl ms, "1" found / "0" not, then
// field, value pairs. Replaces a cached value with a reloaded row. Reply: 1
// stored, 2 the row is gone (key unlinked), 0 left alone (pending writes: the
// cache already holds them), -1 the key is gone (fill it as a miss instead).
const redis::Script& refreshScript();

// XFetch with a stale window. pttl_ms: the value's remaining TTL in Redis
// (hard TTL; -1 = none); stale_ms: the stale window at its end; delta_ms: how
// long loading it took; beta: XFetch's scale (0: off); u: uniform in (0, 1].
// True when this read should start a refresh.
bool shouldRefresh(long long pttl_ms, long long stale_ms, double delta_ms, double beta, double u);

}  // namespace larder::cache
