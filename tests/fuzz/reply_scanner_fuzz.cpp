// libFuzzer target for the reply path: ReplyScanner, which frames Redis' replies
// in the byte stream of a backend connection, and decodeReply, which decodes one
// frame's contents. Besides memory safety it checks:
//
//  1. Framing. A Complete frame is non-empty, lies within the data, starts with a
//     type byte and ends in CRLF; frames tile the input from its first byte.
//  2. Chunking. The same bytes fed in reads whose sizes the first input bytes
//     choose, into a buffer compacted after each frame as
//     BackendConnection::readLoop does, give the same frames, the same final
//     status, the same unscanned rest and the same error.
//  3. Self-delimiting frames. A fresh scanner frames each frame alone exactly;
//     without its last byte it needs more.
//  4. decodeReply agrees with the scanner: on a frame it succeeds exactly when
//     the frame is RESP2 only, nests at most 32 deep and every `:` line is an
//     integer; what it decodes re-encodes to a frame that scans and decodes to
//     an equal value.
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "larder/resp/reply_scanner.hpp"
#include "larder/resp/reply_value.hpp"

namespace {

using larder::resp::ReplyScanner;
using larder::resp::ReplyValue;
using larder::resp::ScanStatus;

// Not assert(): must hold in release builds too.
#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

constexpr std::string_view kTypeBytes = "+-:$*_,#(=!~>%|";
constexpr int kDecodeMaxDepth = 32;  // reply_value.cpp's kMaxDepth

struct Outcome {
  ScanStatus status;
  std::string frame;     // Complete: the frame's bytes
  std::size_t rest = 0;  // NeedMore: bytes left unscanned
  std::string error;     // Error: the message

  bool operator==(const Outcome&) const = default;
};

// Chosen by input size, not content, so every reply form meets every bound.
std::size_t pickMaxDepth(std::size_t size) {
  switch (size % 4) {
    case 1:
      return 1;
    case 2:
      return 4;
    default:
      return 256;  // the default
  }
}

// 3. A frame scanned on its own is exactly one frame, and no proper prefix of it
// is complete (only the last byte is checked: an earlier one would have shown up
// as a different frame size in the stream).
void checkAlone(std::string_view frame, std::size_t max_depth) {
  ReplyScanner alone(max_depth);
  FUZZ_CHECK(alone.scan(frame) == ScanStatus::Complete);
  FUZZ_CHECK(alone.frameSize() == frame.size());
  ReplyScanner cut(max_depth);
  FUZZ_CHECK(cut.scan(frame.substr(0, frame.size() - 1)) == ScanStatus::NeedMore);
}

// The whole of `text` is one long long, as RESP integers and lengths must be.
bool toInteger(std::string_view text, long long& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

// Reference for (4): walks one element of a frame the scanner accepted and says
// whether decodeReply must accept it. Lines are the scanner's (it checked CRLF).
bool decodable(std::string_view& in, int depth) {
  if (depth > kDecodeMaxDepth) return false;
  const std::size_t nl = in.find('\n');
  const char type = in.front();
  const std::string_view line = in.substr(1, nl - 2);
  in.remove_prefix(nl + 1);
  switch (type) {
    case '+':
    case '-':
      return true;
    case ':': {
      long long n = 0;
      return toInteger(line, n);
    }
    case '$': {
      long long len = 0;
      FUZZ_CHECK(toInteger(line, len) && len >= -1);  // the scanner checked it
      if (len >= 0) in.remove_prefix(static_cast<std::size_t>(len) + 2);
      return true;
    }
    case '*': {
      long long n = 0;
      FUZZ_CHECK(toInteger(line, n) && n >= -1);
      for (long long i = 0; i < n; ++i) {
        if (!decodable(in, depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;  // a RESP3 type
  }
}

void encode(const ReplyValue& v, std::string& out) {
  switch (v.type) {
    case ReplyValue::Type::Status:
      out += '+' + v.text + "\r\n";
      break;
    case ReplyValue::Type::Error:
      out += '-' + v.text + "\r\n";
      break;
    case ReplyValue::Type::Integer:
      out += ':' + std::to_string(v.integer) + "\r\n";
      break;
    case ReplyValue::Type::Bulk:
      out += '$' + std::to_string(v.text.size()) + "\r\n" + v.text + "\r\n";
      break;
    case ReplyValue::Type::Nil:
      out += "$-1\r\n";
      break;
    case ReplyValue::Type::Array:
      out += '*' + std::to_string(v.elements.size()) + "\r\n";
      for (const ReplyValue& e : v.elements) encode(e, out);
      break;
  }
}

bool sameValue(const ReplyValue& a, const ReplyValue& b) {
  if (a.type != b.type || a.text != b.text || a.integer != b.integer ||
      a.elements.size() != b.elements.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.elements.size(); ++i) {
    if (!sameValue(a.elements[i], b.elements[i])) return false;
  }
  return true;
}

// A decoded value re-encodes canonically and decodes back to the same value.
// For a value from a scanned frame, the encoding is no longer than the frame
// (only number spellings such as ":007" or "*-1" shrink) and scans as one frame.
// Raw bytes are exempt: decodeReply reads a line up to CRLF and so lets a bare
// LF through, which the scanner, framing first, never hands it.
void checkReencode(const ReplyValue& value, std::size_t original_size, bool from_frame) {
  std::string encoded;
  encode(value, encoded);
  if (from_frame) {
    FUZZ_CHECK(encoded.size() <= original_size);
    ReplyScanner scanner;
    FUZZ_CHECK(scanner.scan(encoded) == ScanStatus::Complete);
    FUZZ_CHECK(scanner.frameSize() == encoded.size());
  }
  ReplyValue again;
  FUZZ_CHECK(larder::resp::decodeReply(encoded, again));
  FUZZ_CHECK(sameValue(value, again));
}

// 1, 3 and 4 for one Complete frame at the start of `input`.
Outcome checkFrame(std::string_view input, const ReplyScanner& scanner, std::size_t max_depth) {
  const std::size_t size = scanner.frameSize();
  FUZZ_CHECK(size >= 3 && size <= input.size());
  const std::string_view frame = input.substr(0, size);
  FUZZ_CHECK(kTypeBytes.find(frame.front()) != std::string_view::npos);
  FUZZ_CHECK(frame.substr(size - 2) == "\r\n");
  checkAlone(frame, max_depth);

  ReplyValue value;
  const bool decoded = larder::resp::decodeReply(frame, value);
  std::string_view walk = frame;
  FUZZ_CHECK(decoded == decodable(walk, 0));
  if (decoded) {
    FUZZ_CHECK(walk.empty());
    checkReencode(value, size, true);
  }
  return Outcome{ScanStatus::Complete, std::string(frame), 0, {}};
}

Outcome checkOther(ScanStatus status, std::string_view input, const ReplyScanner& scanner) {
  if (status == ScanStatus::Error) {
    FUZZ_CHECK(!scanner.errorMessage().empty());
    return Outcome{status, {}, 0, scanner.errorMessage()};
  }
  return Outcome{status, {}, input.size(), {}};
}

// Read sizes for (2): mostly 1..16 bytes, sometimes up to 512 so long bulks
// arrive in a few reads too. Seeded by the first four bytes and the size.
class Chunker {
 public:
  Chunker(const std::uint8_t* data, std::size_t size) : state_(static_cast<std::uint32_t>(size)) {
    for (std::size_t i = 0; i < size && i < 4; ++i) state_ = state_ * 31u + data[i];
    state_ = state_ * 2654435761u + 1;
  }
  std::size_t next() {
    state_ = state_ * 1103515245u + 12345u;
    const std::uint32_t r = state_ >> 8;
    return (r & 7) == 0 ? 1 + (r >> 3) % 512 : 1 + (r >> 3) % 16;
  }

 private:
  std::uint32_t state_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t max_depth = pickMaxDepth(size);

  // 1. Everything at once: scan, consume the frame, repeat.
  std::vector<Outcome> whole;
  {
    ReplyScanner scanner(max_depth);
    std::string_view rest = input;
    for (;;) {
      const ScanStatus st = scanner.scan(rest);
      if (st != ScanStatus::Complete) {
        whole.push_back(checkOther(st, rest, scanner));
        break;
      }
      whole.push_back(checkFrame(rest, scanner, max_depth));
      rest.remove_prefix(scanner.frameSize());
    }
    // After an error the scanner starts afresh.
    if (whole.back().status == ScanStatus::Error) {
      FUZZ_CHECK(scanner.scan("+OK\r\n") == ScanStatus::Complete && scanner.frameSize() == 5);
    }
  }

  // 2. The same bytes in reads, into a buffer compacted after each frame.
  {
    ReplyScanner scanner(max_depth);
    Chunker chunker(data, size);
    std::string buffer;
    std::vector<Outcome> fed;
    std::size_t next = 0;
    bool failed = false;
    while (!failed && next < size) {
      const std::size_t n = std::min(chunker.next(), size - next);
      buffer.append(input.substr(next, n));
      next += n;
      for (;;) {
        const ScanStatus st = scanner.scan(buffer);
        if (st == ScanStatus::NeedMore) {
          // Only the final NeedMore (all bytes in) is comparable.
          if (next == size) fed.push_back(checkOther(st, buffer, scanner));
          break;
        }
        if (st == ScanStatus::Error) {
          fed.push_back(checkOther(st, buffer, scanner));
          failed = true;
          break;
        }
        FUZZ_CHECK(scanner.frameSize() > 0 && scanner.frameSize() <= buffer.size());
        fed.push_back(Outcome{st, buffer.substr(0, scanner.frameSize()), 0, {}});
        buffer.erase(0, scanner.frameSize());
      }
    }
    if (size == 0) fed.push_back(checkOther(scanner.scan(buffer), buffer, scanner));
    FUZZ_CHECK(fed == whole);
  }

  // decodeReply on raw bytes (not a frame) must be memory-safe, and what it
  // accepts must re-encode consistently.
  ReplyValue value;
  if (larder::resp::decodeReply(input, value)) checkReencode(value, size, false);
  return 0;
}
