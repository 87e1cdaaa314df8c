#include "larder/cache/mapped_read.hpp"

#include <boost/asio/post.hpp>
#include <cstdlib>
#include <random>

#include "larder/cache/near_cache.hpp"
#include "larder/cache/read_through_host.hpp"
#include "larder/cache/stampede.hpp"
#include "larder/common/errors.hpp"
#include "larder/resp/reply_scanner.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace {

using Status = LoadResult::Status;

bool isHashKind(ReadKind k) {
  return k == ReadKind::HGet || k == ReadKind::HMGet || k == ReadKind::HGetAll ||
         k == ReadKind::HExists || k == ReadKind::HLen || k == ReadKind::HKeys ||
         k == ReadKind::HVals;
}

// Hash commands other than HGETALL cannot tell "no key" from "no such field".
bool needsExistsProbe(ReadKind k) { return isHashKind(k) && k != ReadKind::HGetAll; }

// Splits an array reply into its element frames.
std::vector<std::string_view> elements(std::string_view frame) {
  std::vector<std::string_view> out;
  const auto header_end = frame.find("\r\n");
  if (frame.empty() || frame[0] != '*' || header_end == std::string_view::npos) return out;
  std::string_view rest = frame.substr(header_end + 2);
  resp::ReplyScanner scanner;
  while (!rest.empty() && scanner.scan(rest) == resp::ScanStatus::Complete) {
    out.push_back(rest.substr(0, scanner.frameSize()));
    rest.remove_prefix(scanner.frameSize());
  }
  return out;
}

void appendValue(std::string& out, const std::optional<std::string>& v) {
  if (v) {
    resp::appendBulk(out, *v);
  } else {
    resp::appendNil(out);
  }
}

}  // namespace

bool shapeFits(ReadKind kind, bool hash_keyspace) {
  if (kind == ReadKind::Get || kind == ReadKind::GetEx || kind == ReadKind::MGet) {
    return !hash_keyspace;
  }
  if (isHashKind(kind)) return hash_keyspace;
  return true;  // EXISTS, TTL, PTTL work on both
}

MappedRead::MappedRead(ReadThroughHost& worker, std::shared_ptr<redis::ReplySink> client,
                       std::uint64_t tag, ReadKind kind, std::vector<std::string> args,
                       std::vector<Key> keys)
    : worker_(worker),
      client_(std::move(client)),
      tag_(tag),
      kind_(kind),
      args_(std::move(args)),
      keys_(std::move(keys)),
      missed_(keys_.size(), false),
      loaded_(keys_.size()) {}

void MappedRead::start(redis::Route& route) {
  if (startNear(route)) return;
  // Size everything before the first send: a backend that is down answers
  // synchronously, inside send().
  std::vector<std::string> requests;
  if (kind_ == ReadKind::Exists) {
    // One EXISTS per key: a total cannot say which key is missing.
    for (const auto& key : keys_) {
      resp::appendMultibulk(requests.emplace_back(), {"EXISTS", args_[key.arg]});
    }
  } else {
    if (needsExistsProbe(kind_))
      resp::appendMultibulk(requests.emplace_back(), {"EXISTS", args_[1]});
    std::vector<std::string_view> views(args_.begin(), args_.end());
    resp::appendMultibulk(requests.emplace_back(), views);
    if (probesExpiry()) {
      probe_ = true;
      const std::string delta = deltaKey(args_[1]);
      resp::appendMultibulk(requests.emplace_back(), {"PTTL", args_[1]});
      resp::appendMultibulk(requests.emplace_back(), {"GET", delta});
    }
  }
  replies_.resize(requests.size());
  expected_ = requests.size();
  auto self = shared_from_this();
  // The delta key is Larder's own: a probe runs as Larder, a plain read as the client.
  const redis::As as = probe_ ? redis::As::Larder : redis::As::Client;
  for (std::size_t i = 0; i < requests.size(); ++i) route.send(requests[i], self, i, as);
}

bool MappedRead::startNear(redis::Route& route) {
  NearCache* near = worker_.nearCache();
  if (near == nullptr || keys_.size() != 1 || keys_[0].ks == nullptr) return false;
  const Keyspace& ks = *keys_[0].ks;
  if (!near->enabled(ks.id) || !nearCacheable(kind_, args_.size(), ks.isHash())) return false;
  auto& counters = worker_.readStats().keyspace(ks.id);
  const std::string& key = args_[1];
  if (const NearValue* v = near->lookup(ks.id, key, std::chrono::steady_clock::now())) {
    counters.near_hits.add();
    if (kind_ == ReadKind::Get || kind_ == ReadKind::HGetAll) {
      answer(v->frame());  // the value's frame is the reply: no copy
    } else {
      answer(v->reply(kind_, args_));
    }
    return true;
  }
  counters.near_misses.add();
  if (!near->usable()) return false;
  near_ = true;
  near_ticket_ = near->beginRead(key);
  std::vector<std::string> requests(ks.refreshes() ? 3 : 2);
  resp::appendMultibulk(requests[0], {ks.isHash() ? "HGETALL" : "GET", key});
  resp::appendMultibulk(requests[1], {"PTTL", key});
  if (requests.size() > 2) {
    const std::string delta = deltaKey(key);
    resp::appendMultibulk(requests[2], {"GET", delta});
  }
  replies_.resize(requests.size());
  expected_ = requests.size();
  auto self = shared_from_this();
  const redis::As as = requests.size() > 2 ? redis::As::Larder : redis::As::Client;
  for (std::size_t i = 0; i < requests.size(); ++i) route.send(requests[i], self, i, as);
  return true;
}

// The near-cache path's replies are in: answer from the value and keep it, or
// leave a miss, an error or a Redis outage to afterRedis as one reply it knows.
bool MappedRead::afterNear() {
  NearCache& near = *worker_.nearCache();
  const Keyspace& ks = *keys_[0].ks;
  const bool fresh = near.finishRead(args_[1], near_ticket_);
  std::string value = std::move(replies_[0]);
  long long pttl = -2;
  if (replies_[1].size() > 1 && replies_[1].front() == ':') {
    pttl = std::strtoll(replies_[1].c_str() + 1, nullptr, 10);
  }
  const std::string delta = replies_.size() > 2 ? std::move(replies_[2]) : std::string();
  replies_.resize(1);
  std::optional<NearValue> v =
      ks.isHash() ? NearValue::fromHGetAll(value) : NearValue::fromGet(value);
  if (!v) {
    const bool missing = value == "$-1\r\n" || value == "*0\r\n";
    if (!missing && !value.empty() && value.front() != '-') {
      answer(resp::errorReply(errors::kUnexpectedRedisReply));
      return true;
    }
    if (missing && (kind_ == ReadKind::Exists || needsExistsProbe(kind_))) value = ":0\r\n";
    replies_[0] = std::move(value);
    return false;
  }
  worker_.readStats().keyspace(ks.id).hits.add();
  answer(v->reply(kind_, args_));
  if (ks.refreshes() && pttl >= 0) {
    // Near entries live no longer than the soft TTL: a stale value is served
    // from Redis, where its refresh lands.
    pttl = maybeRefresh(pttl, delta);
    if (pttl <= 0) return true;
  }
  if (fresh) near.store(ks.id, args_[1], std::move(*v), pttl, std::chrono::steady_clock::now());
  return true;
}

void MappedRead::deliver(std::uint64_t sub, std::string_view frame) {
  if (sub < replies_.size()) replies_[sub] = frame;
  if (--expected_ == 0) afterRedis();
}

void MappedRead::fail(std::uint64_t sub, const redis::BackendFailure& failure) {
  // Redis is down: PostgreSQL answers alone (degraded, counted).
  fallback_ = true;
  deliver(sub, resp::errorReply(failure.errorText()));
}

bool MappedRead::probesExpiry() const {
  if (keys_.size() != 1 || keys_[0].ks == nullptr || !keys_[0].ks->refreshes()) return false;
  switch (kind_) {
    case ReadKind::Get:
    case ReadKind::HGet:
    case ReadKind::HMGet:
    case ReadKind::HGetAll:
    case ReadKind::HExists:
    case ReadKind::HLen:
    case ReadKind::HKeys:
    case ReadKind::HVals:
      return true;
    default:  // GETEX sets the TTL; TTL/PTTL and EXISTS have no value to serve
      return false;
  }
}

long long MappedRead::maybeRefresh(long long pttl, std::string_view delta_frame) {
  const Keyspace& ks = *keys_[0].ks;
  double delta_ms = 0;
  // "$<n>\r\n<ms>\r\n"; anything else (nil, an error) leaves XFetch without a delta.
  if (delta_frame.size() > 4 && delta_frame.front() == '$') {
    const auto body = delta_frame.find("\r\n");
    if (body != std::string_view::npos)
      delta_ms = std::strtod(delta_frame.data() + body + 2, nullptr);
  }
  const long long stale = ks.stale_ms.get();
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const double u = 1.0 - uniform(rng);  // (0, 1]
  if (shouldRefresh(pttl, stale, delta_ms, ks.early_refresh.get(), u)) {
    auto& counters = worker_.readStats().keyspace(ks.id);
    (pttl <= stale ? counters.stale_hits : counters.early_refreshes).add();
    if (Loader* loader = worker_.loader()) {
      loader->refresh(ks, args_[1], keys_[0].values);
    }
  }
  return pttl < 0 ? pttl : pttl - stale;
}

void MappedRead::afterRedis() {
  if (near_ && afterNear()) return;
  long long pttl = -2;
  std::string delta;
  if (probe_) {
    const std::string& pttl_frame = replies_[replies_.size() - 2];
    if (pttl_frame.size() > 1 && pttl_frame.front() == ':') {
      pttl = std::strtoll(pttl_frame.c_str() + 1, nullptr, 10);
    }
    delta = std::move(replies_.back());
    replies_.resize(replies_.size() - 2);
  }
  if (fallback_) {
    // Degraded: only mapped keys can be answered (from PostgreSQL).
    for (const auto& key : keys_) {
      if (key.ks == nullptr) {
        answer(replies_.front());
        return;
      }
    }
    std::fill(missed_.begin(), missed_.end(), true);
  } else {
    const std::string_view last = replies_.back();
    if (!last.empty() && last.front() == '-') {  // Redis' own error (e.g. WRONGTYPE)
      answer(last);
      return;
    }
    switch (kind_) {
      case ReadKind::Get:
      case ReadKind::GetEx:
        missed_[0] = last == "$-1\r\n";
        break;
      case ReadKind::Ttl:
      case ReadKind::PTtl:
        missed_[0] = last == ":-2\r\n";
        break;
      case ReadKind::HGetAll:
        missed_[0] = last == "*0\r\n";
        break;
      case ReadKind::MGet: {
        const auto items = elements(last);
        for (std::size_t i = 0; i < keys_.size() && i < items.size(); ++i) {
          missed_[i] = keys_[i].ks != nullptr && items[i] == "$-1\r\n";
        }
        break;
      }
      case ReadKind::Exists:
        for (std::size_t i = 0; i < keys_.size(); ++i) {
          missed_[i] = keys_[i].ks != nullptr && replies_[i] == ":0\r\n";
        }
        break;
      default:  // hash commands with an EXISTS probe first
        missed_[0] = replies_.front() == ":0\r\n";
        break;
    }
  }
  auto& counters = worker_.readStats();
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i].ks == nullptr) continue;
    auto& ks_stats = counters.keyspace(keys_[i].ks->id);
    if (fallback_) {
      ks_stats.fallbacks.add();
    } else if (missed_[i]) {
      ks_stats.misses.add();
    } else {
      ks_stats.hits.add();
    }
    if (missed_[i]) ++loads_pending_;
  }
  if (loads_pending_ == 0) {  // every key was a hit
    if (probe_ && !fallback_ && pttl >= 0) maybeRefresh(pttl, delta);
    if (kind_ == ReadKind::Exists) {
      answer(format());
    } else {
      answer(replies_.back());
    }
    return;
  }
  Loader* loader = worker_.loader();
  auto self = shared_from_this();
  auto& context = worker_.context();
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    if (!missed_[i]) continue;
    loader->load(*keys_[i].ks, args_[keys_[i].arg], keys_[i].values, !fallback_,
                 [self, i, &context](const LoadResult& result) {
                   boost::asio::post(context, [self, i, result] { self->onLoaded(i, result); });
                 });
  }
}

void MappedRead::onLoaded(std::size_t key, const LoadResult& result) {
  loaded_[key] = result;
  if (--loads_pending_ == 0) finish();
}

void MappedRead::finish() {
  for (const auto& r : loaded_) {
    if (r.status == Status::Error) {
      std::string out;
      resp::appendError(out, r.error);
      answer(out);
      return;
    }
  }
  answer(format());
}

std::string MappedRead::format() const {
  std::string out;
  const LoadResult& first = loaded_.front();
  const bool found = first.status == Status::Found;
  const Keyspace* ks = keys_.front().ks;
  switch (kind_) {
    case ReadKind::Get:
    case ReadKind::GetEx:
      appendValue(out, found ? first.values.front() : std::nullopt);
      break;
    case ReadKind::Ttl:
    case ReadKind::PTtl: {
      long long ms = found ? first.ttl_ms : -2;
      if (found && ms >= 0 && kind_ == ReadKind::Ttl) ms = (ms + 500) / 1000;
      resp::appendInteger(out, ms);
      break;
    }
    case ReadKind::MGet: {
      const auto items = fallback_ ? std::vector<std::string_view>{} : elements(replies_.back());
      resp::appendArrayHeader(out, keys_.size());
      for (std::size_t i = 0; i < keys_.size(); ++i) {
        if (missed_[i]) {
          const auto& r = loaded_[i];
          appendValue(out, r.status == Status::Found ? r.values.front() : std::nullopt);
        } else {
          out.append(items[i]);
        }
      }
      break;
    }
    case ReadKind::Exists: {
      long long n = 0;
      for (std::size_t i = 0; i < keys_.size(); ++i) {
        n += missed_[i] ? loaded_[i].status == Status::Found : replies_[i] == ":1\r\n";
      }
      resp::appendInteger(out, n);
      break;
    }
    case ReadKind::HGet: {
      const int f = args_.size() > 2 ? ks->field(args_[2]) : -1;
      appendValue(out, found && f >= 0 ? first.values[f] : std::nullopt);
      break;
    }
    case ReadKind::HMGet:
      resp::appendArrayHeader(out, args_.size() - 2);
      for (std::size_t a = 2; a < args_.size(); ++a) {
        const int f = ks->field(args_[a]);
        appendValue(out, found && f >= 0 ? first.values[f] : std::nullopt);
      }
      break;
    case ReadKind::HExists: {
      const int f = args_.size() > 2 ? ks->field(args_[2]) : -1;
      resp::appendInteger(out, found && f >= 0 && first.values[f].has_value());
      break;
    }
    case ReadKind::HGetAll:
    case ReadKind::HKeys:
    case ReadKind::HVals:
    case ReadKind::HLen: {
      std::size_t present = 0;
      if (found) {
        for (const auto& v : first.values) present += v.has_value();
      }
      if (kind_ == ReadKind::HLen) {
        resp::appendInteger(out, static_cast<long long>(present));
        break;
      }
      resp::appendArrayHeader(out, kind_ == ReadKind::HGetAll ? present * 2 : present);
      for (std::size_t i = 0; found && i < first.values.size(); ++i) {
        if (!first.values[i]) continue;
        if (kind_ != ReadKind::HVals) resp::appendBulk(out, ks->value_columns[i]);
        if (kind_ != ReadKind::HKeys) resp::appendBulk(out, *first.values[i]);
      }
      break;
    }
    case ReadKind::None:
      break;  // not a mapped read: never constructed
  }
  return out;
}

void MappedRead::answer(std::string_view reply) {
  client_->deliver(tag_, reply);
  client_.reset();
}

}  // namespace larder::cache
