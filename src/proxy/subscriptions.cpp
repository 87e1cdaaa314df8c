// Subscription counts from Redis' confirmations (see subscriptions.hpp).
#include "larder/proxy/subscriptions.hpp"

#include <charconv>

namespace larder::proxy {

namespace {

// Reads "<prefix><digits>\r\n" at `pos`; false when it is not there.
bool readNumberLine(std::string_view frame, std::size_t& pos, char prefix, long long& value) {
  if (pos >= frame.size() || frame[pos] != prefix) return false;
  const std::size_t end = frame.find("\r\n", pos);
  if (end == std::string_view::npos) return false;
  auto [ptr, ec] = std::from_chars(frame.data() + pos + 1, frame.data() + end, value);
  if (ec != std::errc() || ptr != frame.data() + end) return false;
  pos = end + 2;
  return true;
}

// A bulk string (or a null: RESP2 $-1, RESP3 _) at `pos`.
bool readBulk(std::string_view frame, std::size_t& pos, std::string_view& value) {
  if (frame.substr(pos, 3) == "_\r\n") {
    value = {};
    pos += 3;
    return true;
  }
  long long len = 0;
  if (!readNumberLine(frame, pos, '$', len)) return false;
  if (len < 0) {
    value = {};
    return true;
  }
  if (pos + static_cast<std::size_t>(len) + 2 > frame.size()) return false;
  value = frame.substr(pos, static_cast<std::size_t>(len));
  pos += static_cast<std::size_t>(len) + 2;
  return true;
}

}  // namespace

bool SubscriptionCounts::observe(std::string_view frame) {
  // [kind, channel, count]: "*3\r\n" (RESP2) or ">3\r\n" (RESP3 push).
  if (frame.size() < 8 || (frame[0] != '*' && frame[0] != '>') || frame.substr(1, 3) != "3\r\n") {
    return false;
  }
  std::size_t pos = 4;
  std::string_view kind, channel;
  long long count = 0;
  if (!readBulk(frame, pos, kind) || kind.size() < 9) return false;  // "subscribe" at least
  if (!readBulk(frame, pos, channel) || !readNumberLine(frame, pos, ':', count)) return false;
  if (kind == "subscribe" || kind == "unsubscribe") {
    channels = count - patterns;
  } else if (kind == "psubscribe" || kind == "punsubscribe") {
    patterns = count - channels;
  } else if (kind == "ssubscribe" || kind == "sunsubscribe") {
    shard = count;
  } else {
    return false;
  }
  if (channels < 0) channels = 0;
  if (patterns < 0) patterns = 0;
  return true;
}

}  // namespace larder::proxy
