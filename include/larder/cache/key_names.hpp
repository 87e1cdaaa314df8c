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

// The per-keyspace keys of the write-behind queue a write of `key` belongs
// to, `kind` one of kQueue, kDeadLetters, kDeadKeys: __larder:<kind>:<keyspace>
// on one Redis; on a cluster one per keyspace and slot,
// __larder:<kind>:{<tag>}:<keyspace>, so a script naming them with the key
// stays in the key's slot. The write script derives the dead-keys name from
// the queue's the same way ('__larder:deadkeys:' .. queue minus '__larder:q:').
// Only write-through and cache-only writes run on a cluster so far, and
// neither touches the queue.
inline constexpr std::string_view kQueue = "q";
inline constexpr std::string_view kDeadLetters = "dead";
inline constexpr std::string_view kDeadKeys = "deadkeys";
std::string queueFamilyKey(std::string_view kind, std::string_view keyspace, std::string_view key);
inline std::string writeQueueKey(std::string_view keyspace, std::string_view key) {
  return queueFamilyKey(kQueue, keyspace, key);
}
// The same by slot, on a cluster: __larder:<kind>:{<tag of slot>}:<keyspace>.
std::string slotQueueKey(std::string_view kind, std::string_view keyspace, int slot);
// The keyspace a write queue's key names (slotQueueKey's and queueKey's
// inverse): "users" for __larder:q:{ikd}:users on a cluster and for
// __larder:q:users on one Redis; "" when `queue` is not a queue of the
// current layout.
std::string_view queueKeyspace(std::string_view queue);
// A cluster slot's Redis instance id (the one-Redis __larder:id, per slot):
// __larder:id:{<tag of slot>}. Set once by the flusher; a slot whose id
// changed was emptied (a node flushed or replaced), and its applied marks
// are for another queue.
std::string slotInstanceKey(int slot);
// The key a pending marker is for (pendingMarker's inverse); "" when
// `marker` is not one.
std::string_view keyOfMarker(std::string_view marker);

// Indexes of `keys` in groups that each share a slot, in first-seen order;
// one group of all when `sharded` is false (one Redis).
std::vector<std::vector<std::size_t>> groupBySlot(const std::vector<std::string_view>& keys,
                                                  bool sharded);

}  // namespace larder::cache
