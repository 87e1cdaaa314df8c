#include "larder/redis/slot.hpp"

#include <array>
#include <stdexcept>
#include <string>
#include <vector>

namespace larder::cluster {

namespace {

// The table is the polynomial's remainder for every byte value, computed once
// at compile time (bit by bit, most significant bit first).
constexpr std::array<std::uint16_t, 256> makeTable() {
  std::array<std::uint16_t, 256> table{};
  for (unsigned byte = 0; byte < 256; ++byte) {
    std::uint16_t r = static_cast<std::uint16_t>(byte << 8);
    for (int bit = 0; bit < 8; ++bit) {
      r = static_cast<std::uint16_t>((r & 0x8000) ? (r << 1) ^ 0x1021 : (r << 1));
    }
    table[byte] = r;
  }
  return table;
}

constexpr std::array<std::uint16_t, 256> kTable = makeTable();

}  // namespace

std::uint16_t crc16(std::string_view bytes) {
  std::uint16_t crc = 0;
  for (unsigned char c : bytes) {
    crc = static_cast<std::uint16_t>((crc << 8) ^ kTable[((crc >> 8) ^ c) & 0xFF]);
  }
  return crc;
}

std::string_view hashTag(std::string_view key) {
  const std::size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  const std::size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

// ------------------------------------------------------------- slot tags

namespace {

constexpr std::string_view kAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz";

// Tags by slot, found once by trying strings in order of length, then
// alphabet order: 36^4 candidates give every slot one (about 100 each).
struct TagTable {
  std::array<std::string, kSlots> tags;
  TagTable() {
    int found = 0;
    std::string s;
    for (std::size_t len = 1; len <= 4 && found < kSlots; ++len) {
      std::vector<std::size_t> digits(len, 0);
      for (;;) {
        s.clear();
        for (std::size_t d : digits) s.push_back(kAlphabet[d]);
        std::string& tag = tags[keySlot(s)];
        if (tag.empty()) {
          tag = s;
          ++found;
        }
        std::size_t i = len;
        while (i > 0 && ++digits[i - 1] == kAlphabet.size()) digits[--i] = 0;
        if (i == 0) break;
      }
    }
    if (found != kSlots) throw std::logic_error("slot tags do not cover every slot");
  }
};

const TagTable& table() {
  static const TagTable t;
  return t;
}

}  // namespace

std::string_view slotTag(int slot) { return table().tags[static_cast<std::size_t>(slot)]; }

std::string taggedKey(std::string_view prefix, std::string_view key) {
  std::string out;
  const std::string_view tag = slotTag(keySlot(key));
  out.reserve(prefix.size() + tag.size() + 2 + key.size());
  out.append(prefix);
  out.push_back('{');
  out.append(tag);
  out.push_back('}');
  out.append(key);
  return out;
}

}  // namespace larder::cluster
