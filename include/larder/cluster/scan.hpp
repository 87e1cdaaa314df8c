#pragma once
// SCAN over every primary with one cursor. The cursor a client sees names the
// shard by a slot it owns (its first slot) and carries that node's own cursor:
//
//   client cursor = node cursor * 16384 + first slot of the shard
//   0             = start: the shard with the lowest first slot, node cursor 0
//
// When a node's cursor comes back 0, the client gets the next shard (the
// lowest first slot above this one) with node cursor 0, which is never 0
// itself; after the last shard, 0. Pure.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace larder::cluster {

struct ScanPosition {
  int slot = -1;  // -1: start at the first shard
  std::uint64_t node_cursor = 0;
};

// nullopt: not a cursor (Redis' "invalid cursor").
std::optional<ScanPosition> decodeCursor(std::string_view cursor);
// nullopt when the node cursor is too large to carry (above 2^50).
std::optional<std::uint64_t> encodeCursor(std::uint64_t node_cursor, int first_slot);

// SCAN's arguments with the node's cursor in place of the client's.
std::string scanRequest(std::span<const std::string_view> args, std::uint64_t node_cursor);

// A node's [cursor, [keys...]] reply: its cursor and the keys' frame.
bool splitScanReply(std::string_view frame, std::uint64_t& cursor, std::string_view& keys);
std::string scanReply(std::uint64_t cursor, std::string_view keys_frame);

}  // namespace larder::cluster
