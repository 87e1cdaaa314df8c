#pragma once
// Where a mapped key's internal keys would live on a cluster, so that each
// write script stays on one node (issue #15, item 5; docs/cluster.md,
// "Keyspaces on a cluster"). Not wired in yet: keyspaces are refused with a
// cluster until the write path uses it. Pure.
//
//   value   user:42                          slot S = keySlot("user:42")
//   marker  __larder:pending:{<T(S)>}user:42 slot S: T(S) is a short tag that hashes to S,
//   lease   __larder:lease:{<T(S)>}user:42   so any key (braces and all) gets S
//   queue   __larder:q:{<T(F)>}:users        one per keyspace and slot group G, in
//                                            the group's first slot F
//
// A write script touches slot S (value, marker, lease) and slot F (the
// queue): Redis Cluster runs it only on a node that owns both, with the
// script flag allow-cross-slot-keys. So a group is writable while one node
// owns all its slots (groupWhole); during a reshard that splits a group, its
// writes must be refused (TRYAGAIN) until the group is whole again. One
// flusher per queue reads it on the node that owns the group.
#include <string>
#include <string_view>
#include <vector>

#include "larder/cluster/slot_map.hpp"
#include "larder/redis/slot.hpp"

namespace larder::cluster {

class QueueLayout {
 public:
  // `groups` divides 16384 (1, 2, 4 ... 16384): contiguous equal ranges.
  explicit QueueLayout(int groups);

  int groups() const { return groups_; }
  int groupOf(int slot) const { return slot / width_; }
  int firstSlot(int group) const { return group * width_; }
  int lastSlot(int group) const { return (group + 1) * width_ - 1; }
  // __larder:q:{<tag of the group's first slot>}:<keyspace>
  std::string queueKey(std::string_view keyspace, int group) const;
  // The queue a write of `key` goes to.
  std::string queueKeyFor(std::string_view keyspace, std::string_view key) const;

  // One node owns every slot of `group`: its writes may run.
  bool groupWhole(const SlotMap& map, int group) const;
  // The groups `node` owns whole: the queues its flushers read.
  std::vector<int> groupsOwnedBy(const SlotMap& map, int node) const;

 private:
  int groups_;
  int width_;
};

}  // namespace larder::cluster
