// libFuzzer target for RequestParser. Besides memory safety it checks that the
// parse does not depend on how bytes arrive: the whole input parsed request by
// request must give the same outcomes as the input fed in small reads, and each
// complete request must survive a re-encode/parse round trip.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "larder/resp/request_parser.hpp"

namespace {

using larder::resp::ParserLimits;
using larder::resp::ParseStatus;
using larder::resp::Request;
using larder::resp::RequestParser;

// Not assert(): must hold in release builds too.
#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

struct Outcome {
  ParseStatus status;
  std::vector<std::string> args;
  std::size_t consumed = 0;
  std::size_t wanted = 0;
  bool inline_form = false;
  std::string error;

  bool operator==(const Outcome&) const = default;
};

bool within(std::string_view part, std::string_view whole) {
  const auto p = reinterpret_cast<std::uintptr_t>(part.data());
  const auto w = reinterpret_cast<std::uintptr_t>(whole.data());
  return part.empty() || (p >= w && p + part.size() <= w + whole.size());
}

// Checks one parse result against `input` and returns it in a comparable form.
Outcome check(ParseStatus status, std::string_view input, const RequestParser& parser,
              const Request& req) {
  const ParserLimits& limits = parser.limits();
  Outcome o{status, {}, 0, 0, false, {}};
  switch (status) {
    case ParseStatus::Complete: {
      const std::size_t consumed = parser.consumed();
      FUZZ_CHECK(consumed > 0 && consumed <= input.size());
      const std::string_view request = input.substr(0, consumed);
      if (req.inline_form) {
        FUZZ_CHECK(req.raw.empty());
        FUZZ_CHECK(input[0] != '*');
        FUZZ_CHECK(request.back() == '\n');
        FUZZ_CHECK(consumed - 1 <= limits.max_inline_len);
        for (auto a : req.args) FUZZ_CHECK(within(a, request) || within(a, req.storage));
      } else {
        FUZZ_CHECK(req.raw.data() == input.data() && req.raw.size() == consumed);
        FUZZ_CHECK(input[0] == '*');
        FUZZ_CHECK(request.size() >= 4 && request.substr(request.size() - 2) == "\r\n");
        FUZZ_CHECK(req.args.size() <= limits.max_array_len);
        for (auto a : req.args) {
          FUZZ_CHECK(within(a, request));
          FUZZ_CHECK(a.size() <= limits.max_bulk_len);
        }
      }
      for (auto a : req.args) o.args.emplace_back(a);
      o.consumed = consumed;
      o.inline_form = req.inline_form;
      break;
    }
    case ParseStatus::NeedMore:
      FUZZ_CHECK(parser.bytesWanted() <= limits.max_bulk_len + 2);
      o.wanted = parser.bytesWanted();
      break;
    case ParseStatus::Error:
      FUZZ_CHECK(!parser.errorMessage().empty());
      o.error = parser.errorMessage();
      break;
  }
  return o;
}

// Re-encoding a request's args and parsing that must give back the same args.
void checkRoundTrip(const Outcome& o) {
  std::vector<std::string_view> views(o.args.begin(), o.args.end());
  std::string encoded;
  larder::resp::appendMultibulk(encoded, views);
  RequestParser parser;
  Request req;
  FUZZ_CHECK(parser.parse(encoded, req) == ParseStatus::Complete);
  FUZZ_CHECK(parser.consumed() == encoded.size());
  FUZZ_CHECK(req.args == views);
}

// Chosen by input size, not content: a content byte would tie the limits to the
// request form ('*' would always pick the same ones).
ParserLimits pickLimits(std::size_t selector) {
  switch (selector % 4) {
    case 1:
      return larder::resp::kUnauthenticatedLimits;
    case 2:
      return ParserLimits{8, 64, 128};  // small, so fuzz inputs reach them
    default:
      return ParserLimits{};
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::uint8_t selector = size > 0 ? data[0] : 0;
  const ParserLimits limits = pickLimits(size);

  // 1. Everything at once: parse, consume, repeat.
  std::vector<Outcome> whole;
  {
    RequestParser parser(limits);
    Request req;
    std::string_view rest = input;
    for (;;) {
      const ParseStatus st = parser.parse(rest, req);
      whole.push_back(check(st, rest, parser, req));
      if (st != ParseStatus::Complete) break;
      rest.remove_prefix(parser.consumed());
    }
  }
  for (std::size_t i = 0; i + 1 < whole.size(); ++i) checkRoundTrip(whole[i]);

  // 2. The same bytes in reads of 1..16 bytes, a pattern derived from the first
  // byte, into a buffer that is compacted after each request like a connection's.
  {
    RequestParser parser(limits);
    Request req;
    std::string buffer;
    std::vector<Outcome> fed;
    std::uint32_t state = selector * 2654435761u + 1;
    std::size_t next = 0;
    bool failed = false;
    while (!failed && next < size) {
      state = state * 1103515245u + 12345u;
      const std::size_t chunk = 1 + (state >> 16) % 16;
      const std::size_t n = chunk < size - next ? chunk : size - next;
      buffer.append(input.substr(next, n));
      next += n;
      for (;;) {
        const ParseStatus st = parser.parse(buffer, req);
        const Outcome o = check(st, buffer, parser, req);
        if (st == ParseStatus::NeedMore) {
          // Only the final NeedMore (all bytes in) is comparable.
          if (next == size) fed.push_back(o);
          break;
        }
        fed.push_back(o);
        if (st == ParseStatus::Error) {
          failed = true;
          break;
        }
        buffer.erase(0, parser.consumed());
      }
    }
    if (size == 0) fed.push_back(check(parser.parse(buffer, req), buffer, parser, req));
    FUZZ_CHECK(fed == whole);
  }
  return 0;
}
