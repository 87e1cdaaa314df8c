#pragma once
// Where the Flusher records, in PostgreSQL, how far each queue was applied:
// one row per (queue, partition count, partition) in `write_behind.state_table`
// (default larder.flush_state), updated in the very transaction that applies
// the partition's rows.
//
//   BEGIN
//   UPDATE state SET ms, seq = <new mark> WHERE queue, partitions, part
//                                          AND (ms, seq) = <mark we read>  -- must hit 1 row
//   DELETE ... / INSERT ... ON CONFLICT ...                                -- the rows
//   COMMIT
//
// The guard in the UPDATE makes the mark a fence as well as a record: if any
// other flusher (another instance, or this one before a reconnect) moved the
// mark since we read it, the UPDATE hits no row, the transaction rolls back and
// the marks are read again. The row lock it takes also serialises two
// flushers that both believe they own the queue.
#include <boost/asio/awaitable.hpp>
#include <string>

#include "larder/cache/flush_plan.hpp"
#include "larder/pg/connection.hpp"

namespace larder::cache {

class FlushState {
 public:
  // `table`: schema-qualified, as configured; `queue`: "<instance id>:<keyspace>".
  FlushState(const std::string& table, std::string queue, std::size_t partitions);

  // Creates the table if it is missing (CREATE SCHEMA/TABLE IF NOT EXISTS),
  // makes sure this queue's rows exist, and reads every mark of the queue.
  // `ensure_table` false: the caller knows the table exists.
  boost::asio::awaitable<pg::PgError> load(pg::Connection& connection, AppliedMarks& marks,
                                           bool ensure_table = true);

  // Inside the partition's transaction: moves its mark from `from` to `to`.
  // An error with SQLSTATE "LR001" when the mark was not `from` any more.
  boost::asio::awaitable<pg::PgError> advance(pg::Connection& connection, std::size_t part,
                                              StreamId from, StreamId to) const;

  const std::string& queue() const { return queue_; }

  // A cluster's slot queues (one partition each, all in one table): inside
  // the transaction, moves every listed mark from `from` to `to` in one
  // statement; "LR001" unless every one still held `from`.
  struct Move {
    const FlushState* state;
    StreamId from;
    StreamId to;
  };
  static boost::asio::awaitable<pg::PgError> advanceAll(pg::Connection& connection,
                                                        const std::vector<Move>& moves);
  // A cluster's slot queues met for the first time: their rows made if
  // missing and their marks read, two statements for all of them.
  // `ensure_table`: create the table first if it is missing.
  static boost::asio::awaitable<pg::PgError> loadSlots(pg::Connection& connection,
                                                       const std::vector<const FlushState*>& states,
                                                       std::vector<AppliedMarks>& marks,
                                                       bool ensure_table);

 private:
  boost::asio::awaitable<pg::PgError> createTable(pg::Connection& connection) const;
  boost::asio::awaitable<pg::PgError> loadRows(pg::Connection& connection, AppliedMarks& marks);

  std::string schema_;  // quoted
  std::string table_;   // quoted, schema-qualified
  std::string regclass_;
  std::string queue_;
  std::size_t partitions_;
};

// The SQLSTATE FlushState::advance reports when another flusher moved the mark.
inline constexpr const char* kMarkMoved = "LR001";

}  // namespace larder::cache
