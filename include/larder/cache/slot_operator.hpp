#pragma once
// The pure parts of LARDER PENDING and DEADLETTERS on a Redis Cluster, where
// a keyspace's queue and dead letters are one stream per slot (key_names.hpp):
//
//   chunks    the map's slot ranges cut into calls of at most 1024 slots,
//             each inside one range, so one node (the range's owner) runs
//             the read-only script that looks at all of them
//   ids       a stream id alone does not say which slot's dead letters it
//             is in: an operator sees and names one as <slot>/<stream id>,
//             e.g. 5474/1733500000000-0
//   oldest    LIST [count] across slots: which slots' streams to read, and
//             how many entries of each, to hold the `count` oldest
//
// No I/O: write_service_slots.cpp performs the calls.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "larder/cache/flush_plan.hpp"

namespace larder::cache {

// Slots per script call: the sweep's size (flusher_slots.cpp), about 0.5 us
// of Redis time per slot, so one call never holds a node long.
inline constexpr int kOperatorSlotsPerCall = 1024;

// [first, last] chunks of at most `per_call` slots, each inside one of
// `ranges` (inclusive ranges, as the map gives them), in the ranges' order.
std::vector<std::pair<int, int>> slotChunks(const std::vector<std::pair<int, int>>& ranges,
                                            int per_call = kOperatorSlotsPerCall);

// A dead letter's id on a cluster: "<slot>/<ms>-<seq>".
struct SlotEntryId {
  int slot = 0;
  StreamId id;
};
std::string slotEntryId(int slot, std::string_view stream_id);
// nullopt unless `text` is exactly <slot>/<ms>-<seq>: a decimal slot below
// 16384 and a complete stream id (no "-", "+", or ms alone: one entry is named).
std::optional<SlotEntryId> parseSlotEntryId(std::string_view text);

// One slot's dead-letter stream as a range script found it: non-empty.
struct SlotHead {
  int slot = 0;
  StreamId oldest;
  long long length = 0;
};
// How many entries to read from which slot to hold the `count` oldest over
// all of them. The slots in order of their oldest entry: the r-th (from 0)
// can hold at most count - r of the answer, since each slot before it has
// an older entry still; slots from the count-th on hold none.
struct SlotRead {
  int slot = 0;
  long long count = 0;
};
std::vector<SlotRead> planOldest(std::vector<SlotHead> heads, long long count);

}  // namespace larder::cache
