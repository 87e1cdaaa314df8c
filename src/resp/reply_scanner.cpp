#include "larder/resp/reply_scanner.hpp"

#include <charconv>
#include <cstring>
#include <limits>

namespace larder::resp {

namespace {

// Parses the integer in [begin, end); false unless the whole range is a number.
bool parseLength(const char* begin, const char* end, long long& out) {
  if (begin == end) return false;
  auto [ptr, ec] = std::from_chars(begin, end, out);
  return ec == std::errc() && ptr == end;
}

}  // namespace

void ReplyScanner::reset() {
  pos_ = 0;
  remaining_.clear();
  frame_size_ = 0;
}

ScanStatus ReplyScanner::fail(std::string message) {
  error_ = std::move(message);
  reset();
  return ScanStatus::Error;
}

ScanStatus ReplyScanner::scan(std::string_view input) {
  const char* data = input.data();
  const std::size_t size = input.size();
  for (;;) {
    if (pos_ >= size) return ScanStatus::NeedMore;
    const char* line = data + pos_;
    const auto* nl = static_cast<const char*>(std::memchr(line, '\n', size - pos_));
    if (nl == nullptr) return ScanStatus::NeedMore;
    if (nl == line || nl[-1] != '\r') return fail("reply line without CRLF");
    const char* body = line + 1;
    const char* body_end = nl - 1;
    std::size_t next = static_cast<std::size_t>(nl - data) + 1;
    long long count = -1;  // >= 0: aggregate with this many children

    switch (*line) {
      case '+':
      case '-':
      case ':':
      case '_':
      case ',':
      case '#':
      case '(':
        break;
      case '$':
      case '=':
      case '!': {
        long long len = 0;
        if (!parseLength(body, body_end, len) || len < -1) return fail("bad bulk length");
        if (len >= 0) {
          const std::size_t need = next + static_cast<std::size_t>(len) + 2;
          if (size < need) return ScanStatus::NeedMore;
          if (data[need - 2] != '\r' || data[need - 1] != '\n') return fail("bulk without CRLF");
          next = need;
        }
        break;
      }
      case '*':
      case '~':
      case '>':
      case '%':
      case '|': {
        long long n = 0;
        if (!parseLength(body, body_end, n) || n < -1) return fail("bad aggregate length");
        // Maps and attributes count pairs; a count whose double overflows is no real reply
        // (found by tests/fuzz/reply_scanner_fuzz.cpp).
        const bool pairs = *line == '%' || *line == '|';
        if (pairs && n > std::numeric_limits<long long>::max() / 2) {
          return fail("bad aggregate length");
        }
        if (n > 0) count = pairs ? n * 2 : n;
        break;
      }
      default:
        return fail(std::string("unexpected reply type byte 0x") +
                    "0123456789abcdef"[(static_cast<unsigned char>(*line) >> 4) & 0xf] +
                    "0123456789abcdef"[static_cast<unsigned char>(*line) & 0xf]);
    }
    pos_ = next;
    // An attribute (`|`) precedes the reply it annotates: one more element follows.
    const bool attribute = *line == '|';
    if (count > 0) {
      if (remaining_.size() >= max_depth_) return fail("reply nested too deeply");
      remaining_.push_back(count + (attribute ? 1 : 0));
      continue;
    }
    if (attribute) {  // empty attribute map: the annotated reply still follows
      continue;
    }
    // A scalar (or empty aggregate) finished: close every aggregate it completes.
    while (!remaining_.empty() && --remaining_.back() == 0) remaining_.pop_back();
    if (remaining_.empty()) {
      frame_size_ = pos_;
      pos_ = 0;
      return ScanStatus::Complete;
    }
  }
}

bool splitArray(std::string_view frame, std::vector<std::string_view>& elements) {
  elements.clear();
  const auto end = frame.find("\r\n");
  long long n = 0;
  if (frame.empty() || frame.front() != '*' || end == std::string_view::npos ||
      !parseLength(frame.data() + 1, frame.data() + end, n) || n < 0) {
    return false;
  }
  std::string_view rest = frame.substr(end + 2);
  ReplyScanner scanner;
  for (long long i = 0; i < n; ++i) {
    if (scanner.scan(rest) != ScanStatus::Complete) return false;
    elements.push_back(rest.substr(0, scanner.frameSize()));
    rest.remove_prefix(scanner.frameSize());
    scanner.reset();
  }
  return rest.empty();
}

}  // namespace larder::resp
