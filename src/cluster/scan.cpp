#include "larder/cluster/scan.hpp"

#include <charconv>
#include <vector>

#include "larder/cluster/merge.hpp"
#include "larder/redis/slot.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cluster {

namespace {

constexpr std::uint64_t kMaxNodeCursor = (std::uint64_t{1} << 50) - 1;

bool parseUnsigned(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

std::optional<ScanPosition> decodeCursor(std::string_view cursor) {
  std::uint64_t c = 0;
  if (!parseUnsigned(cursor, c)) return std::nullopt;
  if (c == 0) return ScanPosition{};
  return ScanPosition{static_cast<int>(c % kSlots), c / kSlots};
}

std::optional<std::uint64_t> encodeCursor(std::uint64_t node_cursor, int first_slot) {
  if (node_cursor > kMaxNodeCursor) return std::nullopt;
  return node_cursor * kSlots + static_cast<std::uint64_t>(first_slot);
}

std::string scanRequest(std::span<const std::string_view> args, std::uint64_t node_cursor) {
  const std::string cursor = std::to_string(node_cursor);
  std::vector<std::string_view> out(args.begin(), args.end());
  out[1] = cursor;
  std::string request;
  resp::appendMultibulk(request, out);
  return request;
}

bool splitScanReply(std::string_view frame, std::uint64_t& cursor, std::string_view& keys) {
  std::vector<std::string_view> elements;
  if (!arrayElements(frame, elements) || elements.size() != 2) return false;
  const std::string_view c = elements[0];
  if (c.empty() || c.front() != '$') return false;
  const std::size_t header = c.find("\r\n");
  if (!parseUnsigned(c.substr(header + 2, c.size() - header - 4), cursor)) return false;
  keys = elements[1];
  return !keys.empty() && keys.front() == '*';
}

std::string scanReply(std::uint64_t cursor, std::string_view keys_frame) {
  std::string out = "*2\r\n";
  resp::appendBulk(out, std::to_string(cursor));
  out.append(keys_frame);
  return out;
}

}  // namespace larder::cluster
