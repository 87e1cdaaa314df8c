#pragma once
// Incremental, zero-copy parser for client requests: RESP multibulk
// (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline commands (`GET k\r\n`).
//
// The parser never touches a socket. The caller keeps the unconsumed bytes of
// its read buffer contiguous and passes them, starting at the first byte of the
// request being parsed, on every call. The parser remembers how far it got (as
// offsets, so the caller may move or grow its buffer between calls) and resumes
// there, so a large request arriving in many reads is scanned once.
//
//   parse(bytes, req) -> Complete : req.args / req.raw are views into `bytes`
//                                   (or into req's own storage for inline
//                                   commands with quotes); consumed() bytes may
//                                   be dropped by the caller after use.
//                     -> NeedMore : read more and call again with the same start.
//                     -> Error    : errorMessage() is the text for
//                                   "-ERR Protocol error: ..."; close after replying.
//
// A Complete request with no args (`*0\r\n`, `*-1\r\n`, an empty inline line)
// is skipped by Redis without a reply; callers do the same.
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace larder::resp {

struct ParserLimits {
  std::size_t max_array_len = 1024 * 1024;       // arguments in one request
  std::size_t max_bulk_len = 512 * 1024 * 1024;  // bytes in one argument
  std::size_t max_inline_len = 64 * 1024;        // bytes in one inline line
  bool unauthenticated = false;                  // errors say so, in Redis' words
};

// Redis refuses large requests from clients that have not authenticated yet.
inline constexpr ParserLimits kUnauthenticatedLimits{10, 16 * 1024, 64 * 1024, true};

enum class ParseStatus { Complete, NeedMore, Error };

struct Request {
  std::vector<std::string_view> args;
  std::string_view raw;      // the exact request bytes (multibulk only; empty for inline)
  bool inline_form = false;  // true: `raw` is empty, re-encode args to forward
  std::string storage;       // backing for unescaped inline args; do not touch
};

class RequestParser {
 public:
  explicit RequestParser(ParserLimits limits = {}) : limits_(limits) {}

  ParseStatus parse(std::string_view input, Request& out);

  // Bytes of `input` the last Complete request occupied.
  std::size_t consumed() const { return consumed_; }
  // After NeedMore: a lower bound of the bytes the current request still needs
  // beyond what was given (0 when unknown); lets the caller size its buffer.
  std::size_t bytesWanted() const { return wanted_; }
  // After Error: the text after "Protocol error: ", e.g. "invalid bulk length".
  const std::string& errorMessage() const { return error_; }

  void setLimits(ParserLimits limits) { limits_ = limits; }
  const ParserLimits& limits() const { return limits_; }
  // Forget a partially parsed request (e.g. after an error).
  void reset();

 private:
  enum class LineEnd { Found, NeedMore, TooBig, BadEnd };

  ParseStatus fail(std::string message);
  // A whole, plain multibulk request in one pass; false: let parseMultibulk decide.
  bool parseWhole(std::string_view input, Request& out);
  ParseStatus parseMultibulk(std::string_view input, Request& out);
  ParseStatus parseInline(std::string_view input, Request& out);
  void startRequest();
  // Locates the CRLF ending the header line that starts at pos_; sets `cr` on Found.
  LineEnd findHeaderEnd(std::string_view input, std::size_t& cr);
  // How much of the header starting at `header` an earlier NeedMore checked.
  std::size_t checkedUpTo(std::size_t header) const;

  ParserLimits limits_;
  // Resume state for the request in progress, as offsets into input.
  bool in_request_ = false;
  std::size_t pos_ = 0;      // next byte to scan
  std::size_t scan_ = 0;     // the CR (multibulk) / LF (inline) search resumes here
  long long array_len_ = 0;  // declared argument count, 0 = count line not read yet
  long long bulk_len_ = -1;  // declared length of the argument being read, -1 = header next
  std::vector<std::pair<std::size_t, std::size_t>> spans_;  // (offset, length) per arg
  std::size_t consumed_ = 0;
  std::size_t wanted_ = 0;
  std::string error_;
};

// Re-encodes args as a RESP multibulk request (used to forward inline commands).
void appendMultibulk(std::string& out, const std::vector<std::string_view>& args);

}  // namespace larder::resp
