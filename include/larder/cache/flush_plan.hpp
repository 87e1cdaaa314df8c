#pragma once
// The Flusher's decisions, with no I/O: which queue entries are replays, which
// key goes to which apply connection, how one key's writes coalesce, and what
// a PostgreSQL error means for the batch. Unit-tested without sockets.
//
//   queue entries, oldest first
//     |  id <= the applied mark of the key's partition  -> replay: skipped, acked
//     |  key no longer fits the keyspace                -> dead letter
//     v
//   partition p = hash(key) % partitions   (a key always lands in the same p,
//     |                                     so each apply connection sees a
//     v                                     key's writes in queue order)
//   coalesce per key (Change::then) -> PartitionBatch: rows, the last entry id
//   of each row, and `through`: the partition's new applied mark
//
// The applied marks live in PostgreSQL (flush_state.hpp), each updated in the
// transaction that applies its partition's rows, so "applied" and "recorded
// as applied" can never disagree. A partition's mark says: every entry of this
// partition with an id up to here was applied (or dead-lettered). Marks for
// an earlier partition count stay valid for the entries they covered.
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "larder/cache/change.hpp"
#include "larder/pg/connection.hpp"

namespace larder::cache {

struct Keyspace;

// A Redis stream id "<ms>-<seq>".
struct StreamId {
  std::uint64_t ms = 0;
  std::uint64_t seq = 0;

  static std::optional<StreamId> parse(std::string_view text);
  std::string str() const;
  bool zero() const { return ms == 0 && seq == 0; }
  auto operator<=>(const StreamId&) const = default;
};

// What a PostgreSQL error means for the rows being flushed.
enum class FlushVerdict {
  Row,    // 22xxx, 23xxx: this row's data is refused; it goes to the dead letters
  Pause,  // anything else: the keyspace's flush waits (backoff), queue and cache kept
};
FlushVerdict classifyFlushError(const pg::PgError& error);
// Connection loss, serialization failure, deadlock, a lock or statement
// timeout, shutdown: expected to pass by itself. Still a pause, but not one
// an operator has to act on (logged at a lower level).
bool transientFlushError(const pg::PgError& error);

// Which apply connection a key belongs to (FNV-1a, stable across runs).
std::size_t partitionOf(std::string_view key, std::size_t partitions);

// The applied marks of one keyspace queue, as read from PostgreSQL.
struct AppliedMarks {
  struct Generation {
    std::size_t partitions = 1;
    std::vector<StreamId> marks;  // one per partition
  };
  Generation current;               // the configured partition count
  std::vector<Generation> earlier;  // other partition counts still on record

  explicit AppliedMarks(std::size_t partitions = 1);
  // True when the entry `id` of `key` was applied under any generation.
  bool applied(std::string_view key, StreamId id) const;
  // The newest id any generation covers: Redis' queue must never hand out ids at or below it.
  StreamId highest() const;
};

struct QueueEntry {
  StreamId id;
  std::string key;
  Change change;
};

// A flusher read: XRANGE's reply (*N entries, each *2: id, *2k field/value),
// then the read script's (flush_scripts.hpp): *6: instance id, newest id,
// :depth, :now ms, last generated id, oldest id   ('' for none)
struct QueueRead {
  std::string instance;
  std::vector<QueueEntry> entries;
  std::optional<StreamId> newest;     // the queue's newest entry
  std::optional<StreamId> oldest;     // ... and oldest
  std::optional<StreamId> generated;  // the queue's last generated id
  long long depth = 0;
  long long now_ms = 0;
  std::vector<std::string> unknown_fields;  // "id field" of fields Larder does not write
};
// Decoded straight from the RESP bytes (no reply tree: a batch is thousands
// of strings); false when the reply has another shape (an error, say).
bool decodeQueueRead(std::string_view entries, std::string_view meta, QueueRead& out);

struct PartitionBatch {
  std::vector<PendingRow> rows;  // one per key, coalesced
  std::vector<StreamId> last;    // per row: the key's last entry in the batch
  StreamId through;              // the partition's mark once this commits
  std::size_t entries = 0;       // entries folded into rows
  bool empty() const { return rows.empty(); }
};

struct Unmatched {
  PendingRow row;  // key_values empty
  StreamId last;
};

struct FlushBatch {
  std::vector<PartitionBatch> parts;  // one per partition
  // Keys whose entries in this batch were all applied before (a replay), with
  // their last such entry: the cached value and marker may be stale.
  std::vector<std::pair<std::string, StreamId>> replayed;
  std::size_t replayed_entries = 0;
  std::vector<Unmatched> unmatched;  // keys that no longer fit the keyspace
  std::size_t coalesced = 0;         // entries folded into an earlier entry's row
  StreamId last;                     // the batch's last entry
};

FlushBatch planBatch(const Keyspace& ks, const std::vector<QueueEntry>& entries,
                     const AppliedMarks& marks);

// The ack script's arguments for a committed batch (flush_scripts.cpp,
// ackQueue): the id to trim below, each row's key, marker and last entry id,
// then the replayed and unmatched keys (their markers go, if no newer write
// came).
void appendAckSection(std::vector<std::string>& args, const FlushBatch& batch);

}  // namespace larder::cache
