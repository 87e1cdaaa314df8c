// RESP3 pub/sub. Redis 7 lets a RESP3 client run any command while it is
// subscribed, its messages arriving as push frames between the replies. A
// RESP2 backend connection cannot do that (Redis refuses ordinary commands
// on it while subscribed), so a RESP3 client's SUBSCRIBE pins a connection
// that Larder switches to RESP3 (HELLO 3, its reply unseen). On it:
//
//   (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE -> sent untracked: Redis answers with pushes
//   every other command             -> sent as usual, its reply matched in order
//   Redis' frames: '>' pushes       -> straight to the client (Stream::Pushes)
//                  anything else    -> the reply of the oldest request, as sent
//
// so pushes and replies reach the client in the order Redis wrote them.
// Replies from this connection are RESP3 already (native_: not translated).
// Once the confirmations say nothing is subscribed, a PING of Larder's own
// (hidden_) makes sure no confirmation is still on its way; then the
// connection is given up (closed: it speaks RESP3) and routing is as before.
#include "larder/proxy/pipeline.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::proxy {

using commands::LocalCommand;
using commands::Route;

Pipeline::Flow Pipeline::subscribeResp3(const resp::Request& req) {
  if (!state_.push) {
    if (needsBarrierToPin()) return Flow::Barrier;
    if (state_.pinned && ports_.backend.saturated(Conn::Pinned)) return Flow::Saturated;
    if (!pin(false)) return Flow::Continue;
    speakResp3();
  }
  push_unsynced_ = true;
  sendOnStream(req);
  return Flow::Continue;
}

Pipeline::Flow Pipeline::stepPush(const resp::Request&, Route route, LocalCommand local,
                                  bool& done) {
  done = false;
  // CLIENT TRACKING and friends want this connection too (tracking.cpp).
  if (route == Route::PubSub || route == Route::Sticky || local == LocalCommand::Quit ||
      local == LocalCommand::Reset) {
    return Flow::Continue;
  }
  if (state_.subscriptions.any()) return Flow::Continue;  // still subscribed: run it here
  // Other state keeps the connection (and so its RESP3) pinned anyway.
  const bool other_state = state_.in_multi || state_.watching || state_.sticky ||
                           state_.redirect_target || state_.unconfirmed > 0 ||
                           state_.db != ports_.admin.config().redis.db;
  if (other_state) return Flow::Continue;
  done = true;
  if (push_unsynced_) {
    // A (P|S)(UN)SUBSCRIBE was sent after the last confirmation seen:
    // PING answers after its confirmations, so the counts are final then.
    push_unsynced_ = false;
    static const std::string ping = "*1\r\n$4\r\nPING\r\n";
    if (ports_.backend.saturated(Conn::Pinned)) {
      push_unsynced_ = true;
      return Flow::Saturated;
    }
    sendHidden(ping);
    return Flow::Barrier;
  }
  if (!queue_.empty()) return Flow::Barrier;
  leavePush();
  done = false;  // route it as usual now
  return Flow::Continue;
}

void Pipeline::sendHidden(std::string_view request) {
  const std::uint64_t tag = queue_.reserve();
  hidden_.push_back(tag);
  ports_.backend.send(Conn::Pinned, request, tag);
}

bool Pipeline::takeHidden(std::uint64_t tag) {
  for (auto it = hidden_.begin(); it != hidden_.end(); ++it) {
    if (*it == tag) {
      hidden_.erase(it);
      return true;
    }
  }
  return false;
}

void Pipeline::leavePush() {
  state_.push = false;
  state_.subscriptions = {};
  native_.clear();
  ports_.backend.setStream(Stream::Off);
  releasePin();  // closed, not pooled (dirty_stream)
}

}  // namespace larder::proxy
