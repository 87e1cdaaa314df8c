#include "larder/cache/mapped_write.hpp"

#include <boost/asio/post.hpp>

#include "larder/cache/near_cache.hpp"
#include "larder/cache/read_through_host.hpp"
#include "larder/cache/write_batch.hpp"
#include "larder/cache/write_scripts.hpp"
#include "larder/cache/write_service.hpp"
#include "larder/common/errors.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace {

// A write that needs the row loads it, then retries. Another write landing
// in between, or a fill connection still reconnecting after a Redis restart,
// sends it round again; the pauses between rounds grow (5, 10, ... 320 ms,
// about 0.6 s in all) so that a reconnect can finish first.
constexpr int kMaxLoads = 8;
constexpr auto kLoadPause = std::chrono::milliseconds(5);
constexpr auto kFullRetry = std::chrono::milliseconds(10);

bool isError(std::string_view frame) { return !frame.empty() && frame.front() == '-'; }

// The reply of a write script call with one write: *1 and the write's reply.
// The reply of one write's own script call: a one-element array, or, with
// write_behind.wait_replicas, *2 [that array, WAIT's count] (sendFollowed).
class SingleWrite : public redis::ReplySink {
 public:
  SingleWrite(std::shared_ptr<redis::ReplySink> to, int wait_replicas, long long wait_timeout_ms)
      : to_(std::move(to)), wait_replicas_(wait_replicas), wait_timeout_ms_(wait_timeout_ms) {}
  void deliver(std::uint64_t tag, std::string_view frame) override {
    if (wait_replicas_ > 0 && frame.substr(0, 4) == "*2\r\n") {
      const std::vector<std::string_view> both = splitWriteReplies(frame);
      if (both.size() == 2) {
        const std::string unconfirmed =
            unconfirmedError(waitCount(both[1]), wait_replicas_, wait_timeout_ms_);
        to_->deliver(tag, afterWait(unwrap(both[0]), unconfirmed));
        return;
      }
    }
    to_->deliver(tag, unwrap(frame));  // an error: nothing was written, or nothing is known
  }

 private:
  static std::string_view unwrap(std::string_view frame) {
    if (frame.substr(0, 4) == "*1\r\n") frame.remove_prefix(4);
    return frame;
  }

  std::shared_ptr<redis::ReplySink> to_;
  int wait_replicas_;
  long long wait_timeout_ms_;
};

long long integerOf(std::string_view frame) {
  long long n = 0;
  for (std::size_t i = 1; i < frame.size() && frame[i] >= '0' && frame[i] <= '9'; ++i) {
    n = n * 10 + (frame[i] - '0');
  }
  return n;
}

// Drops the written keys from this worker's near cache (docs/near_cache.md).
void evictNear(ReadThroughHost& worker, const WritePlan& plan) {
  if (NearCache* near = worker.nearCache()) {
    for (const KeyWrite& w : plan.writes) near->invalidate(w.key);
  }
}

}  // namespace

MappedWrite::MappedWrite(ReadThroughHost& worker, std::shared_ptr<redis::ReplySink> client,
                         std::uint64_t tag, WritePlan plan)
    : worker_(worker), client_(std::move(client)), tag_(tag), plan_(std::move(plan)) {
  const std::size_t n = plan_.writes.size();
  replies_.resize(n + 1);
  absent_.assign(n, false);
  loads_.assign(n, 0);
  paused_.assign(n, 0);
  full_since_.resize(n);
  left_ = n + (plan_.unmapped.empty() ? 0 : 1);
}

bool MappedWrite::mayReorder(const WritePlan& plan, const config::Config& config) {
  if (config.write_behind.on_full == config::QueueFullPolicy::Block) return true;
  for (const auto& w : plan.writes) {
    if (w.needs_row || (!w.cache_only && w.ks->config.write == config::WriteMode::Through)) {
      return true;
    }
  }
  return false;
}

bool MappedWrite::through(const KeyWrite& w) const {
  return !w.cache_only && w.ks->config.write == config::WriteMode::Through;
}

void MappedWrite::start(redis::BackendConnection& connection) {
  connection_ = connection.shared_from_this();
  route_ = connection_.get();
  begin();
}

void MappedWrite::start(redis::Route& route) {
  route_ = &route;
  begin();
}

void MappedWrite::begin() {
  evictNear(worker_, plan_);  // a read pipelined after this write must not see the old value
  auto self = shared_from_this();
  if (!plan_.unmapped.empty()) {
    std::string request;
    const std::vector<std::string_view> args(plan_.unmapped.begin(), plan_.unmapped.end());
    resp::appendMultibulk(request, args);
    route_->send(request, self, plan_.writes.size(), redis::As::Client);
  }
  for (std::size_t i = 0; i < plan_.writes.size(); ++i) send(i);
}

void MappedWrite::send(std::size_t i) {
  const KeyWrite& w = plan_.writes[i];
  auto self = shared_from_this();
  if (!w.cache_only) {
    if (WriteService* service = worker_.writes()) {
      const WriteRefusal why = service->refusal(w.ks->id);
      const bool applies =
          why != WriteRefusal::NotDurable || w.ks->config.write == config::WriteMode::Behind;
      if (why != WriteRefusal::None && applies) {
        complete(i, resp::errorReply(refusalText(why, w.ks->name())));
        return;
      }
    }
  }
  if (through(w)) {
    WriteService* service = worker_.writes();
    if (service == nullptr) {
      complete(i, resp::errorReply(errors::kNoPostgres));
      return;
    }
    // HSET answers how many fields are new: counted against the cached row,
    // so the row is loaded (and cached) first, once, as for write-behind.
    if (w.needs_row && loads_[i] == 0) {
      load(i);
      return;
    }
    ThroughWrite tw{w.ks, w.key, w.key_values, w.change, w.op, w.op_args};
    auto& context = worker_.context();
    service->writeThrough(std::move(tw), [self, i, &context](std::string reply) {
      boost::asio::post(
          context, [self, i, reply = std::move(reply)] { self->complete(i, std::move(reply)); });
    });
    return;
  }
  if (!connection_) {
    // A cluster: writes of different clients are in different slots, so
    // each is a script call of its own, to its key's node.
    sendAlone(i, false);
    return;
  }
  // With the other behind writes of this loop turn on this connection: one
  // script call for all of them (write_batch.hpp).
  WriteBatch::of(*connection_, worker_.context().get_executor())
      .add(w, absent_[i], worker_.config(), self, i);
}

void MappedWrite::sendAlone(std::size_t i, bool body) {
  const config::WriteBehindConfig& wb = worker_.config().write_behind;
  const long long timeout_ms = wb.wait_timeout.count();
  auto sink = std::make_shared<SingleWrite>(shared_from_this(), wb.wait_replicas, timeout_ms);
  const std::string request = scriptRequest(i, body);
  if (wb.wait_replicas > 0) {
    // WAIT on the connection that carried the write: it counts that
    // connection's writes (on a cluster, the node's).
    const std::string wait = waitRequest(wb.wait_replicas, timeout_ms);
    route_->sendFollowed(request, wait, std::move(sink), i, redis::As::Larder);
  } else {
    route_->send(request, std::move(sink), i, redis::As::Larder);
  }
}

std::string MappedWrite::scriptRequest(std::size_t i, bool body) const {
  const KeyWrite& w = plan_.writes[i];
  const config::Config& config = worker_.config();
  WriteCall call('b', config.invalidation.publish_channel, config.write_behind.max_queue);
  call.add(w.key, w.ks->name(), w.op, absent_[i], w.ks->hardTtlMs(w.ks->ttl_ms.get()), w.op_args);
  return call.request(body);
}

void MappedWrite::deliver(std::uint64_t sub, std::string_view frame) {
  if (sub >= plan_.writes.size()) {
    complete(sub, std::string(frame));
    return;
  }
  const KeyWrite& w = plan_.writes[sub];
  if (frame.rfind("-NOSCRIPT", 0) == 0) {
    // Redis lost its scripts (SCRIPT FLUSH): send the body once, alone; its
    // reply is a one-element array.
    sendAlone(sub, true);
    return;
  }
  if (frame == kMissReply) {
    load(sub);
    return;
  }
  if (frame == kFullReply) {
    retryWhenRoom(sub);
    return;
  }
  if (!isError(frame) && !w.cache_only) {
    if (Loader* loader = worker_.loader()) loader->forgetAsync(w.key);
    worker_.readStats().keyspace(w.ks->id).writes.add();
    // A cluster: the flusher reads this slot's queue at its next round.
    if (!connection_ && w.ks->config.write == config::WriteMode::Behind) {
      if (WriteService* service = worker_.writes()) service->queued(w.ks->id, w.key);
    }
  }
  complete(sub, std::string(frame));
}

void MappedWrite::load(std::size_t i) {
  const KeyWrite& w = plan_.writes[i];
  Loader* loader = worker_.loader();
  if (loader == nullptr || ++loads_[i] > kMaxLoads) {
    complete(i, resp::errorReply(errors::rowKeptChanging(w.key)));
    return;
  }
  auto self = shared_from_this();
  if (loads_[i] > 1 && !paused_[i]) {
    paused_[i] = true;
    auto pause = std::make_shared<boost::asio::steady_timer>(worker_.context());
    pause->expires_after(kLoadPause * (1 << (loads_[i] - 2)));
    --loads_[i];  // counted again when the pause ends
    pause->async_wait([self, i, pause](boost::system::error_code) { self->load(i); });
    return;
  }
  paused_[i] = false;
  auto& context = worker_.context();
  loader->load(
      *w.ks, w.key, w.key_values, true,
      [self, i, &context](const LoadResult& result) {
        boost::asio::post(context, [self, i, result] {
          using Status = LoadResult::Status;
          if (result.status == Status::Error) {
            self->complete(i, resp::errorReply(result.error));
            return;
          }
          self->absent_[i] = result.status == Status::Missing;
          self->send(i);
        });
      },
      Loader::For::Write);
}

void MappedWrite::retryWhenRoom(std::size_t i) {
  const KeyWrite& w = plan_.writes[i];
  const config::WriteBehindConfig& wb = worker_.config().write_behind;
  const auto now = std::chrono::steady_clock::now();
  if (full_since_[i] == std::chrono::steady_clock::time_point{}) full_since_[i] = now;
  worker_.readStats().keyspace(w.ks->id).queue_full.add();
  if (wb.on_full == config::QueueFullPolicy::Error || now - full_since_[i] >= wb.block_timeout) {
    complete(i, resp::errorReply(errors::queueFull(w.ks->name(), wb.max_queue)));
    return;
  }
  if (!timer_) timer_ = std::make_unique<boost::asio::steady_timer>(worker_.context());
  timer_->expires_after(kFullRetry);
  timer_->async_wait([self = shared_from_this(), i](boost::system::error_code) { self->send(i); });
}

void MappedWrite::complete(std::size_t i, std::string reply) {
  replies_[i] = std::move(reply);
  if (--left_ == 0) finish();
}

void MappedWrite::finish() {
  const std::size_t n = plan_.writes.size();
  std::string out;
  switch (plan_.combine) {
    case Combine::Single:
      out = std::move(replies_[0]);
      break;
    case Combine::Sum: {
      long long total = 0;
      for (std::size_t i = 0; i <= n; ++i) {
        if (i == n && plan_.unmapped.empty()) break;
        if (isError(replies_[i])) {
          out = replies_[i];
          break;
        }
        total += integerOf(replies_[i]);
      }
      if (out.empty()) resp::appendInteger(out, total);
      break;
    }
    case Combine::AllOk:
      for (std::size_t i = 0; i <= n && out.empty(); ++i) {
        if (i == n && plan_.unmapped.empty()) break;
        if (isError(replies_[i])) out = replies_[i];
      }
      if (out.empty()) out = "+OK\r\n";
      break;
  }
  evictNear(worker_, plan_);  // read-your-writes: a read that raced the write kept nothing
  client_->deliver(tag_, out);
}

}  // namespace larder::cache
