#pragma once
// What a write does to a row, as the write queue, the pending-write marker and
// the Flusher see it. Pure: no I/O.
//
//   SET k v           -> {columns: {col: v}}
//   HSET k a 1 b 2    -> {columns: {a: 1, b: 2}}          (only named columns)
//   HDEL k a          -> {columns: {a: NULL}}
//   DEL k             -> {reset}                          (the row goes)
//   DEL k; HSET k a 1 -> {reset, columns: {a: 1}}         (row replaced: others NULL)
//
// Writes to one key coalesce in order with then(): the last value of a column
// wins, and a reset forgets everything before it. Encoded as flat field/value
// pairs ("d" -> "1", "f:<col>" -> value, "z:<col>" -> "" for NULL), the same in a
// stream entry, in the marker hash, and in the Lua scripts that merge them.
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "larder/pg/connection.hpp"

namespace larder::cache {

struct Keyspace;

struct Change {
  bool reset = false;  // the row is deleted before `columns` apply
  std::map<std::string, std::optional<std::string>, std::less<>> columns;  // nullopt: NULL

  bool deletesRow() const { return reset && columns.empty(); }
  bool empty() const { return !reset && columns.empty(); }
  // Coalesces a later change to the same key into this one.
  void then(const Change& later);
  // Flat field/value pairs, appended.
  void encode(std::vector<std::string>& out) const;
  // Applies one encoded field; false for a field name Larder does not write.
  bool decodeField(std::string_view name, std::string_view value);
};

// A row's change waiting to be applied, with the primary-key values of its key.
struct PendingRow {
  std::string key;
  std::vector<std::string> key_values;
  Change change;
};

// Opens a transaction of Larder's own writes. The invalidation trigger
// (docs/invalidation.md) skips them: Redis already holds what they write.
inline constexpr const char* kBeginOwnTransaction = "BEGIN; SET LOCAL larder.origin = 'larder'";

// One SQL statement of an apply, with its bound parameters. Every parameter is
// one array (one element per row) cast to the column's type without its
// modifier ($2::character varying[]), so a value is parsed by the type's own
// input function and a value too long for the column fails with 22001.
struct ApplyStatement {
  std::string sql;
  pg::Params params;
  std::vector<std::size_t> rows;  // indexes into the rows given to buildApply
  bool deletes = false;  // the DELETE: returns the 1-based position in `rows` of each row found
};

// The statements that apply `rows` (distinct keys) to the keyspace's table:
// one DELETE for the rows that go, and one upsert per set of columns written
// (INSERT ... SELECT FROM unnest(...) ON CONFLICT (pk) DO UPDATE SET those
// columns; UPDATE first when the table has a NOT NULL column without default
// that the write does not name). Columns the keyspace does not map are ignored.
std::vector<ApplyStatement> buildApply(const Keyspace& ks, const std::vector<PendingRow>& rows,
                                       const std::vector<std::size_t>& which);

}  // namespace larder::cache
