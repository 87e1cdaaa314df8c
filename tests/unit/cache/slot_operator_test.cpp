#include "larder/cache/slot_operator.hpp"

#include <catch2/catch.hpp>

#include "larder/common/errors.hpp"

using namespace larder::cache;

TEST_CASE("slot chunks stay inside their range, at most per_call slots each", "[cache][slots]") {
  // redis-cli's three-primary cut: 0-5460, 5461-10922, 10923-16383.
  const std::vector<std::pair<int, int>> ranges{{0, 5460}, {5461, 10922}, {10923, 16383}};
  const auto chunks = slotChunks(ranges, 1024);
  int covered = 0, next = 0;
  for (const auto& [first, last] : chunks) {
    CHECK(first == next);  // in order, no gap, no overlap
    CHECK(last >= first);
    CHECK(last - first + 1 <= 1024);
    const bool inside = std::any_of(ranges.begin(), ranges.end(), [&](const auto& r) {
      return r.first <= first && last <= r.second;
    });
    CHECK(inside);
    covered += last - first + 1;
    next = last + 1;
  }
  CHECK(covered == 16384);
  CHECK(chunks.size() == 18);  // 6 per range: 5 of 1024 and the rest
  CHECK(chunks[5] == std::pair<int, int>{5120, 5460});

  CHECK(slotChunks({{7, 7}}, 1024) == std::vector<std::pair<int, int>>{{7, 7}});
  CHECK(slotChunks({{0, 2047}}, 1024) == std::vector<std::pair<int, int>>{{0, 1023}, {1024, 2047}});
  CHECK(slotChunks({}, 1024).empty());
  CHECK(slotChunks({{0, 10}}, 0).empty());
}

TEST_CASE("a cluster dead letter id is <slot>/<stream id>, both ways", "[cache][slots]") {
  CHECK(slotEntryId(5474, "1733500000000-0") == "5474/1733500000000-0");
  const auto id = parseSlotEntryId("5474/1733500000000-3");
  REQUIRE(id);
  CHECK(id->slot == 5474);
  CHECK(id->id.ms == 1733500000000ULL);
  CHECK(id->id.seq == 3);
  CHECK(slotEntryId(id->slot, id->id.str()) == "5474/1733500000000-3");

  const auto edge = parseSlotEntryId("16383/0-0");
  REQUIRE(edge);
  CHECK(edge->slot == 16383);
  CHECK(parseSlotEntryId("0/1-1"));
  CHECK(parseSlotEntryId("00012/1-1")->slot == 12);  // leading zeros: still the number
  CHECK(parseSlotEntryId("1/18446744073709551615-18446744073709551615"));
}

TEST_CASE("malformed cluster dead letter ids are refused", "[cache][slots]") {
  for (const char* bad :
       {"",          "/",         "1733500000000-0",  // a one-Redis id: which slot?
        "16384/1-0", "99999/1-0", "123456/1-0",
        "-1/1-0",    "+1/1-0",    " 1/1-0",
        "1 /1-0",    "1/1-0 ",    "1/ 1-0",
        "a/1-0",     "1/abc",     "1/1",
        "1/1-",      "1/-0",      "1/-",
        "1/+",       "1/1-0-0",   "1/1--0",
        "1//1-0",    "1/1-0/2",   "1/18446744073709551616-0",
        "1/0x10-0",  "1/1e3-0",   "1/1-0\r\n"}) {
    INFO(bad);
    CHECK_FALSE(parseSlotEntryId(bad));
  }
}

TEST_CASE("the error for a bad id names it without breaking the reply line", "[cache][slots]") {
  const std::string e = larder::errors::badSlotEntryId("1/1-0\r\n+OK");
  CHECK(e.rfind("ERR Larder: '1/1-0??+OK' is not a dead letter id", 0) == 0);
  CHECK(e.find('\r') == std::string::npos);
  CHECK(e.find('\n') == std::string::npos);
  const std::string huge = larder::errors::badSlotEntryId(std::string(100000, 'x'));
  CHECK(huge.size() < 300);
  CHECK(huge.find("...'") != std::string::npos);
}

TEST_CASE("LIST reads only the slots that can hold the count oldest", "[cache][slots]") {
  using Id = larder::cache::StreamId;
  // Oldest entries: slot 9 at 100, slot 3 at 200, slot 5 at 300, slot 1 at 400.
  std::vector<SlotHead> heads{
      {5, Id{300, 0}, 50}, {1, Id{400, 0}, 1}, {9, Id{100, 0}, 2}, {3, Id{200, 0}, 70}};
  SECTION("count 3: the third slot can hold one of them, the fourth none") {
    const auto plan = planOldest(heads, 3);
    REQUIRE(plan.size() == 3);
    CHECK(plan[0].slot == 9);
    CHECK(plan[0].count == 2);  // only 2 there
    CHECK(plan[1].slot == 3);
    CHECK(plan[1].count == 2);
    CHECK(plan[2].slot == 5);
    CHECK(plan[2].count == 1);
  }
  SECTION("count larger than everything: every slot, whole") {
    const auto plan = planOldest(heads, 1000);
    REQUIRE(plan.size() == 4);
    long long total = 0;
    for (const auto& r : plan) total += r.count;
    CHECK(total == 50 + 1 + 2 + 70);
  }
  SECTION("count 0 or below: nothing read") {
    CHECK(planOldest(heads, 0).empty());
    CHECK(planOldest(heads, -5).empty());
  }
  SECTION("equal oldest ids: by slot, both kept when count allows") {
    const auto plan = planOldest({{8, Id{7, 0}, 1}, {2, Id{7, 0}, 1}}, 2);
    REQUIRE(plan.size() == 2);
    CHECK(plan[0].slot == 2);
    CHECK(plan[1].slot == 8);
  }
  CHECK(planOldest({}, 100).empty());
}
