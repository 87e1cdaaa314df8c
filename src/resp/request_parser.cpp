#include "larder/resp/request_parser.hpp"

#include <charconv>
#include <cstring>
#include <limits>

namespace larder::resp {

namespace {

using Spans = std::vector<std::pair<std::size_t, std::size_t>>;

// Redis's PROTO_INLINE_MAX_SIZE: the longest `*<n>` / `$<len>` line it buffers.
constexpr std::size_t kMaxHeaderLine = std::size_t{64} * 1024;
constexpr std::size_t kNoPos = std::numeric_limits<std::size_t>::max();

// Mirrors Redis's string2ll: "0" or -?[1-9][0-9]*, no '+', spaces or leading
// zeros, no overflow. Clients never send anything else, so refusing it is safe.
bool parseNumber(std::string_view s, long long& value) {
  if (s.empty()) return false;
  if (s.size() == 1 && s[0] == '0') {
    value = 0;
    return true;
  }
  const bool negative = s[0] == '-';
  std::size_t i = negative ? 1 : 0;
  if (i == s.size() || s[i] < '1' || s[i] > '9') return false;
  unsigned long long v = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') return false;
    const unsigned digit = static_cast<unsigned>(c - '0');
    if (v > (std::numeric_limits<unsigned long long>::max() - digit) / 10) return false;
    v = v * 10 + digit;
  }
  constexpr auto kMax = static_cast<unsigned long long>(std::numeric_limits<long long>::max());
  if (negative) {
    if (v > kMax + 1) return false;
    value = v == kMax + 1 ? std::numeric_limits<long long>::min() : -static_cast<long long>(v);
  } else {
    if (v > kMax) return false;
    value = static_cast<long long>(v);
  }
  return true;
}

// isspace() in the C locale; sdssplitargs skips these between args.
bool isBlank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

bool isHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

enum class SplitResult { Ok, NeedCopy, Unbalanced };

// Splits an inline line like Redis's sdssplitargs. Without `storage`, records each
// arg as a span of `line` and returns NeedCopy as soon as an arg is not a verbatim
// slice (quotes mid-arg, escapes). With `storage`, appends every unescaped arg to it
// and records spans into it. Lines holding a NUL byte never get here
// (parseInline refuses them).
SplitResult splitArgs(std::string_view line, Spans& spans, std::string* storage) {
  spans.clear();
  const std::size_t n = line.size();
  std::size_t p = 0;
  for (;;) {
    while (p < n && isBlank(line[p])) ++p;
    if (p == n) return SplitResult::Ok;

    const std::size_t token_start = p;
    const std::size_t storage_start = storage != nullptr ? storage->size() : 0;
    std::size_t src_start = kNoPos;  // where the verbatim slice begins in `line`
    std::size_t len = 0;
    bool verbatim = true;
    // `from` is the byte's index in `line`, kNoPos when it came from an escape.
    auto emit = [&](char c, std::size_t from) {
      if (storage != nullptr) {
        storage->push_back(c);
      } else if (from == kNoPos || (src_start != kNoPos && from != src_start + len)) {
        verbatim = false;
      } else if (src_start == kNoPos) {
        src_start = from;
      }
      ++len;
    };

    bool in_double = false;
    bool in_single = false;
    bool done = false;
    while (!done) {
      const bool at_end = p >= n;
      const char c = at_end ? '\0' : line[p];
      if (in_double) {
        if (at_end) return SplitResult::Unbalanced;
        if (c == '\\' && p + 3 < n && line[p + 1] == 'x' && isHex(line[p + 2]) &&
            isHex(line[p + 3])) {
          emit(static_cast<char>(hexValue(line[p + 2]) * 16 + hexValue(line[p + 3])), kNoPos);
          p += 3;
        } else if (c == '\\' && p + 1 < n) {
          ++p;
          char e = line[p];
          switch (e) {
            case 'n':
              e = '\n';
              break;
            case 'r':
              e = '\r';
              break;
            case 't':
              e = '\t';
              break;
            case 'b':
              e = '\b';
              break;
            case 'a':
              e = '\a';
              break;
            default:
              break;
          }
          emit(e, kNoPos);
        } else if (c == '"') {
          // A closing quote must end the arg.
          if (p + 1 < n && !isBlank(line[p + 1])) return SplitResult::Unbalanced;
          done = true;
        } else {
          emit(c, p);
        }
      } else if (in_single) {
        if (at_end) return SplitResult::Unbalanced;
        if (c == '\\' && p + 1 < n && line[p + 1] == '\'') {
          ++p;
          emit('\'', kNoPos);
        } else if (c == '\'') {
          if (p + 1 < n && !isBlank(line[p + 1])) return SplitResult::Unbalanced;
          done = true;
        } else {
          emit(c, p);
        }
      } else if (at_end || c == ' ' || c == '\n' || c == '\r' || c == '\t') {
        done = true;
      } else if (c == '"') {
        in_double = true;
      } else if (c == '\'') {
        in_single = true;
      } else {
        emit(c, p);
      }
      if (!verbatim) return SplitResult::NeedCopy;
      if (!at_end) ++p;
    }
    if (storage != nullptr) {
      spans.emplace_back(storage_start, len);
    } else {
      spans.emplace_back(src_start == kNoPos ? token_start : src_start, len);
    }
  }
}

}  // namespace

void RequestParser::reset() {
  in_request_ = false;
  pos_ = 0;
  scan_ = 0;
  array_len_ = 0;
  bulk_len_ = -1;
  spans_.clear();
  wanted_ = 0;
}

void RequestParser::startRequest() {
  reset();
  in_request_ = true;
}

ParseStatus RequestParser::fail(std::string message) {
  error_ = std::move(message);
  reset();
  return ParseStatus::Error;
}

namespace {

// A small decimal header ("*2", "$16") ending in CRLF at `p`: its value, and
// `p` moved past the LF. False for anything else (then the full parser decides).
inline bool smallHeader(const char*& p, const char* end, std::size_t& value) {
  std::size_t v = 0;
  const char* start = p;
  while (p < end && *p >= '0' && *p <= '9') v = v * 10 + static_cast<std::size_t>(*p++ - '0');
  const std::size_t digits = static_cast<std::size_t>(p - start);
  if (digits == 0 || digits > 9 || (digits > 1 && *start == '0')) return false;
  if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return false;
  p += 2;
  value = v;
  return true;
}

}  // namespace

bool RequestParser::parseWhole(std::string_view input, Request& out) {
  // The common case in one pass: a whole, well-formed multibulk request with
  // small headers, within the limits. Anything else (split across reads, a
  // zero or huge count, a bad byte) falls back to parseMultibulk, whose
  // answers it must not change.
  const char* p = input.data() + 1;
  const char* const end = input.data() + input.size();
  std::size_t count = 0;
  if (!smallHeader(p, end, count) || count == 0 || count > limits_.max_array_len) return false;
  out.args.clear();
  for (std::size_t i = 0; i < count; ++i) {
    if (p >= end || *p != '$') return false;
    ++p;
    std::size_t len = 0;
    if (!smallHeader(p, end, len) || len > limits_.max_bulk_len) return false;
    if (static_cast<std::size_t>(end - p) < len + 2 || p[len] != '\r' || p[len + 1] != '\n') {
      return false;
    }
    out.args.emplace_back(p, len);
    p += len + 2;
  }
  const auto size = static_cast<std::size_t>(p - input.data());
  out.raw = input.substr(0, size);
  out.inline_form = false;
  out.storage.clear();
  consumed_ = size;
  return true;
}

ParseStatus RequestParser::parse(std::string_view input, Request& out) {
  consumed_ = 0;
  wanted_ = 0;
  if (!in_request_ && !input.empty() && input[0] == '*' && parseWhole(input, out)) {
    return ParseStatus::Complete;
  }
  // A shorter input than last time breaks the caller contract; start over
  // rather than index past the end.
  if (!in_request_ || pos_ > input.size() || scan_ > input.size()) startRequest();
  if (input.empty()) return ParseStatus::NeedMore;
  return input[0] == '*' ? parseMultibulk(input, out) : parseInline(input, out);
}

namespace {

// True while `text` (a length header's bytes after '*' or '$', CR not yet
// seen) can still become a number: digits, after an optional leading '-',
// maybe ending in the CR. Anything else is refused at once rather than after
// 64 KiB of it (Redis waits). Bytes before `from` passed an earlier call, so a
// header arriving a byte at a time costs linear, not quadratic, time.
bool mayBecomeNumber(std::string_view text, std::size_t from) {
  for (std::size_t i = from; i < text.size(); ++i) {
    const char c = text[i];
    if (c >= '0' && c <= '9') continue;
    if (c == '-' && i == 0) continue;
    if (c == '\r' && i + 1 == text.size()) continue;
    return false;
  }
  return true;
}

}  // namespace

std::size_t RequestParser::checkedUpTo(std::size_t header) const {
  // findHeaderEnd leaves scan_ where its search for the CR stopped; every
  // byte of the header before it was checked when that call said NeedMore.
  return scan_ > header ? scan_ - header : 0;
}

RequestParser::LineEnd RequestParser::findHeaderEnd(std::string_view input, std::size_t& cr) {
  const char* data = input.data();
  const std::size_t from = scan_ > pos_ ? scan_ : pos_;
  const auto* hit = static_cast<const char*>(std::memchr(data + from, '\r', input.size() - from));
  if (hit == nullptr) {
    scan_ = input.size();
    // Measured like the found case below so the verdict does not depend on how
    // the bytes were split across reads.
    return input.size() - pos_ > kMaxHeaderLine ? LineEnd::TooBig : LineEnd::NeedMore;
  }
  cr = static_cast<std::size_t>(hit - data);
  if (cr - pos_ > kMaxHeaderLine) return LineEnd::TooBig;
  scan_ = cr;  // the '\r' is re-found at once if '\n' has not arrived yet
  if (cr + 1 >= input.size()) return LineEnd::NeedMore;
  return input[cr + 1] == '\n' ? LineEnd::Found : LineEnd::BadEnd;
}

ParseStatus RequestParser::parseMultibulk(std::string_view input, Request& out) {
  const std::size_t size = input.size();
  std::size_t cr = 0;

  if (array_len_ == 0) {  // `*<count>\r\n` not read yet
    const std::size_t checked = checkedUpTo(1);
    switch (findHeaderEnd(input, cr)) {
      case LineEnd::NeedMore:
        if (!mayBecomeNumber(input.substr(1), checked)) return fail("invalid multibulk length");
        return ParseStatus::NeedMore;
      case LineEnd::TooBig:
        // A bad byte within the limit is what reads of any size would have met first.
        if (!mayBecomeNumber(input.substr(1, kMaxHeaderLine - 1), checked)) {
          return fail("invalid multibulk length");
        }
        return fail("too big mbulk count string");
      case LineEnd::BadEnd:
        return fail("invalid multibulk length");
      case LineEnd::Found:
        break;
    }
    long long count = 0;
    if (!parseNumber(input.substr(1, cr - 1), count)) return fail("invalid multibulk length");
    if (count > 0 && static_cast<unsigned long long>(count) > limits_.max_array_len) {
      return fail(limits_.unauthenticated ? "unauthenticated multibulk length"
                                          : "invalid multibulk length");
    }
    pos_ = cr + 2;
    scan_ = pos_;
    if (count <= 0) {  // Redis skips these without a reply
      out.args.clear();
      out.raw = input.substr(0, pos_);
      out.inline_form = false;
      consumed_ = pos_;
      reset();
      return ParseStatus::Complete;
    }
    array_len_ = count;
    // Capped: the count is untrusted until the args actually arrive.
    spans_.reserve(static_cast<std::size_t>(count < 1024 ? count : 1024));
  }

  while (spans_.size() < static_cast<std::size_t>(array_len_)) {
    if (bulk_len_ < 0) {  // `$<len>\r\n` next
      if (pos_ >= size) return ParseStatus::NeedMore;
      const char first = input[pos_];
      if (first != '$') {
        // Redis turns CR/LF into spaces so the error reply stays one line.
        const char shown = first == '\r' || first == '\n' ? ' ' : first;
        return fail(std::string("expected '$', got '") + shown + "'");
      }
      const std::size_t checked = checkedUpTo(pos_ + 1);
      switch (findHeaderEnd(input, cr)) {
        case LineEnd::NeedMore:
          if (!mayBecomeNumber(input.substr(pos_ + 1), checked)) {
            return fail("invalid bulk length");
          }
          return ParseStatus::NeedMore;
        case LineEnd::TooBig:
          if (!mayBecomeNumber(input.substr(pos_ + 1, kMaxHeaderLine - 1), checked)) {
            return fail("invalid bulk length");
          }
          return fail("too big bulk count string");
        case LineEnd::BadEnd:
          return fail("invalid bulk length");
        case LineEnd::Found:
          break;
      }
      long long len = 0;
      if (!parseNumber(input.substr(pos_ + 1, cr - pos_ - 1), len) || len < 0) {
        return fail("invalid bulk length");
      }
      if (static_cast<unsigned long long>(len) > limits_.max_bulk_len) {
        return fail(limits_.unauthenticated ? "unauthenticated bulk length"
                                            : "invalid bulk length");
      }
      bulk_len_ = len;
      pos_ = cr + 2;
      scan_ = pos_;
    }

    const auto len = static_cast<std::size_t>(bulk_len_);
    const std::size_t available = size - pos_;
    if (available < len + 2) {
      // Reject a bad terminator as soon as its first byte is here.
      if (available > len && input[pos_ + len] != '\r') {
        return fail("expected CRLF after bulk data");
      }
      wanted_ = len + 2 - available;
      return ParseStatus::NeedMore;
    }
    if (input[pos_ + len] != '\r' || input[pos_ + len + 1] != '\n') {
      return fail("expected CRLF after bulk data");
    }
    spans_.emplace_back(pos_, len);
    pos_ += len + 2;
    scan_ = pos_;
    bulk_len_ = -1;
  }

  out.args.clear();
  for (const auto& [offset, length] : spans_) out.args.push_back(input.substr(offset, length));
  out.raw = input.substr(0, pos_);
  out.inline_form = false;
  out.storage.clear();
  consumed_ = pos_;
  reset();
  return ParseStatus::Complete;
}

ParseStatus RequestParser::parseInline(std::string_view input, Request& out) {
  const char* data = input.data();
  const std::size_t size = input.size();
  const auto* hit = static_cast<const char*>(std::memchr(data + scan_, '\n', size - scan_));
  if (hit == nullptr) {
    if (size > limits_.max_inline_len) return fail("too big inline request");
    scan_ = size;
    return ParseStatus::NeedMore;
  }
  const auto newline = static_cast<std::size_t>(hit - data);
  // Also refuse an over-long line that arrived whole, so the outcome does not
  // depend on how the bytes were split (Redis only checks while waiting).
  if (newline > limits_.max_inline_len) return fail("too big inline request");
  std::size_t end = newline;
  if (end > 0 && input[end - 1] == '\r') --end;
  const std::string_view line = input.substr(0, end);
  // Redis reads inline lines as C strings and never runs one holding NUL (it
  // waits for a newline it cannot see). Refusing at once keeps a desynced
  // client from running the tail of binary data as a command.
  if (line.find('\0') != std::string_view::npos) return fail("NUL byte in inline request");

  std::string_view base = line;
  switch (splitArgs(line, spans_, nullptr)) {
    case SplitResult::Ok:
      break;
    case SplitResult::Unbalanced:
      return fail("unbalanced quotes in request");
    case SplitResult::NeedCopy:
      out.storage.clear();
      // Unescaping never grows an arg, so this one reservation holds everything.
      out.storage.reserve(line.size());
      if (splitArgs(line, spans_, &out.storage) != SplitResult::Ok) {
        return fail("unbalanced quotes in request");
      }
      base = out.storage;
      break;
  }

  // Views are made only after storage is final.
  out.args.clear();
  for (const auto& [offset, length] : spans_) out.args.push_back(base.substr(offset, length));
  out.raw = {};
  out.inline_form = true;
  consumed_ = newline + 1;
  reset();
  return ParseStatus::Complete;
}

void appendMultibulk(std::string& out, const std::vector<std::string_view>& args) {
  std::size_t total = 16;
  for (const auto arg : args) total += arg.size() + 24;
  out.reserve(out.size() + total);
  char digits[24];
  auto appendHeader = [&](char type, std::size_t n) {
    out.push_back(type);
    const auto result = std::to_chars(digits, digits + sizeof(digits), n);
    out.append(digits, result.ptr);
    out.append("\r\n", 2);
  };
  appendHeader('*', args.size());
  for (const auto arg : args) {
    appendHeader('$', arg.size());
    out.append(arg.data(), arg.size());
    out.append("\r\n", 2);
  }
}

}  // namespace larder::resp
