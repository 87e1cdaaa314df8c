#include "larder/resp/request_parser.hpp"

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace std::string_literals;
using larder::resp::appendMultibulk;
using larder::resp::kUnauthenticatedLimits;
using larder::resp::ParserLimits;
using larder::resp::ParseStatus;
using larder::resp::Request;
using larder::resp::RequestParser;

namespace {

constexpr std::size_t kKiB = 1024;

// What one parse call produced, copied out so it outlives the input buffer.
struct Outcome {
  ParseStatus status = ParseStatus::NeedMore;
  std::vector<std::string> args;
  std::string raw;
  bool inline_form = false;
  std::size_t consumed = 0;
  std::size_t wanted = 0;
  std::string error;
};

Outcome capture(ParseStatus status, const RequestParser& parser, const Request& req) {
  Outcome o;
  o.status = status;
  if (status == ParseStatus::Complete) {
    for (auto a : req.args) o.args.emplace_back(a);
    o.raw = std::string(req.raw);
    o.inline_form = req.inline_form;
    o.consumed = parser.consumed();
  } else if (status == ParseStatus::NeedMore) {
    o.wanted = parser.bytesWanted();
  } else {
    o.error = parser.errorMessage();
  }
  return o;
}

Outcome multibulk(std::vector<std::string> args, std::size_t consumed) {
  Outcome o;
  o.status = ParseStatus::Complete;
  o.args = std::move(args);
  o.consumed = consumed;
  return o;
}

Outcome inlineCmd(std::vector<std::string> args, std::size_t consumed) {
  Outcome o = multibulk(std::move(args), consumed);
  o.inline_form = true;
  return o;
}

Outcome error(std::string message) {
  Outcome o;
  o.status = ParseStatus::Error;
  o.error = std::move(message);
  return o;
}

Outcome needMore(std::size_t wanted) {
  Outcome o;
  o.wanted = wanted;
  return o;
}

const char* statusName(ParseStatus s) {
  switch (s) {
    case ParseStatus::Complete:
      return "Complete";
    case ParseStatus::NeedMore:
      return "NeedMore";
    case ParseStatus::Error:
      return "Error";
  }
  return "?";
}

void checkSame(const Outcome& got, const Outcome& want, std::string_view input) {
  REQUIRE(statusName(got.status) == std::string(statusName(want.status)));
  CHECK(got.error == want.error);
  CHECK(got.args == want.args);
  CHECK(got.consumed == want.consumed);
  CHECK(got.inline_form == want.inline_form);
  CHECK(got.wanted == want.wanted);
  if (want.status == ParseStatus::Complete) {
    // raw is exactly the request's bytes for multibulk, empty for inline.
    CHECK(got.raw ==
          (want.inline_form ? std::string() : std::string(input.substr(0, want.consumed))));
  }
}

bool within(std::string_view part, std::string_view whole) {
  const auto p = reinterpret_cast<std::uintptr_t>(part.data());
  const auto w = reinterpret_cast<std::uintptr_t>(whole.data());
  return p >= w && p + part.size() <= w + whole.size();
}

Outcome parseWhole(std::string_view input, ParserLimits limits = {}) {
  RequestParser parser(limits);
  Request req;
  const ParseStatus st = parser.parse(input, req);
  if (st == ParseStatus::Complete) {
    for (auto a : req.args) REQUIRE((within(a, input) || within(a, req.storage)));
  }
  return capture(st, parser, req);
}

// Feeds input one byte at a time, passing the whole accumulated buffer on each call.
// With `relocate`, the bytes move to a fresh allocation before every call and the
// old one is scribbled over, so the parser must keep offsets, not pointers.
Outcome parseByteByByte(std::string_view input, ParserLimits limits, bool relocate,
                        std::size_t& fed) {
  RequestParser parser(limits);
  Request req;
  std::string grow;
  std::unique_ptr<char[]> moved;
  Outcome last = capture(parser.parse({}, req), parser, req);
  REQUIRE(last.status == ParseStatus::NeedMore);
  for (fed = 1; fed <= input.size(); ++fed) {
    std::string_view view;
    if (relocate) {
      auto fresh = std::make_unique<char[]>(fed);
      std::memcpy(fresh.get(), input.data(), fed);
      if (moved) std::memset(moved.get(), '#', fed - 1);
      moved = std::move(fresh);
      view = std::string_view(moved.get(), fed);
    } else {
      grow.push_back(input[fed - 1]);
      view = grow;
    }
    const ParseStatus st = parser.parse(view, req);
    last = capture(st, parser, req);
    if (st != ParseStatus::NeedMore) break;
  }
  return last;
}

// The outcome must not depend on how the bytes arrive: whole, every 2-way split
// (sampled for big inputs), byte by byte, and byte by byte with relocation.
void checkAllWays(std::string_view input, const Outcome& want, ParserLimits limits = {}) {
  INFO("input size " << input.size());
  {
    INFO("whole");
    checkSame(parseWhole(input, limits), want, input);
  }
  const std::size_t stride = input.size() > 4096 ? input.size() / 997 + 1 : 1;
  for (std::size_t k = 0; k <= input.size(); k += stride) {
    INFO("split at " << k);
    RequestParser parser(limits);
    Request req;
    ParseStatus st = parser.parse(input.substr(0, k), req);
    if (st == ParseStatus::NeedMore) st = parser.parse(input, req);
    checkSame(capture(st, parser, req), want, input);
  }
  for (bool relocate : {false, true}) {
    // Relocating copies the buffer every byte: quadratic, so only for small inputs.
    if (input.size() > (relocate ? 8 * kKiB : 128 * kKiB)) continue;
    INFO("byte by byte, relocate=" << relocate);
    std::size_t fed = 0;
    const Outcome got = parseByteByByte(input, limits, relocate, fed);
    checkSame(got, want, input);
    // A request completes exactly when its last byte arrives, not later.
    if (want.status == ParseStatus::Complete) CHECK(fed == want.consumed);
  }
}

// Parses and consumes requests from `input` until it runs out or fails.
std::vector<Outcome> drain(std::string_view input, ParserLimits limits = {}) {
  RequestParser parser(limits);
  Request req;
  std::vector<Outcome> outcomes;
  for (;;) {
    const ParseStatus st = parser.parse(input, req);
    outcomes.push_back(capture(st, parser, req));
    if (st != ParseStatus::Complete) return outcomes;
    REQUIRE(parser.consumed() > 0);
    REQUIRE(parser.consumed() <= input.size());
    input.remove_prefix(parser.consumed());
  }
}

// Simulates a connection: bytes arrive in chunks, complete requests are erased
// from the front of the buffer (moving the remainder), parsing resumes.
std::vector<Outcome> feedInChunks(std::string_view input, const std::vector<std::size_t>& chunks) {
  RequestParser parser;
  Request req;
  std::string buffer;
  std::vector<Outcome> outcomes;
  std::size_t next = 0;
  std::size_t chunk_index = 0;
  while (next < input.size()) {
    const std::size_t n = std::min(chunks[chunk_index++ % chunks.size()], input.size() - next);
    buffer.append(input.substr(next, n));
    next += n;
    for (;;) {
      const ParseStatus st = parser.parse(buffer, req);
      if (st == ParseStatus::NeedMore) break;
      outcomes.push_back(capture(st, parser, req));
      if (st == ParseStatus::Error) return outcomes;
      buffer.erase(0, parser.consumed());
    }
  }
  return outcomes;
}

std::string encode(const std::vector<std::string_view>& args) {
  std::string out;
  appendMultibulk(out, args);
  return out;
}

}  // namespace

TEST_CASE("multibulk requests parse whole, split and byte by byte", "[resp]") {
  const std::string get = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
  checkAllWays(get, multibulk({"GET", "k"}, get.size()));

  const std::string ping = "*1\r\n$4\r\nPING\r\n";
  checkAllWays(ping, multibulk({"PING"}, ping.size()));

  const std::string empty_arg = "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n";
  checkAllWays(empty_arg, multibulk({"ECHO", ""}, empty_arg.size()));

  const std::string set = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$10\r\n0123456789\r\n";
  checkAllWays(set, multibulk({"SET", "key", "0123456789"}, set.size()));
}

TEST_CASE("multibulk args are binary safe", "[resp]") {
  const std::string value = "a\0b\r\nc\r\n\0"s;
  REQUIRE(value.size() == 9);
  const std::string input = "*3\r\n$3\r\nSET\r\n$2\r\n\0k\r\n$9\r\n"s + value + "\r\n";
  checkAllWays(input, multibulk({"SET", "\0k"s, value}, input.size()));

  // A bulk that looks like a whole nested request is still just bytes.
  const std::string nested = "*1\r\n$4\r\nPING\r\n";
  const std::string wrapped =
      "*2\r\n$4\r\nECHO\r\n$" + std::to_string(nested.size()) + "\r\n" + nested + "\r\n";
  checkAllWays(wrapped, multibulk({"ECHO", nested}, wrapped.size()));
}

TEST_CASE("multibulk args and raw are zero-copy views into the input", "[resp]") {
  const std::string input = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\n$4\r\nPING\r\n";
  RequestParser parser;
  Request req;
  REQUIRE(parser.parse(input, req) == ParseStatus::Complete);
  REQUIRE(req.args.size() == 2);
  CHECK(req.args[0].data() == input.data() + 8);
  CHECK(req.args[1].data() == input.data() + 17);
  CHECK(req.raw.data() == input.data());
  CHECK(req.raw.size() == 22);
  CHECK_FALSE(req.inline_form);
  CHECK(parser.consumed() == 22);
  CHECK(parser.bytesWanted() == 0);
}

TEST_CASE("empty and negative multibulk counts complete with no args", "[resp]") {
  checkAllWays("*0\r\n", multibulk({}, 4));
  checkAllWays("*-1\r\n", multibulk({}, 5));
  checkAllWays("*-42\r\n", multibulk({}, 6));
  // Only the count line is consumed; the next request follows.
  const auto outcomes = drain("*0\r\n*1\r\n$4\r\nPING\r\n");
  REQUIRE(outcomes.size() == 3);
  CHECK(outcomes[0].args.empty());
  CHECK(outcomes[0].raw == "*0\r\n");
  CHECK(outcomes[1].args == std::vector<std::string>{"PING"});
  CHECK(outcomes[2].status == ParseStatus::NeedMore);
}

TEST_CASE("incomplete multibulk requests need more", "[resp]") {
  checkAllWays("*", needMore(0));
  checkAllWays("*2", needMore(0));
  checkAllWays("*2\r", needMore(0));
  checkAllWays("*2\r\n$3\r", needMore(0));
  checkAllWays("*2\r\n$3\r\nGET\r\n", needMore(0));
  checkAllWays("*2\r\n$3\r\nGET\r\n$5\r\nab", needMore(5));
}

TEST_CASE("bytesWanted reports the rest of a bulk of known length", "[resp]") {
  RequestParser parser;
  Request req;
  std::string buf = "*2\r\n$3\r\nGET\r\n$100";
  REQUIRE(parser.parse(buf, req) == ParseStatus::NeedMore);
  CHECK(parser.bytesWanted() == 0);  // length not known yet
  buf += "\r\n";
  REQUIRE(parser.parse(buf, req) == ParseStatus::NeedMore);
  CHECK(parser.bytesWanted() == 102);
  buf += std::string(60, 'x');
  REQUIRE(parser.parse(buf, req) == ParseStatus::NeedMore);
  CHECK(parser.bytesWanted() == 42);
  buf += std::string(40, 'x');
  REQUIRE(parser.parse(buf, req) == ParseStatus::NeedMore);
  CHECK(parser.bytesWanted() == 2);
  buf += "\r";
  REQUIRE(parser.parse(buf, req) == ParseStatus::NeedMore);
  CHECK(parser.bytesWanted() == 1);
  buf += "\n";
  REQUIRE(parser.parse(buf, req) == ParseStatus::Complete);
  CHECK(parser.bytesWanted() == 0);
  REQUIRE(req.args.size() == 2);
  CHECK(req.args[1] == std::string(100, 'x'));
}

TEST_CASE("large bulk arrives in pieces", "[resp]") {
  const std::string value(200 * kKiB, 'v');
  const std::string input = encode({"SET", "big", value});
  checkAllWays(input, multibulk({"SET", "big", value}, input.size()));

  // Feeding in 4 KiB reads: bytesWanted shrinks by exactly what arrived.
  RequestParser parser;
  Request req;
  std::string buf;
  std::size_t last_wanted = 0;
  ParseStatus st = ParseStatus::NeedMore;
  for (std::size_t off = 0; off < input.size(); off += 4096) {
    buf.append(input, off, 4096);
    st = parser.parse(buf, req);
    if (st != ParseStatus::NeedMore) break;
    if (last_wanted != 0 && parser.bytesWanted() != 0) {
      CHECK(parser.bytesWanted() == last_wanted - 4096);
    }
    last_wanted = parser.bytesWanted();
    CHECK(last_wanted == input.size() - buf.size());  // the big value is last
  }
  REQUIRE(st == ParseStatus::Complete);
  CHECK(req.args[2].size() == value.size());
}

TEST_CASE("pipelined requests parse one after another", "[resp]") {
  const std::string input =
      "*1\r\n$4\r\nPING\r\n"
      "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
      "PING\r\n"
      "*0\r\n"
      "SET a \"b c\"\n"
      "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv";
  const std::vector<Outcome> want = {
      multibulk({"PING"}, 14), multibulk({"GET", "k"}, 20),        inlineCmd({"PING"}, 6),
      multibulk({}, 4),        inlineCmd({"SET", "a", "b c"}, 12), needMore(3),
  };
  const auto got = drain(input);
  REQUIRE(got.size() == want.size());
  std::string_view rest = input;
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("request " << i);
    checkSame(got[i], want[i], rest);
    rest.remove_prefix(got[i].consumed);
  }

  // The same stream through a simulated connection with uneven reads.
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::size_t> chunks(16);
    for (auto& c : chunks) c = 1 + rng() % 9;
    const auto fed = feedInChunks(input, chunks);
    REQUIRE(fed.size() == want.size() - 1);  // the trailing partial request stays buffered
    for (std::size_t i = 0; i < fed.size(); ++i) {
      CHECK(fed[i].args == want[i].args);
      CHECK(fed[i].inline_form == want[i].inline_form);
    }
  }
}

TEST_CASE("a reused Request carries nothing over", "[resp]") {
  RequestParser parser;
  Request req;
  const std::string first = "SET \"a\\nb\" c\r\n";
  REQUIRE(parser.parse(first, req) == ParseStatus::Complete);
  CHECK(req.inline_form);
  REQUIRE(req.args.size() == 3);
  const std::string second = "*1\r\n$4\r\nPING\r\n";
  REQUIRE(parser.parse(second, req) == ParseStatus::Complete);
  CHECK_FALSE(req.inline_form);
  REQUIRE(req.args.size() == 1);
  CHECK(req.args[0] == "PING");
  CHECK(req.raw == second);
}

TEST_CASE("multibulk count errors", "[resp]") {
  for (const char* bad : {"*abc\r\n", "*+5\r\n", "* 5\r\n", "*5 \r\n", "*\r\n", "*05\r\n",
                          "*-0\r\n", "*-\r\n", "*1x\r\n", "*99999999999999999999\r\n",
                          "*9223372036854775808\r\n", "*3\n$1\r\na\r\n", "*3\rX"}) {
    INFO(bad);
    checkAllWays(bad, error("invalid multibulk length"));
  }
  // Counts right at the edge of the number range parse; beyond the limit they fail.
  checkAllWays("*-9223372036854775808\r\n", multibulk({}, 23));
  checkAllWays("*9223372036854775807\r\n", error("invalid multibulk length"));

  ParserLimits limits;
  limits.max_array_len = 3;
  checkAllWays("*4\r\n", error("invalid multibulk length"), limits);
  const std::string three = encode({"a", "b", "c"});
  checkAllWays(three, multibulk({"a", "b", "c"}, three.size()), limits);
}

TEST_CASE("too long multibulk count line", "[resp]") {
  const std::string digits(64 * kKiB, '1');
  checkAllWays("*" + digits, error("too big mbulk count string"));
  // The verdict must not depend on whether the CR arrived in the same read.
  checkAllWays("*" + digits + "\r\n", error("too big mbulk count string"));
  // Just inside the limit the line is read, and then fails as a number.
  checkAllWays("*" + digits.substr(1) + "\r\n", error("invalid multibulk length"));
  checkAllWays("*" + digits.substr(1), needMore(0));
}

TEST_CASE("arg headers must start with $", "[resp]") {
  checkAllWays("*1\r\nX", error("expected '$', got 'X'"));
  checkAllWays("*1\r\n:3\r\n", error("expected '$', got ':'"));
  checkAllWays("*2\r\n$3\r\nGET\r\n+k\r\n", error("expected '$', got '+'"));
  // Nested arrays are not a request.
  checkAllWays("*1\r\n*1\r\n$4\r\nPING\r\n", error("expected '$', got '*'"));
  // CR/LF are shown as spaces so the error reply stays on one line.
  checkAllWays("*1\r\n\r\n", error("expected '$', got ' '"));
  checkAllWays("*1\r\n\n", error("expected '$', got ' '"));
  checkAllWays("*1\r\n\0"s, error("expected '$', got '\0'"s));
}

TEST_CASE("bulk length errors", "[resp]") {
  for (const char* bad :
       {"*1\r\n$abc\r\n", "*1\r\n$-1\r\n", "*1\r\n$-5\r\n", "*1\r\n$+1\r\n", "*1\r\n$ 1\r\n",
        "*1\r\n$1 \r\n", "*1\r\n$\r\n", "*1\r\n$01\r\n", "*1\r\n$-0\r\n",
        "*1\r\n$99999999999999999999\r\n", "*1\r\n$1\rX", "*1\r\n$1\n\r\n"}) {
    INFO(bad);
    checkAllWays(bad, error("invalid bulk length"));
  }
  ParserLimits limits;
  limits.max_bulk_len = 5;
  checkAllWays("*1\r\n$6\r\n", error("invalid bulk length"), limits);
  const std::string five = encode({"abcde"});
  checkAllWays(five, multibulk({"abcde"}, five.size()), limits);
}

TEST_CASE("too long bulk length line", "[resp]") {
  const std::string digits(64 * kKiB, '1');
  checkAllWays("*1\r\n$" + digits, error("too big bulk count string"));
  checkAllWays("*1\r\n$" + digits + "\r\n", error("too big bulk count string"));
  checkAllWays("*1\r\n$" + digits.substr(1) + "\r\n", error("invalid bulk length"));
}

TEST_CASE("bulk data must be followed by CRLF", "[resp]") {
  for (const char* bad :
       {"*1\r\n$3\r\nGETX\r\n", "*1\r\n$3\r\nGETX", "*1\r\n$3\r\nGET\rX", "*1\r\n$3\r\nGET\n\r",
        "*1\r\n$3\r\nGET\r\r\n", "*2\r\n$3\r\nGET\r\n$1\r\nkk\r\n", "*1\r\n$0\r\nX"}) {
    INFO(bad);
    checkAllWays(bad, error("expected CRLF after bulk data"));
  }
}

TEST_CASE("unauthenticated limits", "[resp]") {
  std::vector<std::string> ten_args(10, "x");
  std::vector<std::string_view> ten_views(ten_args.begin(), ten_args.end());
  const std::string ten = encode(ten_views);
  checkAllWays(ten, multibulk(ten_args, ten.size()), kUnauthenticatedLimits);
  checkAllWays("*11\r\n", error("unauthenticated multibulk length"), kUnauthenticatedLimits);

  const std::string max_value(16 * kKiB, 'v');
  const std::string fits = encode({"AUTH", max_value});
  checkAllWays(fits, multibulk({"AUTH", max_value}, fits.size()), kUnauthenticatedLimits);
  checkAllWays("*2\r\n$4\r\nAUTH\r\n$16385\r\n", error("unauthenticated bulk length"),
               kUnauthenticatedLimits);

  // The same requests pass with the default limits, and setLimits switches.
  checkAllWays("*11\r\n", needMore(0));
  RequestParser parser(kUnauthenticatedLimits);
  Request req;
  REQUIRE(parser.parse("*11\r\n", req) == ParseStatus::Error);
  parser.setLimits({});
  CHECK(parser.limits().max_array_len == ParserLimits{}.max_array_len);
  CHECK(parser.parse("*11\r\n", req) == ParseStatus::NeedMore);
  parser.reset();
  parser.setLimits(kUnauthenticatedLimits);
  CHECK(parser.limits().max_array_len == 10);
  CHECK(parser.limits().max_bulk_len == 16 * kKiB);
  CHECK(parser.parse("*11\r\n", req) == ParseStatus::Error);
  CHECK(parser.errorMessage() == "unauthenticated multibulk length");
}

TEST_CASE("a length header is refused at its first impossible byte", "[resp]") {
  // No CR needed: these can never become a length, however many bytes follow.
  checkAllWays("*12x"s, error("invalid multibulk length"));
  checkAllWays("*\0garbage"s, error("invalid multibulk length"));
  checkAllWays("*1\r\n$\0zz"s, error("invalid bulk length"));
  checkAllWays("*1\r\n$-x"s, error("invalid bulk length"));
  // Still a length in the making: wait.
  checkAllWays("*12"s, needMore(0));
  checkAllWays("*-1\r"s, needMore(0));
}

TEST_CASE("reset forgets a partial request", "[resp]") {
  RequestParser parser;
  Request req;
  REQUIRE(parser.parse("*2\r\n$3\r\nGET\r\n$5\r\nab", req) == ParseStatus::NeedMore);
  parser.reset();
  const std::string other = "*1\r\n$4\r\nPING\r\n";
  REQUIRE(parser.parse(other, req) == ParseStatus::Complete);
  REQUIRE(req.args.size() == 1);
  CHECK(req.args[0] == "PING");
  CHECK(parser.consumed() == other.size());

  // After an error the parser can start over too.
  REQUIRE(parser.parse("*1\r\nX", req) == ParseStatus::Error);
  parser.reset();
  REQUIRE(parser.parse(other, req) == ParseStatus::Complete);
  CHECK(req.args[0] == "PING");
}

TEST_CASE("inline commands", "[resp]") {
  checkAllWays("PING\r\n", inlineCmd({"PING"}, 6));
  checkAllWays("PING\n", inlineCmd({"PING"}, 5));
  checkAllWays("SET k v\r\n", inlineCmd({"SET", "k", "v"}, 9));
  checkAllWays("  SET\tk   v \t \r\n", inlineCmd({"SET", "k", "v"}, 16));
  // Blanks that only sdssplitargs' isspace() skips: between args, not inside one.
  checkAllWays("\vGET\fk\v\r\n", inlineCmd({"GET\fk\v"}, 9));
  checkAllWays("GET \vk\n", inlineCmd({"GET", "k"}, 7));
  // A CR not right before the LF separates args.
  checkAllWays("GET\rk\n", inlineCmd({"GET", "k"}, 6));
  checkAllWays("GET k\r\r\n", inlineCmd({"GET", "k"}, 8));
  // Other first bytes are inline too.
  checkAllWays("$3\r\n", inlineCmd({"$3"}, 4));
  // A raw NUL byte: refused (Redis never runs such a line); an escaped one
  // inside quotes is fine (below).
  checkAllWays("GET a\0b\r\n"s, error("NUL byte in inline request"));
  checkAllWays("GET k", needMore(0));
  checkAllWays("GET k\r", needMore(0));
}

TEST_CASE("empty inline lines complete with no args", "[resp]") {
  checkAllWays("\r\n", inlineCmd({}, 2));
  checkAllWays("\n", inlineCmd({}, 1));
  checkAllWays("   \t \r\n", inlineCmd({}, 7));
  const auto outcomes = drain("\r\n\nPING\r\n");
  REQUIRE(outcomes.size() == 4);
  CHECK(outcomes[0].args.empty());
  CHECK(outcomes[1].args.empty());
  CHECK(outcomes[2].args == std::vector<std::string>{"PING"});
}

TEST_CASE("inline quoting and escapes", "[resp]") {
  checkAllWays("SET k \"hello world\"\r\n", inlineCmd({"SET", "k", "hello world"}, 21));
  checkAllWays("SET k 'hello world'\r\n", inlineCmd({"SET", "k", "hello world"}, 21));
  checkAllWays("SET k \"\"\r\n", inlineCmd({"SET", "k", ""}, 10));
  checkAllWays("SET k ''\r\n", inlineCmd({"SET", "k", ""}, 10));
  checkAllWays(R"(ECHO "a\nb\rc\td\be\af\\g\"h")"
               "\r\n",
               inlineCmd({"ECHO", "a\nb\rc\td\be\af\\g\"h"}, 31));
  checkAllWays(R"(ECHO "\x41\x6a\x6A\x00z")"
               "\n",
               inlineCmd({"ECHO", "Ajj\0z"s}, 25));
  // Not a complete \xHH: the backslash escapes the next byte literally.
  checkAllWays(R"(ECHO "\xZZ" "\x4" "\q")"
               "\n",
               inlineCmd({"ECHO", "xZZ", "x4", "q"}, 23));
  // Single quotes: only \' is an escape.
  checkAllWays(R"(ECHO 'it\'s' 'a\nb' 'c"d')"
               "\n",
               inlineCmd({"ECHO", "it's", "a\\nb", "c\"d"}, 26));
  // Quotes keep blanks and CR inside one arg.
  checkAllWays("ECHO \"a \t\rb\"\n", inlineCmd({"ECHO", "a \t\rb"}, 13));
  // A quote may open mid-arg; the arg ends at the closing quote.
  checkAllWays("ECHO ab\"c d\" e\n", inlineCmd({"ECHO", "abc d", "e"}, 15));
  checkAllWays("ECHO a\"\"\n", inlineCmd({"ECHO", "a"}, 9));
  // A closing quote may be followed by any blank.
  checkAllWays("ECHO \"a\"\t'b'\v\"c\"\r\n", inlineCmd({"ECHO", "a", "b", "c"}, 18));
}

TEST_CASE("inline args are views into the input unless unescaped", "[resp]") {
  RequestParser parser;
  Request req;
  const std::string plain = "SET key \"two words\" 'single'\r\n";
  REQUIRE(parser.parse(plain, req) == ParseStatus::Complete);
  REQUIRE(req.args.size() == 4);
  for (auto a : req.args) CHECK(within(a, plain));
  CHECK(req.args[2] == "two words");
  CHECK(req.args[2].data() == plain.data() + 9);
  CHECK(req.raw.empty());
  CHECK(req.inline_form);

  // One escaped arg moves every arg into storage.
  const std::string escaped = "SET key \"a\\x42c\" plain\r\n";
  REQUIRE(parser.parse(escaped, req) == ParseStatus::Complete);
  REQUIRE(req.args.size() == 4);
  for (auto a : req.args) CHECK(within(a, req.storage));
  CHECK(req.args[0] == "SET");
  CHECK(req.args[1] == "key");
  CHECK(req.args[2] == "aBc");
  CHECK(req.args[3] == "plain");
  CHECK(parser.consumed() == escaped.size());

  // Quotes opening mid-arg make a non-contiguous arg, which also needs storage.
  const std::string joined = "ECHO ab\"cd\"\r\n";
  REQUIRE(parser.parse(joined, req) == ParseStatus::Complete);
  REQUIRE(req.args.size() == 2);
  CHECK(req.args[1] == "abcd");
  CHECK(within(req.args[1], req.storage));
}

TEST_CASE("unbalanced inline quotes", "[resp]") {
  for (const char* bad :
       {"SET \"a b\r\n", "SET 'a b\r\n", "SET \"a\"b\r\n", "SET 'a'b\r\n", "SET \"a\\\"\r\n",
        "SET 'a\\'\r\n", "SET \"\r\n", "SET \"a\"\"b\"\r\n", "SET \"a\\\n"}) {
    INFO(bad);
    checkAllWays(bad, error("unbalanced quotes in request"));
  }
  // The line ends at the first LF, even inside quotes.
  checkAllWays("ECHO \"a\nb\"\n", error("unbalanced quotes in request"));
}

TEST_CASE("inline line length limit", "[resp]") {
  ParserLimits limits;
  limits.max_inline_len = 16;
  const std::string sixteen = "ECHO 12345678901";  // 16 bytes before the LF
  REQUIRE(sixteen.size() == 16);
  checkAllWays(sixteen + "\n", inlineCmd({"ECHO", "12345678901"}, 17), limits);
  checkAllWays(sixteen, needMore(0), limits);
  // The CR counts toward the line, and the verdict does not depend on splits.
  checkAllWays(sixteen + "\r\n", error("too big inline request"), limits);
  checkAllWays(sixteen + "2", error("too big inline request"), limits);
  checkAllWays(sixteen + "2\n", error("too big inline request"), limits);

  // Default limit: 64 KiB.
  const std::string big(64 * kKiB + 1, 'a');
  checkAllWays(big, error("too big inline request"));
  checkAllWays(big.substr(1) + "\n", inlineCmd({big.substr(1)}, big.size()));
}

TEST_CASE("appendMultibulk encodes RESP requests", "[resp]") {
  CHECK(encode({"GET", "k"}) == "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
  CHECK(encode({}) == "*0\r\n");
  CHECK(encode({""}) == "*1\r\n$0\r\n\r\n");

  std::string out = "prefix";
  appendMultibulk(out, {"PING"});
  CHECK(out == "prefix*1\r\n$4\r\nPING\r\n");

  // Round trip, including binary bytes and a long arg.
  const std::string binary = "\0\r\n*1\r\n$"s;
  const std::string longer(1000, 'z');
  const std::vector<std::string_view> args = {"SET", binary, "", longer};
  const std::string encoded = encode(args);
  checkAllWays(encoded, multibulk({"SET", binary, "", longer}, encoded.size()));

  // Inline commands are forwarded by re-encoding their args.
  RequestParser parser;
  Request req;
  REQUIRE(parser.parse("SET \"a b\" \"\\x00\"\r\n", req) == ParseStatus::Complete);
  const std::string forwarded = encode(req.args);
  CHECK(forwarded == "*3\r\n$3\r\nSET\r\n$3\r\na b\r\n$1\r\n\0\r\n"s);
  Request again;
  REQUIRE(parser.parse(forwarded, again) == ParseStatus::Complete);
  CHECK(again.args == req.args);
  CHECK_FALSE(again.inline_form);
}

TEST_CASE("the one-pass path answers as the resumable parser, for near-valid requests", "[resp]") {
  // A whole request in the buffer takes the one-pass path; fed byte by byte it
  // never does. Mutations of valid requests must get the same outcome both ways.
  std::mt19937 rng(7);
  const std::string alphabet = "*$\r\n0123456789-+ abcGET";
  for (int i = 0; i < 4000; ++i) {
    std::vector<std::string> args(1 + rng() % 4);
    for (auto& a : args) a = std::string(rng() % 12, "xyz"[rng() % 3]);
    std::string input = encode(std::vector<std::string_view>(args.begin(), args.end()));
    for (int m = static_cast<int>(rng() % 3); m > 0; --m) {
      const std::size_t at = rng() % input.size();
      switch (rng() % 3) {
        case 0:
          input[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          input.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        default:
          input.erase(at, 1);
          break;
      }
    }
    if (input.empty() || input[0] != '*') continue;
    ParserLimits limits;
    if (rng() % 4 == 0) limits = kUnauthenticatedLimits;
    INFO("input: " << input);
    std::size_t fed = 0;
    const Outcome slow = parseByteByByte(input, limits, false, fed);
    const Outcome fast = parseWhole(input, limits);
    if (slow.status == ParseStatus::NeedMore) {
      CHECK(fast.status == ParseStatus::NeedMore);
    } else {
      checkSame(fast, slow, input);
    }
  }
}
