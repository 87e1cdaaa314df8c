#include "larder/proxy/reply_queue.hpp"

#include <catch2/catch.hpp>

using larder::proxy::ReplyQueue;

TEST_CASE("replies completed in order go straight out", "[server]") {
  ReplyQueue q;
  std::string out;
  auto a = q.reserve();
  auto b = q.reserve();
  CHECK(q.complete(a, "A", out) == 1);
  CHECK(out == "A");
  CHECK(q.complete(b, "B", out) == 1);
  CHECK(out == "AB");
  CHECK(q.empty());
}

TEST_CASE("replies completed out of order are held until their turn", "[server]") {
  ReplyQueue q;
  std::string out;
  auto a = q.reserve();
  auto b = q.reserve();
  auto c = q.reserve();
  CHECK(q.complete(c, "C", out) == 0);
  CHECK(q.complete(b, "BB", out) == 0);
  CHECK(out.empty());
  CHECK(q.heldBytes() == 3);
  CHECK(q.outstanding() == 3);
  CHECK(q.complete(a, "A", out) == 3);
  CHECK(out == "ABBC");
  CHECK(q.heldBytes() == 0);
  CHECK(q.empty());
}

TEST_CASE("stale and unknown tags are ignored", "[server]") {
  ReplyQueue q;
  std::string out;
  auto a = q.reserve();
  CHECK(a != larder::proxy::kStreamTag);
  CHECK(q.complete(a + 5, "X", out) == 0);
  CHECK(q.complete(a, "A", out) == 1);
  CHECK(q.complete(a, "again", out) == 0);
  CHECK(out == "A");
  CHECK(q.nextTag() == a + 1);
}

TEST_CASE("a long interleaving keeps request order", "[server]") {
  ReplyQueue q;
  std::string out, expected;
  std::vector<std::uint64_t> tags;
  for (int i = 0; i < 100; ++i) {
    tags.push_back(q.reserve());
    expected += std::to_string(i) + ",";
  }
  // Complete odd tags first, then even ones backwards.
  for (int i = 1; i < 100; i += 2) q.complete(tags[i], std::to_string(i) + ",", out);
  CHECK(out.empty());
  for (int i = 98; i >= 0; i -= 2) q.complete(tags[i], std::to_string(i) + ",", out);
  CHECK(out == expected);
}
