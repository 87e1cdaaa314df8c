#include "larder/cache/slot_operator.hpp"

#include <algorithm>
#include <charconv>

#include "larder/redis/slot.hpp"

namespace larder::cache {

std::vector<std::pair<int, int>> slotChunks(const std::vector<std::pair<int, int>>& ranges,
                                            int per_call) {
  std::vector<std::pair<int, int>> out;
  if (per_call <= 0) return out;
  for (const auto& [first, last] : ranges) {
    for (int chunk = first; chunk <= last; chunk += per_call) {
      out.emplace_back(chunk, std::min(last, chunk + per_call - 1));
    }
  }
  return out;
}

std::string slotEntryId(int slot, std::string_view stream_id) {
  std::string out = std::to_string(slot);
  out.push_back('/');
  out.append(stream_id);
  return out;
}

namespace {

bool digitsOnly(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::optional<SlotEntryId> parseSlotEntryId(std::string_view text) {
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string_view slot_text = text.substr(0, slash);
  const std::string_view id_text = text.substr(slash + 1);
  // Digits only: from_chars and StreamId::parse would let neither a sign
  // nor a space through, but say so here, where the form is defined.
  if (!digitsOnly(slot_text) || slot_text.size() > 5) return std::nullopt;
  const std::size_t dash = id_text.find('-');
  if (dash == std::string_view::npos || !digitsOnly(id_text.substr(0, dash)) ||
      !digitsOnly(id_text.substr(dash + 1))) {
    return std::nullopt;
  }
  SlotEntryId out;
  std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), out.slot);
  if (out.slot >= cluster::kSlots) return std::nullopt;
  const auto id = StreamId::parse(id_text);  // fails on a number past 64 bits
  if (!id) return std::nullopt;
  out.id = *id;
  return out;
}

std::vector<SlotRead> planOldest(std::vector<SlotHead> heads, long long count) {
  std::vector<SlotRead> out;
  if (count <= 0) return out;
  std::sort(heads.begin(), heads.end(), [](const SlotHead& a, const SlotHead& b) {
    return a.oldest < b.oldest || (a.oldest == b.oldest && a.slot < b.slot);
  });
  for (std::size_t r = 0; r < heads.size() && static_cast<long long>(r) < count; ++r) {
    const long long most = count - static_cast<long long>(r);
    out.push_back(SlotRead{heads[r].slot, std::min(most, std::max(1LL, heads[r].length))});
  }
  return out;
}

}  // namespace larder::cache
