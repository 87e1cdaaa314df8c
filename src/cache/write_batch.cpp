#include "larder/cache/write_batch.hpp"

#include <boost/asio/post.hpp>

#include "larder/common/errors.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cache {

std::string waitRequest(int replicas, long long timeout_ms) {
  std::string wait;
  resp::appendMultibulk(wait, {"WAIT", std::to_string(replicas), std::to_string(timeout_ms)});
  return wait;
}

long long waitCount(std::string_view frame) {
  if (frame.size() < 2 || frame.front() != ':') return -1;
  long long replicas = 0;
  for (std::size_t i = 1; i < frame.size() && frame[i] >= '0' && frame[i] <= '9'; ++i) {
    replicas = replicas * 10 + (frame[i] - '0');
  }
  return replicas;
}

std::string unconfirmedError(long long replicas, int wanted, long long timeout_ms) {
  if (replicas >= wanted) return {};
  // In Redis and queued, but a failover now may lose it: the client hears so.
  return resp::errorReply(errors::writeUnconfirmed(replicas, wanted, timeout_ms));
}

std::string_view afterWait(std::string_view element, std::string_view unconfirmed) {
  const bool wrote_nothing =
      element.empty() || element.front() == '-' || element == kMissReply || element == kFullReply;
  return unconfirmed.empty() || wrote_nothing ? element : unconfirmed;
}

namespace {

// The replies of one sealed call, handed out to the writes that made it.
class SentBatch : public redis::ReplySink {
 public:
  struct Waiter {
    std::shared_ptr<redis::ReplySink> sink;
    std::uint64_t tag;
  };
  SentBatch(std::vector<Waiter> waiters, int wait_replicas, long long wait_timeout_ms)
      : waiters_(std::move(waiters)),
        wait_replicas_(wait_replicas),
        wait_timeout_ms_(wait_timeout_ms) {}

  // tag 0: the script's reply; tag 1: WAIT's.
  void deliver(std::uint64_t tag, std::string_view frame) override {
    if (wait_replicas_ == 0) {
      split(frame, {});
      return;
    }
    if (tag == 0) {
      script_reply_.assign(frame);  // held until the replicas have it
      return;
    }
    split(script_reply_, unconfirmedError(waitCount(frame), wait_replicas_, wait_timeout_ms_));
  }

 private:
  // One element of the *N reply per waiter; an error reply (the connection
  // failed, BUSY, NOSCRIPT) goes to every waiter as it is.
  void split(std::string_view frame, const std::string& unconfirmed) {
    const std::vector<std::string_view> elements = splitWriteReplies(frame);
    if (elements.size() != waiters_.size()) {
      const std::string broken = resp::errorReply(errors::kScriptReplyMismatch);
      const bool whole = frame.empty() || frame.front() != '*';
      for (auto& w : waiters_) w.sink->deliver(w.tag, whole ? frame : std::string_view(broken));
      return;
    }
    for (std::size_t i = 0; i < waiters_.size(); ++i) {
      waiters_[i].sink->deliver(waiters_[i].tag, afterWait(elements[i], unconfirmed));
    }
  }

  std::vector<Waiter> waiters_;
  int wait_replicas_;
  long long wait_timeout_ms_;
  std::string script_reply_;
};

}  // namespace

WriteBatch::WriteBatch(std::weak_ptr<redis::BackendConnection> connection,
                       boost::asio::any_io_executor executor)
    : connection_(std::move(connection)), executor_(std::move(executor)) {}

WriteBatch& WriteBatch::of(redis::BackendConnection& connection,
                           boost::asio::any_io_executor executor) {
  if (auto* existing = connection.coalescer()) return static_cast<WriteBatch&>(*existing);
  auto batch = std::make_shared<WriteBatch>(connection.weak_from_this(), std::move(executor));
  WriteBatch& out = *batch;
  connection.setCoalescer(std::move(batch));
  return out;
}

void WriteBatch::add(const KeyWrite& w, bool absent, const config::Config& config,
                     std::shared_ptr<redis::ReplySink> sink, std::uint64_t tag) {
  if (!open_) {
    const auto& wb = config.write_behind;
    open_.emplace('b', config.invalidation.publish_channel, wb.max_queue);
    wait_replicas_ = wb.wait_replicas;
    wait_timeout_ms_ = wb.wait_timeout.count();
  }
  open_->add(w.key, w.ks->name(), w.op, absent, w.ks->hardTtlMs(w.ks->ttl_ms.get()), w.op_args);
  waiters_.push_back(Waiter{std::move(sink), tag});
  if (scheduled_) return;
  // After the handlers already queued: every session that has bytes to
  // parse in this turn adds its writes first.
  scheduled_ = true;
  boost::asio::post(executor_, [self = shared_from_this()] { self->seal(); });
}

void WriteBatch::seal() {
  scheduled_ = false;
  if (!open_ || open_->empty()) return;
  const std::string request = open_->request(false);
  std::vector<SentBatch::Waiter> waiters;
  waiters.reserve(waiters_.size());
  for (auto& w : waiters_) waiters.push_back(SentBatch::Waiter{std::move(w.sink), w.tag});
  waiters_.clear();
  open_.reset();
  auto sent = std::make_shared<SentBatch>(std::move(waiters), wait_replicas_, wait_timeout_ms_);
  auto connection = connection_.lock();
  if (!connection) {
    const redis::BackendFailure closed{redis::BackendFailure::Kind::Closed, {}};
    sent->fail(0, closed);
    if (wait_replicas_ > 0) sent->fail(1, closed);
    return;
  }
  connection->send(request, sent, 0, redis::As::Larder);
  if (wait_replicas_ > 0) {
    connection->send(waitRequest(wait_replicas_, wait_timeout_ms_), sent, 1, redis::As::Larder);
  }
}

}  // namespace larder::cache
