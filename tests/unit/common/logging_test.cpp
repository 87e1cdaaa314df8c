#include "larder/common/logging.hpp"

#include <catch2/catch.hpp>
#include <string>

using larder::jsonEscape;

TEST_CASE("JSON log lines escape what would break them", "[logging]") {
  CHECK(jsonEscape("plain text") == "plain text");
  CHECK(jsonEscape(R"(say "hi" \ bye)") == R"(say \"hi\" \\ bye)");
  CHECK(jsonEscape("a\nb\rc\td") == R"(a\nb\rc\td)");
  CHECK(jsonEscape(std::string("nul\0x\x1f\x7f", 7)) == R"(nul\u0000x\u001f\u007f)");
  CHECK(jsonEscape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");  // valid UTF-8 kept
  CHECK(jsonEscape("bad \xff\xfe end") == R"(bad \ufffd\ufffd end)");
  CHECK(jsonEscape("cut \xe2\x82") == R"(cut \ufffd\ufffd)");
  CHECK(jsonEscape("overlong \xc0\xaf") == R"(overlong \ufffd\ufffd)");
  CHECK(jsonEscape("surrogate \xed\xa0\x80") == R"(surrogate \ufffd\ufffd\ufffd)");
}
