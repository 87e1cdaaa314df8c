#pragma once
// The names of Larder's internal keys beside a mapped key, in one place.
//
//   one Redis      __larder:lease:user:42
//   Redis Cluster  __larder:lease:{<tag>}user:42   <tag> hashes to user:42's slot
//                                                  (redis/slot.hpp, slotTag)
//
// On a cluster every script touching a key and its lease, marker or delta
// then names keys of one slot, so it runs on one node, atomically. The layout
// is chosen once at start-up, before any thread runs (setNameLayout), from
// the config: redis.cluster.seeds or redis.address.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace larder::cache {

enum class NameLayout { OneRedis, Cluster };

void setNameLayout(NameLayout layout);
NameLayout nameLayout();

// "__larder:" + kind + ":" + key, or its tagged form on a cluster.
std::string internalKey(std::string_view kind, std::string_view key);

// The queue a write of `key` names in the write script: one per keyspace
// (__larder:q:<keyspace>) on one Redis; on a cluster one per keyspace and
// slot, __larder:q:{<tag>}:<keyspace>, so the script stays in the key's slot
// (the dead-keys name the script derives from it, too). Only write-through
// and cache-only writes run on a cluster so far, and neither touches it.
std::string writeQueueKey(std::string_view keyspace, std::string_view key);

// Indexes of `keys` in groups that each share a slot, in first-seen order;
// one group of all when `sharded` is false (one Redis).
std::vector<std::vector<std::size_t>> groupBySlot(const std::vector<std::string_view>& keys,
                                                  bool sharded);

}  // namespace larder::cache
