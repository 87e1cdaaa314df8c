#include "larder/cache/flush_state.hpp"

#include <array>
#include <charconv>
#include <unordered_map>

#include "larder/pg/catalog.hpp"

namespace larder::cache {

namespace asio = boost::asio;

namespace {

std::uint64_t number(std::string_view text) {
  std::uint64_t out = 0;
  std::from_chars(text.data(), text.data() + text.size(), out);
  return out;
}

}  // namespace

FlushState::FlushState(const std::string& table, std::string queue, std::size_t partitions)
    : queue_(std::move(queue)), partitions_(std::max<std::size_t>(1, partitions)) {
  std::string schema, name, error;
  if (!pg::splitTableName(table, schema, name, error)) {  // checked when the config loaded
    schema = "larder";
    name = "flush_state";
  }
  schema_ = pg::quoteIdentifier(schema);
  table_ = schema_ + "." + pg::quoteIdentifier(name);
  regclass_ = table_;
}

asio::awaitable<pg::PgError> FlushState::load(pg::Connection& connection, AppliedMarks& marks,
                                              bool ensure_table) {
  // Created only when missing, so that an operator can create it beforehand
  // for a role that may not create schemas.
  if (ensure_table) {
    if (auto e = co_await createTable(connection)) co_return e;
  }
  co_return co_await loadRows(connection, marks);
}

asio::awaitable<pg::PgError> FlushState::createTable(pg::Connection& connection) const {
  const pg::Params regclass{regclass_};
  auto exists = co_await connection.query("SELECT to_regclass($1) IS NOT NULL", regclass);
  if (!exists.ok()) co_return exists.error;
  if (exists.result.rows() != 1 || exists.result.value(0, 0) != "t") {
    // IF NOT EXISTS still races (a unique violation in the catalog) when
    // several flushers create it at once: a transaction lock serialises them.
    const std::string ddl =
        "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('larder:state ddl', 0)); "
        "CREATE SCHEMA IF NOT EXISTS " +
        schema_ + "; CREATE TABLE IF NOT EXISTS " + table_ +
        " (queue text NOT NULL, partitions int NOT NULL, part int NOT NULL, "
        "ms bigint NOT NULL DEFAULT 0, seq bigint NOT NULL DEFAULT 0, "
        "PRIMARY KEY (queue, partitions, part)); COMMIT";
    auto created = co_await connection.script(ddl);
    if (!created.ok()) co_return created.error;
  }
  co_return pg::PgError{};
}

asio::awaitable<pg::PgError> FlushState::loadRows(pg::Connection& connection, AppliedMarks& marks) {
  const pg::Params rows{queue_, std::to_string(partitions_)};
  auto ensured = co_await connection.query(
      "INSERT INTO " + table_ +
          " (queue, partitions, part) SELECT $1, $2::int, g FROM generate_series(0, $2::int - 1) g"
          " ON CONFLICT DO NOTHING",
      rows);
  if (!ensured.ok()) co_return ensured.error;
  const pg::Params which{queue_};
  auto read = co_await connection.query(
      "SELECT partitions, part, ms, seq FROM " + table_ + " WHERE queue = $1", which);
  if (!read.ok()) co_return read.error;
  marks = AppliedMarks(partitions_);
  for (int r = 0; r < read.result.rows(); ++r) {
    const std::size_t partitions = number(read.result.value(r, 0));
    const std::size_t part = number(read.result.value(r, 1));
    const StreamId mark{number(read.result.value(r, 2)), number(read.result.value(r, 3))};
    if (partitions == 0 || part >= partitions) continue;
    AppliedMarks::Generation* g = nullptr;
    if (partitions == partitions_) {
      g = &marks.current;
    } else {
      for (auto& e : marks.earlier) {
        if (e.partitions == partitions) g = &e;
      }
      if (g == nullptr) {
        g = &marks.earlier.emplace_back();
        g->partitions = partitions;
        g->marks.assign(partitions, StreamId{});
      }
    }
    g->marks[part] = mark;
  }
  co_return pg::PgError{};
}

asio::awaitable<pg::PgError> FlushState::advance(pg::Connection& connection, std::size_t part,
                                                 StreamId from, StreamId to) const {
  const pg::Params params{queue_,
                          std::to_string(partitions_),
                          std::to_string(part),
                          std::to_string(to.ms),
                          std::to_string(to.seq),
                          std::to_string(from.ms),
                          std::to_string(from.seq)};
  auto outcome = co_await connection.prepared(
      "larder_flush_mark",
      "UPDATE " + table_ +
          " SET ms = $4::bigint, seq = $5::bigint WHERE queue = $1 AND partitions = $2::int AND "
          "part = $3::int AND ms = $6::bigint AND seq = $7::bigint",
      params);
  if (!outcome.ok()) co_return outcome.error;
  if (outcome.result.affected() != 1) {
    co_return pg::PgError{kMarkMoved, "another flusher applied this queue meanwhile"};
  }
  co_return pg::PgError{};
}

asio::awaitable<pg::PgError> FlushState::advanceAll(pg::Connection& connection,
                                                    const std::vector<Move>& moves) {
  if (moves.empty()) co_return pg::PgError{};
  // One statement, not one per slot: a batch spans up to ~1000 slots, and a
  // round trip each cost 18x the batch (tests/bench/write_behind/slot_marks_cost.py).
  std::array<std::vector<std::string>, 5> text;
  for (const Move& m : moves) {
    text[0].push_back(m.state->queue_);
    text[1].push_back(std::to_string(m.from.ms));
    text[2].push_back(std::to_string(m.from.seq));
    text[3].push_back(std::to_string(m.to.ms));
    text[4].push_back(std::to_string(m.to.seq));
  }
  pg::Params params;
  for (const auto& column : text) {
    std::vector<std::optional<std::string_view>> items(column.begin(), column.end());
    params.push_back(pg::arrayLiteral(items));
  }
  const std::string& table = moves.front().state->table_;
  // The join must be by the primary key: the table grows from a few rows to
  // one per slot while a plan made when it was small stays cached, and a
  // hash join over every row cost 100 ms per batch at 16k rows
  // (tests/bench/write_behind/cluster_flush_rate.py). Only for this statement.
  const std::string index_only =
      "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; "
      "SET LOCAL enable_mergejoin = off";
  if (auto set = co_await connection.script(index_only); !set.ok()) co_return set.error;
  auto outcome = co_await connection.prepared(
      "larder_flush_marks",
      "UPDATE " + table +
          " AS t SET ms = m.to_ms, seq = m.to_seq FROM unnest($1::text[], $2::bigint[], "
          "$3::bigint[], $4::bigint[], $5::bigint[]) AS m(queue, from_ms, from_seq, to_ms, "
          "to_seq) WHERE t.queue = m.queue AND t.partitions = 1 AND t.part = 0 AND "
          "t.ms = m.from_ms AND t.seq = m.from_seq",
      params);
  if (!outcome.ok()) co_return outcome.error;
  if (outcome.result.affected() != static_cast<long long>(moves.size())) {
    co_return pg::PgError{kMarkMoved, "another flusher applied this queue meanwhile"};
  }
  const std::string planner_defaults =
      "RESET enable_seqscan; RESET enable_hashjoin; RESET enable_mergejoin";
  if (auto reset = co_await connection.script(planner_defaults); !reset.ok()) {
    co_return reset.error;
  }
  co_return pg::PgError{};
}

asio::awaitable<pg::PgError> FlushState::loadSlots(pg::Connection& connection,
                                                   const std::vector<const FlushState*>& states,
                                                   std::vector<AppliedMarks>& marks,
                                                   bool ensure_table) {
  marks.assign(states.size(), AppliedMarks(1));
  if (states.empty()) co_return pg::PgError{};
  const FlushState& first = *states.front();
  if (ensure_table) {
    if (auto e = co_await first.createTable(connection)) co_return e;
  }
  std::vector<std::optional<std::string_view>> queues;
  for (const FlushState* state : states) queues.emplace_back(state->queue_);
  const pg::Params params{pg::arrayLiteral(queues)};
  auto ensured = co_await connection.query(
      "INSERT INTO " + first.table_ +
          " (queue, partitions, part) SELECT q, 1, 0 FROM unnest($1::text[]) q"
          " ON CONFLICT DO NOTHING",
      params);
  if (!ensured.ok()) co_return ensured.error;
  auto read = co_await connection.query("SELECT queue, ms, seq FROM " + first.table_ +
                                            " WHERE queue = ANY($1::text[]) AND partitions = 1 "
                                            "AND part = 0",
                                        params);
  if (!read.ok()) co_return read.error;
  std::unordered_map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < states.size(); ++i) index.emplace(states[i]->queue_, i);
  for (int r = 0; r < read.result.rows(); ++r) {
    const auto it = index.find(std::string(read.result.value(r, 0)));
    if (it == index.end()) continue;
    marks[it->second].current.marks[0] = {number(read.result.value(r, 1)),
                                          number(read.result.value(r, 2))};
  }
  co_return pg::PgError{};
}

}  // namespace larder::cache
