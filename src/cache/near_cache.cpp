#include "larder/cache/near_cache.hpp"

#include <algorithm>

#include "larder/cache/mapped_read.hpp"
#include "larder/common/errors.hpp"
#include "larder/resp/reply_scanner.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::cache {

namespace {

// The element frames of an array frame (empty when it is not a RESP2 array).
bool splitArray(std::string_view frame, std::vector<std::string_view>& out) {
  out.clear();
  const auto header_end = frame.find("\r\n");
  if (frame.size() < 4 || frame[0] != '*' || frame[1] == '-' ||
      header_end == std::string_view::npos) {
    return false;
  }
  std::string_view rest = frame.substr(header_end + 2);
  resp::ReplyScanner scanner;
  while (!rest.empty()) {
    if (scanner.scan(rest) != resp::ScanStatus::Complete) return false;
    out.push_back(rest.substr(0, scanner.frameSize()));
    rest.remove_prefix(scanner.frameSize());
  }
  return true;
}

// The bytes of a bulk frame "$3\r\nabc\r\n" (empty for anything else).
std::string_view bulkData(std::string_view frame) {
  if (frame.size() < 5 || frame[0] != '$') return {};
  const auto header_end = frame.find("\r\n");
  if (header_end == std::string_view::npos) return {};
  return frame.substr(header_end + 2, frame.size() - header_end - 4);
}

bool isBulk(std::string_view frame) {
  return frame.size() >= 5 && frame[0] == '$' && frame[1] != '-';
}

constexpr std::string_view kNil = "$-1\r\n";

}  // namespace

// ------------------------------------------------------------------ NearValue

std::optional<NearValue> NearValue::fromGet(std::string frame) {
  if (!isBulk(frame)) return std::nullopt;
  NearValue v;
  v.frame_ = std::move(frame);
  return v;
}

std::optional<NearValue> NearValue::fromHGetAll(std::string frame) {
  std::vector<std::string_view> items;
  if (!splitArray(frame, items) || items.empty() || items.size() % 2 != 0) return std::nullopt;
  if (frame.size() > UINT32_MAX) return std::nullopt;
  NearValue v;
  for (std::size_t i = 0; i < items.size(); i += 2) {
    if (!isBulk(items[i]) || !isBulk(items[i + 1])) return std::nullopt;
    const auto name = static_cast<std::uint32_t>(items[i].data() - frame.data());
    const auto value = static_cast<std::uint32_t>(items[i + 1].data() - frame.data());
    v.fields_.push_back(
        Field{name, value, static_cast<std::uint32_t>(value + items[i + 1].size())});
  }
  v.frame_ = std::move(frame);
  return v;
}

std::string_view NearValue::fieldName(const Field& f) const {
  return bulkData(frameAt(f.name, f.value));
}

const NearValue::Field* NearValue::find(std::string_view name) const {
  for (const Field& f : fields_) {
    if (fieldName(f) == name) return &f;
  }
  return nullptr;
}

std::string NearValue::reply(ReadKind kind, const std::vector<std::string>& args) const {
  std::string out;
  switch (kind) {
    case ReadKind::Get:
      return frame_;
    case ReadKind::HGetAll:
      return frame_;
    case ReadKind::Exists:
      return ":1\r\n";
    case ReadKind::HLen:
      resp::appendInteger(out, static_cast<long long>(fields_.size()));
      return out;
    case ReadKind::HGet: {
      const Field* f = find(args[2]);
      return f ? std::string(frameAt(f->value, f->end)) : std::string(kNil);
    }
    case ReadKind::HExists:
      return find(args[2]) ? ":1\r\n" : ":0\r\n";
    case ReadKind::HMGet:
      resp::appendArrayHeader(out, args.size() - 2);
      for (std::size_t a = 2; a < args.size(); ++a) {
        const Field* f = find(args[a]);
        out.append(f ? frameAt(f->value, f->end) : kNil);
      }
      return out;
    case ReadKind::HKeys:
    case ReadKind::HVals:
      resp::appendArrayHeader(out, fields_.size());
      for (const Field& f : fields_) {
        out.append(kind == ReadKind::HKeys ? frameAt(f.name, f.value) : frameAt(f.value, f.end));
      }
      return out;
    default:
      return resp::errorReply(errors::kNotNearCacheRead);
  }
}

bool nearCacheable(ReadKind kind, std::size_t argc, bool hash_keyspace) {
  switch (kind) {
    case ReadKind::Get:
      return !hash_keyspace && argc == 2;
    case ReadKind::Exists:
      return argc == 2;
    case ReadKind::HGetAll:
    case ReadKind::HLen:
    case ReadKind::HKeys:
    case ReadKind::HVals:
      return hash_keyspace && argc == 2;
    case ReadKind::HGet:
    case ReadKind::HExists:
      return hash_keyspace && argc == 3;
    case ReadKind::HMGet:
      return hash_keyspace && argc >= 3;
    default:
      return false;
  }
}

InvalidationFrame parseInvalidationFrame(std::string_view frame) {
  InvalidationFrame out;
  std::vector<std::string_view> items;
  if (!splitArray(frame, items) || items.empty()) return out;
  const std::string_view type = bulkData(items[0]);
  if (type == "message" && items.size() == 3) {
    std::vector<std::string_view> keys;
    if (!splitArray(items[2], keys)) {
      // A nil payload (RESP2 "$-1" or "*-1"): the whole keyspace was flushed.
      if (items[2] == kNil || items[2] == "*-1\r\n") out.type = InvalidationFrame::Type::FlushAll;
      return out;
    }
    out.type = InvalidationFrame::Type::Keys;
    for (std::string_view k : keys) out.keys.emplace_back(bulkData(k));
  } else if (type == "subscribe") {
    out.type = InvalidationFrame::Type::Subscribed;
  } else if (type == "pong") {
    out.type = InvalidationFrame::Type::Pong;
  }
  return out;
}

// ------------------------------------------------------------------ NearCache

NearCache::NearCache(std::vector<Keyspace> keyspaces, ReadPathStats& stats) : stats_(stats) {
  partitions_.resize(keyspaces.size());
  for (std::size_t i = 0; i < keyspaces.size(); ++i) {
    Partition& p = partitions_[i];
    p.enabled = keyspaces[i].config.enabled;
    p.prefix = std::move(keyspaces[i].prefix);
    p.max_bytes = keyspaces[i].config.max_bytes;
    p.max_ttl = keyspaces[i].config.max_ttl;
  }
}

NearCache::Partition* NearCache::partition(int ks) {
  if (ks < 0 || static_cast<std::size_t>(ks) >= partitions_.size()) return nullptr;
  Partition& p = partitions_[static_cast<std::size_t>(ks)];
  return p.enabled ? &p : nullptr;
}

bool NearCache::enabled(int ks) const {
  return ks >= 0 && static_cast<std::size_t>(ks) < partitions_.size() &&
         partitions_[static_cast<std::size_t>(ks)].enabled;
}

std::vector<std::string> NearCache::prefixes() const {
  std::vector<std::string> out;
  for (const Partition& p : partitions_) {
    if (p.enabled) out.push_back(p.prefix);
  }
  return out;
}

void NearCache::setUsable(bool up) {
  if (up == usable_) return;
  usable_ = up;
  if (up) {
    stats_.near_tracking_up.add();
  } else {
    stats_.near_tracking_up.sub();
    flush();
  }
}

const NearValue* NearCache::lookup(int ks, std::string_view key, Clock::time_point now) {
  if (!usable_) return nullptr;
  const auto found = index_.find(key);
  if (found == index_.end()) return nullptr;
  const Lru::iterator it = found->second;
  if (it->ks != ks) return nullptr;  // cannot happen: one key, one keyspace
  if (it->expires <= now) {
    erase(it, Why::Ttl);
    return nullptr;
  }
  Partition& p = partitions_[static_cast<std::size_t>(ks)];
  p.lru.splice(p.lru.begin(), p.lru, it);
  return &it->value;
}

std::uint64_t NearCache::beginRead(std::string_view key) {
  auto found = pending_.find(key);
  if (found == pending_.end()) found = pending_.emplace(std::string(key), Pending{}).first;
  ++found->second.readers;
  return seq_;
}

bool NearCache::finishRead(std::string_view key, std::uint64_t ticket) {
  const auto found = pending_.find(key);
  if (found == pending_.end()) return false;  // unbalanced: never store
  const bool fresh = usable_ && flushed_ <= ticket && found->second.changed <= ticket;
  if (--found->second.readers == 0) pending_.erase(found);
  return fresh;
}

void NearCache::store(int ks, std::string_view key, NearValue value, long long pttl_ms,
                      Clock::time_point now) {
  Partition* p = partition(ks);
  if (p == nullptr || !usable_ || pttl_ms == -2 || pttl_ms == 0 || pttl_ms < -2) return;
  const std::size_t bytes = kEntryOverhead + key.size() + value.bytes();
  if (bytes > p->max_bytes) return;
  Clock::duration ttl = p->max_ttl;
  if (pttl_ms > 0) ttl = std::min<Clock::duration>(ttl, std::chrono::milliseconds(pttl_ms));
  if (ttl <= Clock::duration::zero()) return;

  if (const auto old = index_.find(key); old != index_.end()) erase(old->second, Why::Replaced);
  p->lru.push_front(Entry{std::string(key), ks, std::move(value), bytes, now, now + ttl, {}});
  const Lru::iterator it = p->lru.begin();
  it->fifo = p->fifo.insert(p->fifo.end(), it);
  index_.emplace(std::string_view(it->key), it);
  p->bytes += bytes;
  KeyspaceCounters& counters = stats_.keyspace(ks);
  counters.near_bytes.add(bytes);
  counters.near_entries.add();
  while (p->bytes > p->max_bytes && !p->lru.empty()) erase(std::prev(p->lru.end()), Why::Capacity);
}

void NearCache::invalidate(std::string_view key) {
  if (const auto found = pending_.find(key); found != pending_.end())
    found->second.changed = ++seq_;
  if (const auto found = index_.find(key); found != index_.end()) {
    erase(found->second, Why::Invalidation);
  }
}

void NearCache::flush() {
  flushed_ = ++seq_;
  for (std::size_t i = 0; i < partitions_.size(); ++i) {
    Partition& p = partitions_[i];
    if (!p.enabled) continue;
    stats_.keyspace(static_cast<int>(i)).near_flushes.add();
    while (!p.lru.empty()) erase(p.lru.begin(), Why::Flush);
  }
}

void NearCache::sweep(Clock::time_point now) {
  for (Partition& p : partitions_) {
    while (!p.fifo.empty()) {
      const Lru::iterator it = p.fifo.front();
      if (it->inserted + p.max_ttl > now && it->expires > now) break;
      erase(it, Why::Ttl);
    }
  }
}

void NearCache::erase(Lru::iterator it, Why why) {
  Partition& p = partitions_[static_cast<std::size_t>(it->ks)];
  KeyspaceCounters& counters = stats_.keyspace(it->ks);
  switch (why) {
    case Why::Invalidation:
      counters.near_evicted_invalidation.add();
      break;
    case Why::Capacity:
      counters.near_evicted_capacity.add();
      break;
    case Why::Ttl:
      counters.near_evicted_ttl.add();
      break;
    case Why::Replaced:
    case Why::Flush:
      break;
  }
  counters.near_bytes.sub(it->bytes);
  counters.near_entries.sub();
  p.bytes -= it->bytes;
  index_.erase(std::string_view(it->key));
  p.fifo.erase(it->fifo);
  p.lru.erase(it);
}

std::size_t NearCache::bytes(int ks) const {
  return enabled(ks) ? partitions_[static_cast<std::size_t>(ks)].bytes : 0;
}

std::size_t NearCache::entries(int ks) const {
  return enabled(ks) ? partitions_[static_cast<std::size_t>(ks)].lru.size() : 0;
}

}  // namespace larder::cache
