// Client-side caching (CLIENT TRACKING) through the proxy. A tracking client
// holds a dedicated connection (Route::Sticky), so Redis sees one client per
// tracking client, NOLOOP and OPTIN/OPTOUT included. Three things need Larder:
//
//   REDIRECT <larder id>  the id names a Larder client; Redis knows the
//       dedicated connection of that client by another id. The I/O shell asks
//       the target (on its worker) for that connection, which it then keeps
//       until RESET or the end of the connection (redirect_target: never
//       pooled, so the target going away breaks the redirection as in Redis);
//       the request is sent with the Redis id, or with one Redis never gave
//       out when there is no such client, so Redis' own checks and texts answer.
//         step: pin -> clientRedirect(id, lookup tag) -> Barrier
//         complete(lookup tag, :redis_id) -> step again: send, rewritten
//   GETREDIR, TRACKINGINFO's redirect, tracking-redir-broken pushes: Redis'
//       id mapped back to the Larder id the client named.
//   RESP3 pushes (invalidate, tracking-redir-broken) come on the tracking
//       connection itself, so it speaks the client's protocol: RESP3 when the
//       client is (speakResp3, as for RESP3 pub/sub), and HELLO switches it.
#include <climits>

#include "larder/proxy/pipeline.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::proxy {

namespace {

using commands::equalsLower;

// Where the first REDIRECT's value is, in Redis' parse order (a PREFIX's
// value is skipped: a prefix may be called "redirect").
std::optional<std::size_t> redirectArg(const std::vector<std::string_view>& args) {
  for (std::size_t j = 3; j + 1 < args.size(); ++j) {
    if (equalsLower(args[j], "redirect")) return j + 1;
    if (equalsLower(args[j], "prefix")) ++j;
  }
  return std::nullopt;
}

constexpr std::string_view kRedirBroken = ">2\r\n$21\r\ntracking-redir-broken\r\n:";
constexpr std::string_view kRedirectField = "\r\n$8\r\nredirect\r\n:";
constexpr std::size_t kRedirectsKept = 8;

}  // namespace

Pipeline::Flow Pipeline::sticky(const resp::Request& req, const commands::Command& command) {
  if (ports_.backend.saturated(Conn::Pinned)) return Flow::Saturated;
  // Redis pushes a RESP3 client's invalidations on the tracking connection.
  if (state_.resp3 && !state_.push) speakResp3();
  const std::string_view name = command.name();
  if (name == "client|getredir" || name == "client|trackinginfo") {
    if (redirect_replies_.empty() || redirect_replies_.back() != queue_.nextTag()) {
      redirect_replies_.push_back(queue_.nextTag());
    }
  } else if (name == "client|tracking") {
    const std::optional<std::size_t> at = redirectArg(req.args);
    long long id = 0;
    if (at && parseInteger(req.args[*at], id)) {  // else Redis' "not an integer"
      // An answer for another request (one refused after its lookup) is stale.
      if (lookup_.done && lookup_.larder != id) lookup_ = {};
      if (!lookup_.done) {
        if (lookup_.tag == 0) {
          lookup_.larder = id;
          if (id <= 0) {
            lookup_.done = true;  // no such Larder client: Redis will say so
          } else {
            lookup_.tag = queue_.reserve();
            ports_.admin.clientRedirect(static_cast<std::uint64_t>(id), lookup_.tag);
          }
        }
        if (!lookup_.done) return Flow::Barrier;
      }
      const Lookup found = std::exchange(lookup_, {});
      if (found.redis != 0) {
        std::erase_if(redirects_, [&found](const auto& r) { return r.first == found.redis; });
        if (redirects_.size() == kRedirectsKept) redirects_.erase(redirects_.begin());
        redirects_.emplace_back(found.redis, static_cast<std::uint64_t>(found.larder));
      }
      // An id Redis never gives out: Redis answers that it does not exist.
      const std::string value =
          std::to_string(found.redis != 0 ? found.redis : static_cast<std::uint64_t>(LLONG_MAX));
      resp::Request rewritten;
      rewritten.args = req.args;
      rewritten.args[*at] = value;
      rewritten.inline_form = true;  // forward() encodes the arguments
      return forwardChanging(rewritten, Change::Sticky);
    }
  }
  return forwardChanging(req, Change::Sticky);
}

bool Pipeline::lookupAnswered(std::uint64_t tag, std::string_view frame) {
  if (lookup_.tag == 0 || tag != lookup_.tag) return false;
  long long redis = 0;
  if (frame.size() > 3 && frame.front() == ':' &&
      parseInteger(frame.substr(1, frame.size() - 3), redis) && redis > 0) {
    lookup_.redis = static_cast<std::uint64_t>(redis);
  }
  lookup_.tag = 0;
  lookup_.done = true;
  queue_.complete(tag, {}, out_);  // Larder's own question: nobody sees the answer
  return true;
}

bool Pipeline::becomeRedirectTarget() {
  if (end_ != End::None) return false;
  if (!state_.pinned) {
    // Its requests move to the dedicated connection now: only between two
    // of them, with nothing outstanding, so none overtakes another.
    if (!queue_.empty() || state_.unconfirmed > 0 || hold_) return false;
    if (!ports_.backend.pin()) return false;
    state_.pinned = true;
    if (state_.resp3) speakResp3();  // a RESP3 client gets invalidations as pushes
  }
  state_.redirect_target = true;
  return true;
}

std::string_view Pipeline::larderRedirect(std::string_view frame) {
  // GETREDIR's integer, or TRACKINGINFO's redirect field (RESP2 or RESP3).
  std::size_t at = 0;
  if (frame.empty()) return frame;
  if (frame.front() == ':') {
    at = 1;
  } else if (const std::size_t field = frame.find(kRedirectField);
             field != std::string_view::npos) {
    at = field + kRedirectField.size();
  } else {
    return frame;
  }
  const std::size_t end = frame.find('\r', at);
  long long redis = 0;
  if (end == std::string_view::npos || !parseInteger(frame.substr(at, end - at), redis)) {
    return frame;
  }
  for (const auto& [redis_id, larder_id] : redirects_) {
    if (static_cast<long long>(redis_id) != redis) continue;
    rewrite_.assign(frame.substr(0, at));
    rewrite_ += std::to_string(larder_id);
    rewrite_.append(frame.substr(end));
    return rewrite_;
  }
  return frame;
}

std::string_view Pipeline::larderPush(std::string_view frame) {
  if (redirects_.empty() || !frame.starts_with(kRedirBroken)) return frame;
  const std::size_t head = kRedirBroken.size() - 1;  // the id: GETREDIR's form from here
  if (larderRedirect(frame.substr(head)).data() != rewrite_.data()) return frame;
  rewrite_.insert(0, frame.substr(0, head));
  return rewrite_;
}

void Pipeline::speakResp3() {
  // Requests already on the pinned connection (SELECT, WATCH) were made in
  // RESP2 and are answered so; everything after HELLO 3 in RESP3.
  static const std::string hello3 = "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";
  sendHidden(hello3);
  state_.push = true;
  state_.dirty_stream = true;  // never back to the pool: it speaks RESP3
  ports_.backend.setStream(Stream::Pushes);
}

Pipeline::Flow Pipeline::helloPinned(bool resp3, std::string reply) {
  // HELLO also goes to the dedicated connection, so that Redis writes this
  // client's pushes (and, while subscribed, its messages) in the protocol it
  // asked for; Larder's HELLO reply takes the place of Redis'.
  resp::Request hello;
  hello.args = {"HELLO", resp3 ? "3" : "2"};
  hello.inline_form = true;
  const std::uint64_t tag = queue_.nextTag();
  replacements_[tag] = std::move(reply);
  setProtocol(resp3);  // HELLO 3's reply is translated (a map); HELLO 2's is native already
  forward(hello, Conn::Pinned);
  if (resp3) {
    state_.push = true;
    state_.dirty_stream = true;
    ports_.backend.setStream(Stream::Pushes);
  } else {
    // RESP3 pushes may still come before Redis' reply, and the confirmations
    // of (un)subscriptions sent before it: nothing more is sent until it is
    // in (stepRequest), then the frames are RESP2 (protocolSwitched).
    state_.push = false;
    protocol_tag_ = tag;
  }
  return Flow::Continue;
}

void Pipeline::protocolSwitched(std::uint64_t tag) {
  if (protocol_tag_ == 0 || tag != protocol_tag_) return;
  protocol_tag_ = 0;
  // Every confirmation sent before HELLO 2 is in: the counts are Redis'.
  push_unsynced_ = false;
  state_.stream = state_.subscriptions.any();  // a RESP2 subscriber now
  ports_.backend.setStream(state_.stream ? Stream::All : Stream::Off);
}

}  // namespace larder::proxy
