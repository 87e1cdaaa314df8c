#include "larder/cluster/cluster_pin.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>

#include "larder/common/errors.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::cluster {

namespace asio = boost::asio;

namespace {

constexpr std::string_view kMulti = "*1\r\n$5\r\nMULTI\r\n";
constexpr std::string_view kDiscard = "*1\r\n$7\r\nDISCARD\r\n";
constexpr std::string_view kAsking = "*1\r\n$6\r\nASKING\r\n";
constexpr std::size_t kMaxReplay = 256;
constexpr std::size_t kMaxReplayBytes = 1024 * 1024;
// How often a pin waiting for its shard looks for the slot's owner.
constexpr std::chrono::milliseconds kWaitStep{50};

class DiscardSink : public redis::ReplySink {
 public:
  void deliver(std::uint64_t, std::string_view) override {}
  void fail(std::uint64_t, const redis::BackendFailure&) override {}
};

const std::shared_ptr<redis::ReplySink>& discard() {
  static const std::shared_ptr<redis::ReplySink> sink = std::make_shared<DiscardSink>();
  return sink;
}

}  // namespace

// Between one of the pin's connections and the session (one per connection,
// so that what a connection says is known to be its own): a redirect is
// followed (a lone request) or becomes Redis' CROSSSLOT (a key of another
// node in a transaction or among subscriptions); the rest passes through.
class ClusterPin::PinSink : public redis::ReplySink {
 public:
  PinSink(Router& router, std::weak_ptr<redis::ReplySink> session, std::weak_ptr<ClusterPin> pin,
          int node)
      : router_(router), session_(std::move(session)), pin_(std::move(pin)), node_(node) {}

  // The pin left this connection for good: what it still says goes nowhere.
  void detach() { detached_ = true; }

  void deliver(std::uint64_t tag, std::string_view frame) override {
    auto session = session_.lock();
    if (!session || detached_) return;
    auto pin = pin_.lock();
    if (pin) {
      pin->connected(this);
      if (pin->multi_open_ && tag == pin->multi_tag_ && pin->firstMulti(frame, nullptr)) return;
    }
    if (!frame.empty() && frame.front() == '-') {
      const Redirect r = classify(frame);
      if (r.kind == Redirect::Kind::Moved || r.kind == Redirect::Kind::Ask) {
        if (pin && pin->followed(tag, r)) return;
        router_.learn(r, node_);
        session->deliver(tag, resp::errorReply(errors::kCrossSlot));
        return;
      }
    }
    session->deliver(tag, frame);
  }
  void fail(std::uint64_t tag, const redis::BackendFailure& failure) override {
    if (detached_) return;
    auto pin = pin_.lock();
    if (pin) {
      const bool unwritten = failure.kind == redis::BackendFailure::Kind::Unavailable;
      if (unwritten && pin->holdUnwritten(this, tag, failure)) return;
      if (pin->multi_open_ && tag == pin->multi_tag_ && pin->firstMulti({}, &failure)) return;
    }
    if (auto session = session_.lock()) session->fail(tag, failure);
  }
  void backendClosed() override {
    if (detached_) return;
    auto pin = pin_.lock();
    // A connection the pin has left holds none of the client's state (what it
    // still owed has failed one by one); one waiting for its shard is replaced.
    if (pin && (pin->sink_.get() != this || pin->waiting())) return;
    if (auto session = session_.lock()) session->backendClosed();
  }

 private:
  Router& router_;
  std::weak_ptr<redis::ReplySink> session_;
  std::weak_ptr<ClusterPin> pin_;
  const int node_;  // the node of the connection
  bool detached_ = false;
};

// The MULTI that rebuilds a moved transaction on its key's node: its answer
// stands in for the client's MULTI should the first node fail that one.
class ClusterPin::StandInSink : public redis::ReplySink {
 public:
  explicit StandInSink(std::weak_ptr<ClusterPin> pin) : pin_(std::move(pin)) {}
  void deliver(std::uint64_t, std::string_view frame) override {
    if (auto pin = pin_.lock()) pin->standIn(frame, nullptr);
  }
  void fail(std::uint64_t, const redis::BackendFailure& failure) override {
    if (auto pin = pin_.lock()) pin->standIn({}, &failure);
  }

 private:
  std::weak_ptr<ClusterPin> pin_;
};

ClusterPin::ClusterPin(Router& router, std::weak_ptr<redis::ReplySink> session)
    : router_(router), session_(std::move(session)) {}

// Not a release: the session releases its pin when it closes, while the
// router and the worker's io_context still run; a pin destroyed otherwise is
// part of the worker's teardown, where its connections just go.
ClusterPin::~ClusterPin() = default;

bool ClusterPin::bind(int node) {
  std::shared_ptr<redis::BackendConnection> conn = router_.acquireDedicated(node);
  if (!conn) return false;
  take(std::move(conn), node);
  return true;
}

void ClusterPin::take(std::shared_ptr<redis::BackendConnection> conn, int node) {
  conn_ = std::move(conn);
  node_ = node;
  sink_ = std::make_shared<PinSink>(router_, session_, weak_from_this(), node);
  sends_ = 0;
  // Until it answers, what is sent on a new connection may never be written.
  dropUnwritten();
  keep_unwritten_ = !conn_->ready();
  conn_->setOwner(sink_);
  if (stream_) conn_->setStreamSink(sink_, pushes_only_);
}

bool ClusterPin::switchTo(int node) {
  std::shared_ptr<redis::BackendConnection> next;
  for (auto it = left_.begin(); it != left_.end(); ++it) {
    if (it->first == node) {
      next = std::move(it->second);
      left_.erase(it);
      break;
    }
  }
  if (!next) next = router_.acquireDedicated(node);
  if (!next) return false;
  conn_->setOwner({});
  conn_->setStreamSink(nullptr);
  left_.emplace_back(node_, std::move(conn_));
  take(std::move(next), node);
  return true;
}

void ClusterPin::moveTo(int node) {
  if (!switchTo(node)) return;  // stays where it is: its keys then get CROSSSLOT
  // The client has had MULTI's and the queued commands' replies from the
  // first node; here they are sent again only to rebuild the transaction
  // (and kept with the rest, should this connection not connect).
  auto silently = [this](std::string_view r, const std::shared_ptr<redis::ReplySink>& sink) {
    if (keep_unwritten_ && !keepUnwritten(0, r, sink)) dropUnwritten();
    conn_->send(r, sink, 0);
  };
  // The first node has not answered the client's MULTI yet: should it fail
  // it, this node's answer is the client's (MULTI must not fail while EXEC runs).
  first_ = multi_open_ ? First::Pending : First::None;
  standin_arrived_ = false;
  silently(kMulti, multi_open_ ? std::make_shared<StandInSink>(weak_from_this()) : discard());
  for (const std::string& r : replay_) silently(r, discard());
  left_.back().second->send(kDiscard, discard(), 0);
}

void ClusterPin::track(const commands::Command* command) {
  if (command == nullptr) return;
  const std::string_view name = command->name();
  if (name == "multi") {
    in_multi_ = true;
    replay_.clear();
    replay_bytes_ = 0;
  } else if (name == "exec" || name == "discard") {
    in_multi_ = watching_ = false;
  } else if (name == "watch") {
    watching_ = true;
  } else if (name == "unwatch") {
    watching_ = false;
  } else if (name == "reset") {
    in_multi_ = watching_ = false;
  }
}

ClusterPin::Outcome ClusterPin::send(const Plan& plan, const commands::Command* command,
                                     bool blocking, std::string_view bytes, std::uint64_t tag) {
  if (waiting_) {
    // Behind the kept requests, in order; they go together or fail together
    // (a provisional MULTI's with its first key, to that key's node).
    if (provisional_ && plan.first_slot >= 0) {
      provisional_ = false;
      wait_slot_ = plan.first_slot;
    }
    track(command);
    if (keepUnwritten(tag, bytes)) return Outcome::Sent;
    asio::post(router_.executor(), [weak = weak_from_this()] {
      if (auto pin = weak.lock(); pin && pin->waiting_) pin->giveUp();
    });
    return Outcome::Refused;
  }
  const int key_node = plan.first_slot >= 0 ? router_.ownerOf(plan.first_slot) : -1;
  const bool several_slots = plan.kind == Plan::Kind::Split || plan.kind == Plan::Kind::CrossSlot ||
                             plan.kind == Plan::Kind::AllPrimaries || plan.kind == Plan::Kind::Scan;
  if (!in_multi_ && !stream_) {
    // Outside a transaction only this node's own keys belong here; a
    // blocking call must stay on a dedicated connection, so the pin follows
    // it when it holds no WATCH.
    if (several_slots) return Outcome::Shared;
    if (conn_ && plan.first_slot >= 0 && key_node != node_) {
      if (!blocking) return Outcome::Shared;
      if (!watching_ && key_node >= 0) {
        if (!switchTo(key_node)) return Outcome::Refused;
        wait_slot_ = plan.first_slot;
      }
    }
  }
  if (!conn_) {
    const int node = plan.first_slot >= 0 ? key_node : router_.anyNode();
    if (node < 0 || !bind(node)) return Outcome::Refused;
    provisional_ = plan.first_slot < 0;
    wait_slot_ = plan.first_slot;
  } else if (provisional_ && plan.first_slot >= 0) {
    provisional_ = false;
    wait_slot_ = plan.first_slot;
    if (key_node >= 0 && key_node != node_) moveTo(key_node);
  }
  const bool stateless = !in_multi_ && !watching_;
  // A MULTI on a connection holding no state (one the pin kept from an
  // earlier transaction or call) may still move to its first key's node.
  if (stateless && command != nullptr && command->name() == "multi") provisional_ = true;
  if (command != nullptr && command->name() == "multi" && !in_multi_) {
    multi_tag_ = tag;  // (a nested MULTI is an error that changes nothing)
    multi_open_ = true;
    first_ = First::None;
  }
  track(command);
  if (provisional_ && in_multi_ && !(command && command->name() == "multi")) {
    replay_bytes_ += bytes.size();
    if (replay_.size() >= kMaxReplay || replay_bytes_ > kMaxReplayBytes) {
      provisional_ = false;  // too much to replay: the transaction stays here
    } else {
      replay_.emplace_back(bytes);
    }
  }
  ++sends_;
  last_tag_ = tag;
  last_resendable_ = stateless && sends_ == 1 && plan.first_slot >= 0;
  if (last_resendable_) {
    last_request_.assign(bytes);
    redirects_ = 0;
  }
  if (keep_unwritten_ && !keepUnwritten(tag, bytes)) dropUnwritten();
  conn_->send(bytes, sink_, tag);
  return Outcome::Sent;
}

bool ClusterPin::keepUnwritten(std::uint64_t tag, std::string_view bytes,
                               std::shared_ptr<redis::ReplySink> sink) {
  if (unwritten_.size() >= kMaxReplay || unwritten_bytes_ + bytes.size() > kMaxReplayBytes) {
    return false;
  }
  unwritten_bytes_ += bytes.size();
  unwritten_.push_back(Unwritten{tag, std::string(bytes), std::move(sink)});
  return true;
}

void ClusterPin::dropUnwritten() {
  unwritten_.clear();
  unwritten_bytes_ = 0;
  keep_unwritten_ = false;
}

void ClusterPin::connected(const PinSink* from) {
  if (!keep_unwritten_ || from != sink_.get()) return;
  dropUnwritten();
  wait_deadline_ = {};
}

bool ClusterPin::holdUnwritten(const PinSink* from, std::uint64_t tag,
                               const redis::BackendFailure& failure) {
  if (!keep_unwritten_ || from != sink_.get()) return false;
  const bool kept = std::any_of(unwritten_.begin(), unwritten_.end(),
                                [tag](const Unwritten& u) { return !u.sink && u.tag == tag; });
  if (!kept) return false;
  if (!waiting_) {
    waiting_ = true;
    wait_detail_.assign(failure.detail);
    const auto now = std::chrono::steady_clock::now();
    if (wait_deadline_ == std::chrono::steady_clock::time_point{}) {
      wait_deadline_ = now + router_.retryTimeout();
    }
    armWait();  // not now: the connection is still failing its requests
  }
  return true;
}

void ClusterPin::armWait() {
  if (!wait_timer_) wait_timer_ = std::make_unique<asio::steady_timer>(router_.executor());
  wait_timer_->expires_after(kWaitStep);
  wait_timer_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    if (auto pin = weak.lock(); pin && pin->waiting_) pin->retryUnwritten();
  });
}

void ClusterPin::retryUnwritten() {
  const int node = wait_slot_ >= 0 ? router_.ownerOf(wait_slot_) : router_.anyNode();
  std::shared_ptr<redis::BackendConnection> next;
  if (router_.nodeUp(node)) next = router_.acquireDedicated(node);
  if (!next) {
    if (std::chrono::steady_clock::now() < wait_deadline_) {
      armWait();
    } else {
      giveUp();
    }
    return;
  }
  if (conn_) {
    sink_->detach();  // it never connected: it owes the client nothing
    conn_->setOwner({});
    conn_->setStreamSink(nullptr);
    conn_->stop();
  }
  std::vector<Unwritten> kept = std::move(unwritten_);
  waiting_ = false;
  take(std::move(next), node);
  sends_ = kept.size();
  for (Unwritten& u : kept) {
    if (keep_unwritten_ && !keepUnwritten(u.tag, u.bytes, u.sink)) dropUnwritten();
    conn_->send(u.bytes, u.sink ? u.sink : sink_, u.tag);
  }
}

bool ClusterPin::firstMulti(std::string_view frame, const redis::BackendFailure* failure) {
  multi_open_ = false;
  const bool ok = failure == nullptr && frame == "+OK\r\n";
  if (first_ != First::Pending) {
    // Not moved: a MULTI Redis refused (or never got) begins no transaction.
    if (!ok && in_multi_) {
      in_multi_ = provisional_ = false;
      replay_.clear();
      replay_bytes_ = 0;
    }
    return false;
  }
  if (ok) {
    first_ = First::Ok;  // the client has its +OK; the stand-in's answer goes
    return false;
  }
  first_ = First::Failed;
  if (standin_arrived_) answerWithStandIn();
  return true;
}

void ClusterPin::standIn(std::string_view frame, const redis::BackendFailure* failure) {
  standin_arrived_ = true;
  standin_failed_ = failure != nullptr;
  if (failure) {
    standin_.assign(failure->detail);
    standin_kind_ = failure->kind;
  } else {
    standin_.assign(frame);
  }
  if (first_ == First::Failed) answerWithStandIn();
}

void ClusterPin::answerWithStandIn() {
  first_ = First::None;
  auto session = session_.lock();
  if (!session) return;
  if (standin_failed_) {
    session->fail(multi_tag_, redis::BackendFailure{standin_kind_, standin_});
  } else {
    session->deliver(multi_tag_, standin_);
  }
}

void ClusterPin::giveUp() {
  std::vector<Unwritten> kept = std::move(unwritten_);
  dropUnwritten();
  waiting_ = false;
  wait_deadline_ = {};
  auto session = session_.lock();
  if (!session) return;
  const redis::BackendFailure failure{redis::BackendFailure::Kind::Unavailable, wait_detail_};
  for (const Unwritten& u : kept) {
    if (u.sink) {
      u.sink->fail(u.tag, failure);
    } else {
      session->fail(u.tag, failure);
    }
  }
  session->backendClosed();  // the pin's connection is gone, as the client would have heard
}

ClusterPin::Outcome ClusterPin::sendOnStream(const Plan& plan, std::string_view bytes) {
  if (!conn_) {
    const int node = plan.first_slot >= 0 ? router_.ownerOf(plan.first_slot) : router_.anyNode();
    if (node < 0 || !bind(node)) return Outcome::Refused;
    provisional_ = false;
  }
  conn_->sendUntracked(bytes);
  return Outcome::Sent;
}

bool ClusterPin::followed(std::uint64_t tag, const Redirect& r) {
  if (!last_resendable_ || tag != last_tag_ || sends_ != 1 || stream_) return false;
  if (++redirects_ > 5) return false;
  if (r.kind == Redirect::Kind::Moved) router_.learn(r, node_);
  const int target = router_.redirectTarget(r, node_);
  // The connection answered its only request: it holds no state.
  if (target < 0 || !switchTo(target)) return false;
  if (r.kind == Redirect::Kind::Ask) conn_->send(kAsking, discard(), 0);
  ++sends_;
  conn_->send(last_request_, sink_, tag);
  return true;
}

void ClusterPin::setStream(proxy::Stream mode) {
  stream_ = mode != proxy::Stream::Off;
  pushes_only_ = mode == proxy::Stream::Pushes;
  if (conn_) {
    conn_->setStreamSink(stream_ ? std::shared_ptr<redis::ReplySink>(sink_) : nullptr,
                         pushes_only_);
  }
}

bool ClusterPin::saturated() const { return conn_ && conn_->saturated(); }

proxy::PinnedConnection ClusterPin::pinnedConnection() const {
  if (!conn_ || waiting_) return {};
  return {conn_->redisId(), router_.addressOf(node_)};
}

bool ClusterPin::lost() const { return !waiting_ && conn_ && conn_->closed(); }

void ClusterPin::release(bool clean) {
  if (wait_timer_) wait_timer_->cancel();
  const bool waited = waiting_;
  waiting_ = false;
  dropUnwritten();
  if (!conn_) return;
  if (waited) clean = false;  // its connection never connected
  std::shared_ptr<redis::BackendConnection> c = std::move(conn_);
  c->setOwner({});  // its closing is ours, not news to report
  c->setStreamSink(nullptr);
  // What the pin sent decides too: a transaction it saw begin and not end
  // would greet the pool's next user.
  router_.releaseDedicated(node_, std::move(c), clean && !stream_ && !in_multi_ && !watching_);
  for (auto& [node, left] : left_) router_.releaseDedicated(node, std::move(left), clean);
  left_.clear();
  node_ = -1;
  in_multi_ = watching_ = provisional_ = multi_open_ = false;
  first_ = First::None;
  replay_.clear();
}

}  // namespace larder::cluster
