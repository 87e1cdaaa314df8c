#pragma once
// Appends RESP2 replies to an output buffer. Header-only: these sit on the hot
// path of every locally answered command.
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace larder::resp {

inline void appendNumberLine(std::string& out, char type, long long n) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
  (void)ec;
  out.push_back(type);
  out.append(buf, end);
  out.append("\r\n", 2);
}

// `text` starts with the error code, e.g. "ERR unknown command" or "NOAUTH ...".
// Line breaks in `text` (a client's bytes echoed in an error) become
// spaces, as Redis does: one would end the line early and leave the rest to
// be read as further replies.
inline void appendError(std::string& out, std::string_view text) {
  out.push_back('-');
  const std::size_t from = out.size();
  out.append(text);
  for (std::size_t i = from; i < out.size(); ++i) {
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
  }
  out.append("\r\n", 2);
}

inline void appendInteger(std::string& out, long long n) { appendNumberLine(out, ':', n); }

inline void appendBulk(std::string& out, std::string_view data) {
  appendNumberLine(out, '$', static_cast<long long>(data.size()));
  out.append(data);
  out.append("\r\n", 2);
}

inline void appendNil(std::string& out) { out.append("$-1\r\n", 5); }

inline void appendArrayHeader(std::string& out, std::size_t n) {
  appendNumberLine(out, '*', static_cast<long long>(n));
}

inline std::string errorReply(std::string_view text) {
  std::string out;
  appendError(out, text);
  return out;
}

}  // namespace larder::resp
