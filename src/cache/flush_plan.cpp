#include "larder/cache/flush_plan.hpp"

#include <algorithm>
#include <charconv>
#include <unordered_map>

#include "larder/cache/keyspace.hpp"
#include "larder/cache/write_scripts.hpp"

namespace larder::cache {

namespace {

bool parseNumber(std::string_view text, std::uint64_t& out) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

bool startsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

// Reads RESP2 values one at a time from the front of a reply.
class RespCursor {
 public:
  explicit RespCursor(std::string_view s) : s_(s) {}
  bool array(long long& n) { return header('*', n) && n >= 0; }
  bool integer(long long& n) { return header(':', n); }
  bool bulk(std::string_view& out) {
    long long n = 0;
    if (!header('$', n)) return false;
    if (n < 0) {  // nil
      out = {};
      return true;
    }
    const auto len = static_cast<std::size_t>(n);
    if (s_.size() < len + 2 || s_.substr(len, 2) != "\r\n") return false;
    out = s_.substr(0, len);
    s_.remove_prefix(len + 2);
    return true;
  }

 private:
  bool header(char type, long long& n) {
    if (s_.empty() || s_.front() != type) return false;
    const auto end = s_.find("\r\n");
    if (end == std::string_view::npos) return false;
    n = 0;
    bool negative = false;
    for (std::size_t i = 1; i < end; ++i) {
      if (i == 1 && s_[i] == '-') {
        negative = true;
        continue;
      }
      if (s_[i] < '0' || s_[i] > '9') return false;
      n = n * 10 + (s_[i] - '0');
    }
    if (negative) n = -n;
    s_.remove_prefix(end + 2);
    return true;
  }
  std::string_view s_;
};

}  // namespace

bool decodeQueueRead(std::string_view entries_reply, std::string_view meta, QueueRead& out) {
  RespCursor c(entries_reply);
  long long entries = 0;
  std::string_view text;
  if (!c.array(entries)) return false;
  out.entries.clear();
  out.entries.reserve(static_cast<std::size_t>(entries));
  for (long long e = 0; e < entries; ++e) {
    long long pair = 0, fields = 0;
    std::string_view id_text;
    if (!c.array(pair) || pair != 2 || !c.bulk(id_text) || !c.array(fields)) return false;
    QueueEntry& entry = out.entries.emplace_back();
    const auto id = StreamId::parse(id_text);
    for (long long f = 0; f + 1 < fields; f += 2) {
      std::string_view name, value;
      if (!c.bulk(name) || !c.bulk(value)) return false;
      if (name == "k") {
        entry.key.assign(value);
      } else if (!entry.change.decodeField(name, value)) {
        out.unknown_fields.push_back(std::string(id_text) + " " + std::string(name));
      }
    }
    if (fields % 2 != 0 && !c.bulk(text)) return false;
    if (!id) {
      out.entries.pop_back();
      continue;
    }
    entry.id = *id;
  }
  RespCursor m(meta);
  long long n = 0, depth = 0, now = 0;
  std::string_view newest, generated, oldest;
  if (!m.array(n) || n != 6 || !m.bulk(text)) return false;
  out.instance.assign(text);
  if (!m.bulk(newest) || !m.integer(depth) || !m.integer(now) || !m.bulk(generated) ||
      !m.bulk(oldest)) {
    return false;
  }
  out.newest = StreamId::parse(newest);
  out.depth = depth;
  out.now_ms = now;
  out.generated = StreamId::parse(generated);
  out.oldest = StreamId::parse(oldest);
  return true;
}

std::optional<StreamId> StreamId::parse(std::string_view text) {
  StreamId id;
  const auto dash = text.find('-');
  if (!parseNumber(text.substr(0, dash), id.ms)) return std::nullopt;
  if (dash != std::string_view::npos && !parseNumber(text.substr(dash + 1), id.seq)) {
    return std::nullopt;
  }
  return id;
}

std::string StreamId::str() const { return std::to_string(ms) + "-" + std::to_string(seq); }

FlushVerdict classifyFlushError(const pg::PgError& error) {
  // Class 22 (data exception: a bad value, a value too long) and class 23
  // (integrity: NOT NULL, CHECK, foreign and unique keys) are verdicts on the
  // row's own data. Everything else (a read-only standby, a missing column,
  // a privilege, a lost connection) says nothing about the row.
  const std::string& s = error.sqlstate;
  if (startsWith(s, "22") || startsWith(s, "23")) return FlushVerdict::Row;
  return FlushVerdict::Pause;
}

bool transientFlushError(const pg::PgError& error) {
  const std::string& s = error.sqlstate;
  return error.retryable() || s == "57014" || s == "55P03" || s == "40001" || s == "40P01" ||
         startsWith(s, "08") || startsWith(s, "53") || startsWith(s, "57P");
}

std::size_t partitionOf(std::string_view key, std::size_t partitions) {
  if (partitions <= 1) return 0;
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<std::size_t>(h % partitions);
}

AppliedMarks::AppliedMarks(std::size_t partitions) {
  current.partitions = std::max<std::size_t>(1, partitions);
  current.marks.assign(current.partitions, StreamId{});
}

bool AppliedMarks::applied(std::string_view key, StreamId id) const {
  // A generation's mark covers the entries of its partition up to it; an
  // entry applied under an earlier partition count is still covered there.
  if (id <= current.marks[partitionOf(key, current.partitions)]) return true;
  for (const Generation& g : earlier) {
    if (id <= g.marks[partitionOf(key, g.partitions)]) return true;
  }
  return false;
}

StreamId AppliedMarks::highest() const {
  StreamId top;
  for (const StreamId& m : current.marks) top = std::max(top, m);
  for (const Generation& g : earlier) {
    for (const StreamId& m : g.marks) top = std::max(top, m);
  }
  return top;
}

FlushBatch planBatch(const Keyspace& ks, const std::vector<QueueEntry>& entries,
                     const AppliedMarks& marks) {
  const std::size_t n = marks.current.partitions;
  FlushBatch out;
  out.parts.resize(n);
  for (std::size_t p = 0; p < n; ++p) out.parts[p].through = marks.current.marks[p];
  // Where each key's row is: partition and index, or the unmatched list (-1).
  struct Slot {
    std::size_t part;
    std::size_t row;
    bool unmatched;
  };
  std::unordered_map<std::string_view, Slot> index;
  std::unordered_map<std::string_view, std::size_t> replays;  // key -> index in out.replayed
  std::vector<std::string_view> values;
  for (const QueueEntry& e : entries) {
    out.last = std::max(out.last, e.id);
    const std::size_t p = partitionOf(e.key, n);
    PartitionBatch& part = out.parts[p];
    if (marks.applied(e.key, e.id)) {
      // Applied and committed before (the queue was replayed: Redis restarted
      // from a snapshot, a replica, or a crash between COMMIT and the ack).
      ++out.replayed_entries;
      auto [it, fresh] = replays.try_emplace(e.key, out.replayed.size());
      if (fresh) {
        out.replayed.emplace_back(e.key, e.id);
      } else {
        out.replayed[it->second].second = e.id;
      }
      continue;
    }
    auto [it, fresh] = index.try_emplace(e.key, Slot{p, 0, false});
    if (fresh) {
      PendingRow row;
      row.key = e.key;
      if (ks.match(e.key, values)) {
        row.key_values.assign(values.begin(), values.end());
        it->second.row = part.rows.size();
        part.rows.push_back(std::move(row));
        part.last.push_back(e.id);
      } else {
        it->second.unmatched = true;
        it->second.row = out.unmatched.size();
        out.unmatched.push_back(Unmatched{std::move(row), e.id});
      }
    } else {
      ++out.coalesced;
    }
    const Slot& slot = it->second;
    if (slot.unmatched) {
      out.unmatched[slot.row].row.change.then(e.change);
      out.unmatched[slot.row].last = e.id;
    } else {
      PartitionBatch& home = out.parts[slot.part];
      home.rows[slot.row].change.then(e.change);
      home.last[slot.row] = e.id;
      home.through = std::max(home.through, e.id);
      ++home.entries;
    }
  }
  // A key written again after a replayed entry is not a replay any more: its
  // marker belongs to the new write.
  std::erase_if(out.replayed, [&index](const auto& r) { return index.count(r.first) != 0; });
  return out;
}

void appendAckSection(std::vector<std::string>& args, const FlushBatch& batch) {
  args.push_back(StreamId{batch.last.ms, batch.last.seq + 1}.str());
  std::size_t rows = 0;
  for (const auto& part : batch.parts) rows += part.rows.size();
  args.push_back(std::to_string(rows));
  for (const auto& part : batch.parts) {
    for (std::size_t i = 0; i < part.rows.size(); ++i) {
      args.push_back(part.rows[i].key);
      args.push_back(pendingMarker(part.rows[i].key));
      args.push_back(part.last[i].str());
    }
  }
  args.push_back(std::to_string(batch.replayed.size() + batch.unmatched.size()));
  // Replayed keys lose a marker that is no newer than the replay; so do
  // unmatched ones (their change is in the dead letters now).
  for (const auto& [key, last] : batch.replayed) {
    args.push_back(key);
    args.push_back(pendingMarker(key));
    args.push_back(last.str());
  }
  for (const auto& u : batch.unmatched) {
    args.push_back(u.row.key);
    args.push_back(pendingMarker(u.row.key));
    args.push_back(u.last.str());
  }
}

}  // namespace larder::cache
