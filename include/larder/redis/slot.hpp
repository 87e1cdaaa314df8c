#pragma once
// Redis Cluster's key -> slot function: CRC16 (XMODEM: polynomial 0x1021,
// initial value 0) of the key, or of its hash tag, modulo 16384.
//
//   "user:{42}:name"  -> hash tag "42"  -> crc16("42") & 16383
//   "a{}b", "{"       -> no tag (empty or unclosed): the whole key
//   "x{a}{b}"         -> the first tag only: "a"
//
// Keys that share a tag share a slot, so multi-key commands on them can stay
// on one node. Pure. In redis/ rather than cluster/ because the cache layer
// names its internal keys with it too (cache/key_names.hpp).
#include <cstdint>
#include <string>
#include <string_view>

namespace larder::cluster {

inline constexpr int kSlots = 16384;

std::uint16_t crc16(std::string_view bytes);

// The part of `key` that is hashed: the hash tag when there is a non-empty
// one, else the whole key.
std::string_view hashTag(std::string_view key);

inline std::uint16_t keySlot(std::string_view key) {
  return static_cast<std::uint16_t>(crc16(hashTag(key)) & (kSlots - 1));
}

// The shortest string of [0-9a-z] (at most 4 characters) whose slot is
// `slot`; stable across runs and builds.
std::string_view slotTag(int slot);

// `prefix` + "{" + slotTag(keySlot(key)) + "}" + key: in the slot of `key`
// whatever `key` contains (Larder's internal keys on a cluster). `prefix`
// must hold no '{'.
std::string taggedKey(std::string_view prefix, std::string_view key);

}  // namespace larder::cluster
