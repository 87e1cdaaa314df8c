#include "larder/cache/flush_plan.hpp"

#include <catch2/catch.hpp>

#include "larder/cache/keyspace.hpp"
#include "larder/cache/write_scripts.hpp"

using namespace larder;
using cache::AppliedMarks;
using cache::Change;
using cache::QueueEntry;
using cache::StreamId;

namespace {

cache::Keyspace notesKeyspace() {
  pg::TableInfo t;
  t.schema = "public";
  t.name = "notes";
  t.columns = {{"id", "bigint", true, 1, false, "bigint"}, {"body", "text", false, 0, false, ""}};
  config::KeyspaceConfig c;
  c.name = "notes";
  c.key = "note:{id}";
  c.table = "public.notes";
  c.shape = config::KeyShape::String;
  return cache::buildKeyspace(0, c, t);
}

QueueEntry set(std::uint64_t ms, std::string key, std::string value) {
  QueueEntry e;
  e.id = StreamId{ms, 0};
  e.key = std::move(key);
  e.change.columns["body"] = std::move(value);
  return e;
}

QueueEntry del(std::uint64_t ms, std::string key) {
  QueueEntry e;
  e.id = StreamId{ms, 0};
  e.key = std::move(key);
  e.change.reset = true;
  return e;
}

// The rows of a batch over every partition, as key -> body (or "<deleted>").
std::map<std::string, std::string> rowsOf(const cache::FlushBatch& b) {
  std::map<std::string, std::string> out;
  for (const auto& part : b.parts) {
    for (const auto& row : part.rows) {
      if (row.change.deletesRow()) {
        out[row.key] = "<deleted>";
      } else {
        out[row.key] = row.change.columns.at("body").value_or("<null>");
      }
    }
  }
  return out;
}

pg::PgError err(std::string state) { return pg::PgError{std::move(state), "message"}; }

}  // namespace

TEST_CASE("stream ids parse, print and compare as (ms, seq)", "[cache][flush]") {
  CHECK(StreamId::parse("1700000000000-5") == StreamId{1700000000000, 5});
  CHECK(StreamId::parse("12") == StreamId{12, 0});
  CHECK(StreamId{3, 9}.str() == "3-9");
  CHECK_FALSE(StreamId::parse(""));
  CHECK_FALSE(StreamId::parse("abc-1"));
  CHECK_FALSE(StreamId::parse("1-"));
  CHECK_FALSE(StreamId::parse("1-2x"));
  CHECK(StreamId{1, 10} < StreamId{2, 0});
  CHECK(StreamId{2, 1} > StreamId{2, 0});
  CHECK(StreamId{}.zero());
}

TEST_CASE("only classes 22 and 23 are the row's fault", "[cache][flush]") {
  using V = cache::FlushVerdict;
  CHECK(cache::classifyFlushError(err("22001")) == V::Row);  // value too long
  CHECK(cache::classifyFlushError(err("22P02")) == V::Row);  // bad text for the type
  CHECK(cache::classifyFlushError(err("23505")) == V::Row);  // unique
  CHECK(cache::classifyFlushError(err("23514")) == V::Row);  // check
  // Not about the row: the flush pauses, nothing is dead-lettered.
  CHECK(cache::classifyFlushError(err("25006")) == V::Pause);  // read-only standby
  CHECK(cache::classifyFlushError(err("42501")) == V::Pause);  // REVOKE
  CHECK(cache::classifyFlushError(err("42703")) == V::Pause);  // renamed column
  CHECK(cache::classifyFlushError(err("42P01")) == V::Pause);  // dropped table
  CHECK(cache::classifyFlushError(err("57014")) == V::Pause);  // statement timeout
  CHECK(cache::classifyFlushError(err("")) == V::Pause);       // connection lost
  CHECK(cache::classifyFlushError(err("LR001")) == V::Pause);  // another flusher moved the mark

  CHECK(cache::transientFlushError(err("40001")));
  CHECK(cache::transientFlushError(err("57P01")));
  CHECK(cache::transientFlushError(err("")));
  CHECK_FALSE(cache::transientFlushError(err("25006")));
  CHECK_FALSE(cache::transientFlushError(err("42703")));
}

TEST_CASE("a key always lands in the same partition", "[cache][flush]") {
  CHECK(cache::partitionOf("note:1", 1) == 0);
  std::vector<std::size_t> seen(4, 0);
  for (int i = 0; i < 400; ++i) {
    const std::string key = "note:" + std::to_string(i);
    const std::size_t p = cache::partitionOf(key, 4);
    REQUIRE(p < 4);
    CHECK(cache::partitionOf(key, 4) == p);
    ++seen[p];
  }
  for (std::size_t n : seen) CHECK(n > 50);  // spread, roughly
  // FNV-1a: stable across runs and builds (the marks depend on it).
  CHECK(cache::partitionOf("note:1", 2) == cache::partitionOf(std::string("note:1"), 2));
}

TEST_CASE("planBatch coalesces per key and keeps each key in one partition", "[cache][flush]") {
  const cache::Keyspace ks = notesKeyspace();
  const AppliedMarks marks(2);
  std::vector<QueueEntry> entries;
  for (int round = 0; round < 3; ++round) {
    for (int k = 0; k < 10; ++k) {
      entries.push_back(
          set(100 + round * 10 + k, "note:" + std::to_string(k), "v" + std::to_string(round)));
    }
  }
  entries.push_back(del(200, "note:3"));
  const cache::FlushBatch b = planBatch(ks, entries, marks);
  REQUIRE(b.parts.size() == 2);
  CHECK(b.coalesced == 21);
  CHECK(b.last == StreamId{200, 0});
  const auto rows = rowsOf(b);
  REQUIRE(rows.size() == 10);
  CHECK(rows.at("note:0") == "v2");  // the last write wins
  CHECK(rows.at("note:3") == "<deleted>");
  for (std::size_t p = 0; p < 2; ++p) {
    const auto& part = b.parts[p];
    REQUIRE(part.last.size() == part.rows.size());
    for (std::size_t i = 0; i < part.rows.size(); ++i) {
      CHECK(cache::partitionOf(part.rows[i].key, 2) == p);
      CHECK(part.rows[i].key_values.size() == 1);
    }
    // A partition's new mark is its own last entry, not the batch's.
    StreamId top;
    for (const auto& l : part.last) top = std::max(top, l);
    CHECK(part.through == top);
  }
  // note:3's last entry is the delete.
  const std::size_t p3 = cache::partitionOf("note:3", 2);
  for (std::size_t i = 0; i < b.parts[p3].rows.size(); ++i) {
    if (b.parts[p3].rows[i].key == "note:3") CHECK(b.parts[p3].last[i] == StreamId{200, 0});
  }
}

TEST_CASE("entries at or below their partition's mark are replays", "[cache][flush]") {
  const cache::Keyspace ks = notesKeyspace();
  AppliedMarks marks(2);
  const std::size_t pa = cache::partitionOf("note:1", 2);
  marks.current.marks[pa] = StreamId{150, 0};
  marks.current.marks[1 - pa] = StreamId{110, 0};
  // A Redis snapshot brought back note:1's v1 (at 100) after PostgreSQL got
  // its v2 (at 150): the old entry must not be applied again.
  const std::vector<QueueEntry> entries{set(100, "note:1", "v1"), set(150, "note:1", "v2"),
                                        set(160, "note:1", "v3")};
  cache::FlushBatch b = planBatch(ks, entries, marks);
  CHECK(b.replayed_entries == 2);
  CHECK(rowsOf(b) == std::map<std::string, std::string>{{"note:1", "v3"}});
  CHECK(b.replayed.empty());  // written again after the replay: its marker is the new write's
  CHECK(b.parts[pa].through == StreamId{160, 0});

  // Only replays: nothing to apply, the key's stale marker and value go.
  const std::vector<QueueEntry> old{set(100, "note:1", "v1"), set(120, "note:1", "v1b")};
  b = planBatch(ks, old, marks);
  CHECK(rowsOf(b).empty());
  REQUIRE(b.replayed.size() == 1);
  CHECK(b.replayed[0] == std::pair<std::string, StreamId>{"note:1", StreamId{120, 0}});
  CHECK(b.parts[pa].through == StreamId{150, 0});  // a mark never goes back

  // The mark is per partition: 120 is above the other partition's mark.
  std::string other;
  for (int i = 0; other.empty(); ++i) {
    const std::string k = "note:" + std::to_string(i);
    if (cache::partitionOf(k, 2) != pa) other = k;
  }
  b = planBatch(ks, {set(120, other, "x")}, marks);
  CHECK(rowsOf(b).size() == 1);
  CHECK(b.replayed_entries == 0);
}

TEST_CASE("marks of an earlier partition count still cover their entries", "[cache][flush]") {
  AppliedMarks marks(4);
  AppliedMarks::Generation two;
  two.partitions = 2;
  two.marks = {StreamId{100, 0}, StreamId{300, 0}};
  marks.earlier.push_back(two);
  for (int i = 0; i < 50; ++i) {
    const std::string key = "note:" + std::to_string(i);
    const StreamId covered = two.marks[cache::partitionOf(key, 2)];
    CHECK(marks.applied(key, covered));
    CHECK(marks.applied(key, StreamId{50, 0}));
    CHECK_FALSE(marks.applied(key, StreamId{covered.ms, 1}));
  }
  CHECK(marks.highest() == StreamId{300, 0});
  marks.current.marks[3] = StreamId{400, 2};
  CHECK(marks.highest() == StreamId{400, 2});
}

TEST_CASE("keys that no longer fit the keyspace are set apart", "[cache][flush]") {
  const cache::Keyspace ks = notesKeyspace();
  const std::vector<QueueEntry> entries{set(1, "note:1", "a"), set(2, "other:1", "b"),
                                        set(3, "other:1", "c")};
  const cache::FlushBatch b = planBatch(ks, entries, AppliedMarks(1));
  REQUIRE(b.unmatched.size() == 1);
  CHECK(b.unmatched[0].row.key == "other:1");
  CHECK(b.unmatched[0].last == StreamId{3, 0});
  CHECK(b.unmatched[0].row.change.columns.at("body") == "c");
  CHECK(rowsOf(b) == std::map<std::string, std::string>{{"note:1", "a"}});
  CHECK(b.last == StreamId{3, 0});
}

TEST_CASE("a read (XRANGE, then the read script) is decoded straight from RESP", "[cache][flush]") {
  const std::string entries =
      "*2\r\n"
      "*2\r\n$3\r\n5-1\r\n*4\r\n$1\r\nk\r\n$6\r\nnote:1\r\n$6\r\nf:body\r\n$2\r\nv1\r\n"
      "*2\r\n$3\r\n6-0\r\n*6\r\n$1\r\nk\r\n$6\r\nnote:2\r\n$1\r\nd\r\n$1\r\n1\r\n$3\r\nx:y\r\n$"
      "0\r\n\r\n";
  const std::string meta =
      "*6\r\n$4\r\nabcd\r\n$3\r\n9-0\r\n:12\r\n:1700000000000\r\n$3\r\n9-0\r\n$3\r\n4-2\r\n";
  cache::QueueRead r;
  REQUIRE(cache::decodeQueueRead(entries, meta, r));
  CHECK(r.instance == "abcd");
  REQUIRE(r.entries.size() == 2);
  CHECK(r.entries[0].id == StreamId{5, 1});
  CHECK(r.entries[0].key == "note:1");
  CHECK(r.entries[0].change.columns.at("body") == "v1");
  CHECK(r.entries[1].change.deletesRow());
  CHECK(r.unknown_fields == std::vector<std::string>{"6-0 x:y"});
  CHECK(r.newest == StreamId{9, 0});
  CHECK(r.depth == 12);
  CHECK(r.now_ms == 1700000000000);
  CHECK(r.generated == StreamId{9, 0});
  CHECK(r.oldest == StreamId{4, 2});

  const std::string empty_meta = "*6\r\n$0\r\n\r\n$0\r\n\r\n:0\r\n:5\r\n$0\r\n\r\n$0\r\n\r\n";
  REQUIRE(cache::decodeQueueRead("*0\r\n", empty_meta, r));
  CHECK(r.entries.empty());
  CHECK_FALSE(r.newest);
  CHECK_FALSE(r.generated);

  CHECK_FALSE(cache::decodeQueueRead("-ERR no\r\n", meta, r));
  CHECK_FALSE(cache::decodeQueueRead(entries, "-ERR no\r\n", r));
  CHECK_FALSE(cache::decodeQueueRead(entries.substr(0, entries.size() - 5), meta, r));
  CHECK_FALSE(cache::decodeQueueRead(entries, meta.substr(0, meta.size() - 5), r));
  CHECK_FALSE(cache::decodeQueueRead(entries, "*7\r\n", r));
}

TEST_CASE("the ack section names each row, then the keys whose markers go", "[cache][flush]") {
  // flush_scripts.cpp's ackQueue and ackSpan read this layout: minid, n,
  // n x (key, marker, last id), m, m x (key, marker, last id).
  const cache::Keyspace ks = notesKeyspace();
  const std::vector<QueueEntry> entries{set(1, "note:1", "a"), set(2, "other:1", "b"),
                                        set(3, "note:1", "c")};
  const cache::FlushBatch b = planBatch(ks, entries, AppliedMarks(1));
  std::vector<std::string> args{"linger"};
  cache::appendAckSection(args, b);
  const std::vector<std::string> want{"linger",
                                      "3-1",  // trim below: everything up to 3-0 is done
                                      "1",      "note:1",  cache::pendingMarker("note:1"),  "3-0",
                                      "1",      "other:1", cache::pendingMarker("other:1"), "2-0"};
  CHECK(args == want);
  // A batch of replays only: no rows, the replayed key's marker goes.
  AppliedMarks marks(1);
  marks.current.marks[0] = StreamId{5, 0};
  const cache::FlushBatch replay = planBatch(ks, {set(4, "note:2", "x")}, marks);
  args.clear();
  cache::appendAckSection(args, replay);
  CHECK(args ==
        std::vector<std::string>{"4-1", "0", "1", "note:2", cache::pendingMarker("note:2"), "4-0"});
}
