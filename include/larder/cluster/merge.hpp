#pragma once
// The replies of a split or fanned-out request made into the one reply a
// single Redis would give (request_plan.hpp says which merge). Parts are in
// the order the request was split; the first error reply among them, in that
// order, is the answer when there is one. Pure.
//
//   MGET a b c -> part {a,c}: [1, 3]   part {b}: [2]   -> [1, 2, 3]
//   DEL a b c  -> :2, :1                               -> :3
//   INFO       -> node 1's text, with db0:keys=... summed over the nodes
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "larder/cluster/request_plan.hpp"

namespace larder::cluster {

// `positions[i]`: which keys of the original request part i holds (MGet
// only); `keys`: how many keys it had.
std::string mergeReplies(Merge merge, const std::vector<std::string>& replies,
                         const std::vector<std::vector<std::uint32_t>>& positions,
                         std::size_t keys);

// The elements of a RESP2 array reply, as frames; false when `frame` is not
// an array (or malformed).
bool arrayElements(std::string_view frame, std::vector<std::string_view>& out);

// INFO text (the bulk's contents) of several nodes: the first one's, its
// Keyspace section replaced by the sums of every node's.
std::string mergeInfoText(const std::vector<std::string_view>& texts);

}  // namespace larder::cluster
