#include "larder/cache/near_cache_tracking.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace {

constexpr std::string_view kChannel = "__redis__:invalidate";
constexpr auto kHandshakeDeadline = std::chrono::seconds(5);
constexpr int kMaxUnanswered = 3;  // heartbeat ticks (seconds)

std::string command(std::initializer_list<std::string_view> args) {
  std::string out;
  resp::appendMultibulk(out, std::vector<std::string_view>(args));
  return out;
}

}  // namespace

// Forwards one connection's replies, stream frames and closure to the
// tracking, tagged with the connection's generation and role.
class NearCacheTracking::Link : public redis::ReplySink {
 public:
  Link(std::weak_ptr<NearCacheTracking> owner, std::uint64_t generation, Role role)
      : owner_(std::move(owner)), generation_(generation), role_(role) {}

  void deliver(std::uint64_t tag, std::string_view frame) override {
    if (auto owner = owner_.lock()) owner->onReply(generation_, role_, tag, frame);
  }
  void backendClosed() override {
    if (auto owner = owner_.lock()) owner->onClosed(generation_);
  }

 private:
  std::weak_ptr<NearCacheTracking> owner_;
  std::uint64_t generation_;
  Role role_;
};

NearCacheTracking::NearCacheTracking(boost::asio::any_io_executor executor,
                                     const config::RedisConfig& config,
                                     std::shared_ptr<boost::asio::ssl::context> tls,
                                     redis::BackendStats& stats, NearCache& cache, int worker,
                                     UsableFn on_usable)
    : executor_(executor),
      config_(config),
      tls_(std::move(tls)),
      stats_(stats),
      cache_(cache),
      worker_(worker),
      on_usable_(on_usable ? std::move(on_usable)
                           : UsableFn([&cache](bool up) { cache.setUsable(up); })),
      retry_(executor) {
  for (const std::string& p : cache_.prefixes()) {
    prefixes_ += (prefixes_.empty() ? "'" : ", '") + p + "'";
  }
}

void NearCacheTracking::start() {
  if (state_ != State::Off) return;
  connect();
}

void NearCacheTracking::stop() {
  state_ = State::Off;
  ++generation_;
  retry_.cancel();
  closeConnections();
  on_usable_(false);
}

void NearCacheTracking::connect() {
  ++generation_;
  state_ = State::Handshake;
  since_ = Clock::now();
  subscriber_id_.clear();
  auto self = shared_from_this();
  subscriber_link_ = std::make_shared<Link>(self, generation_, kSubscriber);
  tracker_link_ = std::make_shared<Link>(self, generation_, kTracker);
  const std::string suffix = std::to_string(worker_);
  // Both sends of each connection wait in its queue while it connects.
  subscriber_ = std::make_shared<redis::BackendConnection>(
      executor_, config_, redis::ConnectionKind::Pinned, stats_, tls_);
  subscriber_->setOwner(subscriber_link_);
  subscriber_->start();
  subscriber_->send(command({"CLIENT", "SETNAME", "larder-nearcache-sub-" + suffix}),
                    subscriber_link_, kSetName);
  subscriber_->send(command({"CLIENT", "ID"}), subscriber_link_, kClientId);
  tracker_ = std::make_shared<redis::BackendConnection>(
      executor_, config_, redis::ConnectionKind::Pinned, stats_, tls_);
  tracker_->setOwner(tracker_link_);
  tracker_->start();
  tracker_->send(command({"CLIENT", "SETNAME", "larder-nearcache-track-" + suffix}), tracker_link_,
                 kSetName);
}

void NearCacheTracking::onReply(std::uint64_t generation, Role role, std::uint64_t tag,
                                std::string_view frame) {
  if (generation != generation_ || state_ == State::Off || state_ == State::Waiting) return;
  if (role == kSubscriber && subscriber_id_.size() > 0) {
    onStreamFrame(frame);
    return;
  }
  if (!frame.empty() && frame.front() == '-') {
    lost(frame.substr(1, frame.size() >= 3 ? frame.size() - 3 : 0));
    return;
  }
  switch (tag) {
    case kClientId:
      if (frame.size() < 4 || frame.front() != ':') {
        lost("unexpected reply to CLIENT ID");
        return;
      }
      subscriber_id_ = std::string(frame.substr(1, frame.size() - 3));
      // From here on every frame of the subscriber is a pub/sub message.
      subscriber_->setStreamSink(subscriber_link_);
      subscriber_->sendUntracked(command({"SUBSCRIBE", kChannel}));
      return;
    case kTracking:
      state_ = State::Up;
      unanswered_ = 0;
      sub_pong_ = tracker_pong_ = true;
      backoff_ = std::chrono::milliseconds(0);
      on_usable_(true);
      spdlog::info("worker {}: near cache on (Redis invalidation for prefixes {} from {})", worker_,
                   prefixes_, config_.address.toString());
      return;
    case kPing:
      tracker_pong_ = true;
      return;
    default:
      return;
  }
}

void NearCacheTracking::onStreamFrame(std::string_view frame) {
  InvalidationFrame f = parseInvalidationFrame(frame);
  switch (f.type) {
    case InvalidationFrame::Type::Keys:
      for (const std::string& key : f.keys) cache_.invalidate(key);
      return;
    case InvalidationFrame::Type::FlushAll:
      cache_.flush();
      return;
    case InvalidationFrame::Type::Subscribed:
      if (state_ == State::Handshake) enableTracking();
      return;
    case InvalidationFrame::Type::Pong:
      sub_pong_ = true;
      return;
    case InvalidationFrame::Type::Other:
      if (!frame.empty() && frame.front() == '-') {
        lost(frame.substr(1, frame.size() >= 3 ? frame.size() - 3 : 0));
      }
      return;
  }
}

void NearCacheTracking::enableTracking() {
  std::vector<std::string> args{"CLIENT", "TRACKING", "on", "REDIRECT", subscriber_id_, "BCAST"};
  const std::vector<std::string> prefixes = cache_.prefixes();
  // An empty prefix means every key: BCAST without PREFIX says just that.
  if (std::none_of(prefixes.begin(), prefixes.end(), [](const auto& p) { return p.empty(); })) {
    for (const std::string& p : prefixes) {
      args.push_back("PREFIX");
      args.push_back(p);
    }
  }
  args.push_back("NOLOOP");
  std::string request;
  const std::vector<std::string_view> views(args.begin(), args.end());
  resp::appendMultibulk(request, views);
  tracker_->send(request, tracker_link_, kTracking);
}

void NearCacheTracking::onClosed(std::uint64_t generation) {
  if (generation != generation_ || state_ == State::Off || state_ == State::Waiting) return;
  lost("connection closed");
}

void NearCacheTracking::lost(std::string_view why) {
  if (state_ == State::Off || state_ == State::Waiting) return;
  if (state_ == State::Up) {
    spdlog::warn("worker {}: near cache off (flushed) until invalidation from {} is back: {}",
                 worker_, config_.address.toString(), why);
  } else {
    spdlog::warn("worker {}: near cache: Redis invalidation from {} not established: {}", worker_,
                 config_.address.toString(), why);
  }
  state_ = State::Waiting;
  ++generation_;
  on_usable_(false);
  closeConnections();
  backoff_ =
      backoff_.count() == 0 ? config_.reconnect_min : std::min(backoff_ * 2, config_.reconnect_max);
  retry_.expires_after(backoff_);
  retry_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->state_ != State::Waiting) return;
    self->connect();
  });
}

void NearCacheTracking::closeConnections() {
  // stop() answers what is still pending with errors, to links of an old
  // generation: ignored.
  if (subscriber_) subscriber_->stop();
  if (tracker_) tracker_->stop();
  subscriber_.reset();
  tracker_.reset();
}

void NearCacheTracking::tick(Clock::time_point now) {
  if (state_ == State::Handshake && now - since_ > kHandshakeDeadline) {
    lost("handshake took too long");
    return;
  }
  if (state_ != State::Up) return;
  if (sub_pong_ && tracker_pong_) {
    unanswered_ = 0;
  } else if (++unanswered_ >= kMaxUnanswered) {
    lost("no answer to PING");
    return;
  }
  if (sub_pong_) {
    sub_pong_ = false;
    subscriber_->sendUntracked(command({"PING"}));
  }
  if (tracker_pong_) {
    tracker_pong_ = false;
    tracker_->send(command({"PING"}), tracker_link_, kPing);
  }
}

}  // namespace larder::cache
