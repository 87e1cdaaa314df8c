#include "larder/resp/reply_scanner.hpp"

#include <catch2/catch.hpp>
#include <string>

using larder::resp::ReplyScanner;
using larder::resp::ScanStatus;
using larder::resp::splitArray;

namespace {

// Feeds `input` one byte at a time, as a slow backend would; returns the frame
// sizes found, in order.
std::vector<std::size_t> scanByteByByte(const std::string& input) {
  ReplyScanner scanner;
  std::vector<std::size_t> frames;
  std::string buffer;
  for (char c : input) {
    buffer.push_back(c);
    for (;;) {
      auto status = scanner.scan(buffer);
      REQUIRE(status != ScanStatus::Error);
      if (status == ScanStatus::NeedMore) break;
      frames.push_back(scanner.frameSize());
      buffer.erase(0, scanner.frameSize());
    }
  }
  REQUIRE(buffer.empty());
  return frames;
}

}  // namespace

TEST_CASE("scanner finds RESP2 scalar replies", "[resp]") {
  ReplyScanner s;
  for (std::string frame : {"+OK\r\n", "-ERR bad\r\n", ":42\r\n", "$-1\r\n", "$0\r\n\r\n",
                            "$5\r\nhello\r\n", "*-1\r\n", "*0\r\n"}) {
    CAPTURE(frame);
    REQUIRE(s.scan(frame + "+NEXT\r\n") == ScanStatus::Complete);
    CHECK(s.frameSize() == frame.size());
  }
}

TEST_CASE("scanner handles nesting deeper than hiredis 0.14 allows", "[resp]") {
  std::string frame;
  for (int i = 0; i < 20; ++i) frame += "*1\r\n";
  frame += ":1\r\n";
  ReplyScanner s;
  REQUIRE(s.scan(frame) == ScanStatus::Complete);
  CHECK(s.frameSize() == frame.size());
  CHECK(scanByteByByte(frame + frame) == std::vector<std::size_t>{frame.size(), frame.size()});
}

TEST_CASE("scanner refuses nesting past its bound", "[resp]") {
  std::string frame;
  for (int i = 0; i < 10; ++i) frame += "*1\r\n";
  frame += ":1\r\n";
  ReplyScanner s(4);
  CHECK(s.scan(frame) == ScanStatus::Error);
  CHECK(s.errorMessage() == "reply nested too deeply");
}

TEST_CASE("scanner is binary safe and resumable", "[resp]") {
  const std::string bulk = std::string("$6\r\n") + std::string("a\r\n\0b\n", 6) + "\r\n";
  const std::string array = "*3\r\n" + bulk + ":7\r\n*2\r\n+x\r\n$-1\r\n";
  auto frames = scanByteByByte(bulk + array + bulk);
  CHECK(frames == std::vector<std::size_t>{bulk.size(), array.size(), bulk.size()});
}

TEST_CASE("scanner understands RESP3 types", "[resp]") {
  const std::string map = "%2\r\n+a\r\n:1\r\n+b\r\n,3.14\r\n";
  const std::string push = ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n";
  const std::string attr = "|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n";  // attribute then the reply
  const std::string misc = "_\r\n";
  const std::string verbatim = "=7\r\ntxt:abc\r\n";
  auto frames = scanByteByByte(map + push + attr + misc + verbatim + "#t\r\n");
  CHECK(frames == std::vector<std::size_t>{map.size(), push.size(), attr.size(), misc.size(),
                                           verbatim.size(), 4});
}

TEST_CASE("scanner reports malformed replies", "[resp]") {
  ReplyScanner s;
  CHECK(s.scan("?what\r\n") == ScanStatus::Error);
  CHECK(s.errorMessage() == "unexpected reply type byte 0x3f");
  CHECK(s.scan("$abc\r\n") == ScanStatus::Error);
  CHECK(s.errorMessage() == "bad bulk length");
  CHECK(s.scan("$1\r\nab\r\n") == ScanStatus::Error);
  CHECK(s.errorMessage() == "bulk without CRLF");
  CHECK(s.scan("+OK\n") == ScanStatus::Error);
  CHECK(s.errorMessage() == "reply line without CRLF");
  CHECK(s.scan("*-2\r\n") == ScanStatus::Error);
}

TEST_CASE("splitArray gives each element's frame, errors included", "[resp]") {
  const std::string row = "*6\r\n$3\r\nabc\r\n$0\r\n\r\n:4\r\n:1700\r\n$3\r\n1-1\r\n$0\r\n\r\n";
  const std::string error = "-ERR Script attempted to access a non local key in a cluster node\r\n";
  std::vector<std::string_view> elements;
  const std::string frame = "*3\r\n" + row + error + ":7\r\n";
  REQUIRE(splitArray(frame, elements));
  CHECK(elements == std::vector<std::string_view>{row, error, ":7\r\n"});
  REQUIRE(splitArray("*0\r\n", elements));
  CHECK(elements.empty());
  // Not one whole array: short, trailing bytes, not an array, a nil array.
  CHECK_FALSE(splitArray("*2\r\n:1\r\n", elements));
  CHECK_FALSE(splitArray("*1\r\n:1\r\n:2\r\n", elements));
  CHECK_FALSE(splitArray(error, elements));
  CHECK_FALSE(splitArray("*-1\r\n", elements));
  CHECK_FALSE(splitArray("", elements));
}
