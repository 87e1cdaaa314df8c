// The router's request path (router.hpp): dispatch, redirects, retries and
// merging. Links, maps and topology votes are in router_topology.cpp.
#include "larder/cluster/router.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "larder/cluster/merge.hpp"
#include "larder/cluster/scan.hpp"
#include "larder/common/errors.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::cluster {

namespace {

constexpr std::uint64_t kInternal = std::uint64_t{1} << 63;
constexpr std::uint64_t kAskingTag = kInternal | 1;
constexpr std::uint64_t kVoteTag = kInternal | (std::uint64_t{1} << 62);
// A trailer's reply (dispatchFollowed): its group in bits 0-31.
constexpr std::uint64_t kTrailerTag = kInternal | (std::uint64_t{1} << 60);
constexpr std::uint64_t kInternalKinds =
    kVoteTag | kTrailerTag | (std::uint64_t{1} << 61);  // 61: busy-script probes
constexpr std::string_view kAsking = "*1\r\n$6\r\nASKING\r\n";
constexpr auto kRetryTick = std::chrono::milliseconds(5);
constexpr auto kFirstBackoff = std::chrono::milliseconds(5);
constexpr auto kMaxBackoff = std::chrono::milliseconds(200);

}  // namespace

// ---------------------------------------------------------------- dispatch

std::uint32_t Router::allocExchange() {
  std::uint32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = static_cast<std::uint32_t>(exchanges_.size());
    exchanges_.emplace_back();
  }
  Exchange& x = exchanges_[id];
  x.in_use = true;
  x.gather = kNoGather;
  x.part = 0;
  x.slot = 0;
  x.ask = x.node = -1;
  x.redirects = 0;
  x.keyed = x.readonly = x.retrying = x.scan = x.out_of_band = x.script = false;
  x.trailer.clear();
  x.held.clear();
  x.holding = false;
  x.as = redis::As::Client;
  ++live_;
  return id;
}

void Router::freeExchange(std::uint32_t id) {
  Exchange& x = exchanges_[id];
  x.in_use = false;
  x.sink.reset();
  free_.push_back(id);
  --live_;
}

bool Router::saturated() const {
  const std::size_t shards = std::max<std::size_t>(1, map_.firstSlots().size());
  return live_ >= static_cast<std::size_t>(config_.max_pending_per_connection) * shards;
}

void Router::dispatch(const Plan& plan, std::span<const std::string_view> args,
                      std::string_view bytes, const std::shared_ptr<redis::ReplySink>& sink,
                      std::uint64_t tag, bool out_of_band, bool script, redis::As as) {
  if (stopping_) {
    sink->fail(tag, redis::BackendFailure{redis::BackendFailure::Kind::Closed, {}});
    return;
  }
  if (plan.kind == Plan::Kind::Scan) {
    dispatchScan(args, sink, tag);
    return;
  }
  if (plan.kind == Plan::Kind::Split || plan.kind == Plan::Kind::AllPrimaries) {
    std::vector<Part> parts;
    if (plan.kind == Plan::Kind::Split) {
      parts = splitRequest(plan.merge, args);
    } else {
      for (int first : map_.firstSlots()) parts.push_back(Part{first, {}, std::string(bytes)});
    }
    if (parts.empty()) {
      sink->deliver(tag, resp::errorReply(errors::kSlotNotServed));
      return;
    }
    std::uint32_t g;
    if (!free_gathers_.empty()) {
      g = free_gathers_.back();
      free_gathers_.pop_back();
    } else {
      g = static_cast<std::uint32_t>(gathers_.size());
      gathers_.emplace_back();
    }
    Gather& gather = gathers_[g];
    gather.sink = sink;
    gather.tag = tag;
    gather.merge = plan.merge;
    gather.remaining = parts.size();
    gather.keys = 0;
    gather.replies.assign(parts.size(), std::string());
    gather.positions.clear();
    std::vector<std::uint32_t> ids;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      gather.keys += parts[i].positions.size();
      gather.positions.push_back(std::move(parts[i].positions));
      const std::uint32_t id = allocExchange();
      Exchange& x = exchanges_[id];
      x.request = std::move(parts[i].request);
      x.gather = g;
      x.part = static_cast<std::uint32_t>(i);
      x.slot = parts[i].slot;
      x.keyed = plan.kind == Plan::Kind::Split;
      x.readonly = plan.readonly;
      x.out_of_band = out_of_band;
      x.as = as;
      ids.push_back(id);
    }
    // Sent once every part exists: a part answered at once (a node down)
    // must not complete the gather early.
    for (std::uint32_t id : ids) send(id);
    return;
  }
  const std::uint32_t id = singleExchange(plan, bytes, sink, tag);
  Exchange& x = exchanges_[id];
  x.out_of_band = out_of_band;
  x.script = script;
  x.as = as;
  send(id);
}

void Router::dispatchFollowed(const Plan& plan, std::string_view bytes, std::string_view trailer,
                              const std::shared_ptr<redis::ReplySink>& sink, std::uint64_t tag,
                              redis::As as) {
  if (stopping_) {
    sink->fail(tag, redis::BackendFailure{redis::BackendFailure::Kind::Closed, {}});
    return;
  }
  const std::uint32_t id = singleExchange(plan, bytes, sink, tag);
  Exchange& x = exchanges_[id];
  x.trailer.assign(trailer);
  x.as = as;
  send(id);
}

std::uint32_t Router::singleExchange(const Plan& plan, std::string_view bytes,
                                     const std::shared_ptr<redis::ReplySink>& sink,
                                     std::uint64_t tag) {
  const std::uint32_t id = allocExchange();
  Exchange& x = exchanges_[id];
  x.request.assign(bytes);
  x.sink = sink;
  x.tag = tag;
  x.keyed = plan.kind == Plan::Kind::Slot;
  if (x.keyed) {
    x.slot = plan.slot;
  } else {
    const std::vector<int>& firsts = map_.firstSlots();
    x.slot = firsts.empty() ? 0 : firsts.front();
  }
  x.readonly = plan.readonly;
  return id;
}

void Router::dispatchScan(std::span<const std::string_view> args,
                          const std::shared_ptr<redis::ReplySink>& sink, std::uint64_t tag) {
  const std::optional<ScanPosition> position = decodeCursor(args[1]);
  if (!position) {
    sink->deliver(tag, resp::errorReply(errors::kInvalidCursor));
    return;
  }
  int slot = position->slot;
  if (slot < 0) {
    const std::vector<int>& firsts = map_.firstSlots();
    if (firsts.empty()) {
      sink->deliver(tag, resp::errorReply(errors::kSlotNotServed));
      return;
    }
    slot = firsts.front();
  }
  const std::uint32_t id = allocExchange();
  Exchange& x = exchanges_[id];
  x.request = scanRequest(args, position->node_cursor);
  x.sink = sink;
  x.tag = tag;
  x.slot = slot;
  x.scan = true;
  x.readonly = true;
  send(id);
}

// -------------------------------------------------------------- sending

int Router::replicaFor(int primary) {
  const std::vector<int>& replicas = links_[static_cast<std::size_t>(primary)]->replicas;
  for (std::size_t i = 0; i < replicas.size(); ++i) {
    const int r = replicas[(rr_ + i) % replicas.size()];
    const Link& link = *links_[static_cast<std::size_t>(r)];
    if (link.shared && link.shared->ready()) {
      rr_ = rr_ + i + 1;
      return r;
    }
  }
  return primary;
}

void Router::send(std::uint32_t id) {
  Exchange& x = exchanges_[id];
  const bool asking = x.ask >= 0;
  int node = asking ? x.ask : map_.owner(x.slot);
  x.ask = -1;
  if (node < 0 || !links_[static_cast<std::size_t>(node)]->shared) {
    requestRefresh();
    retryLater(id, resp::errorReply(errors::kSlotNotServed));
    return;
  }
  if (!asking && x.readonly && x.redirects == 0 && config_.cluster.read_from_replicas) {
    node = replicaFor(node);
  }
  x.node = node;
  // Held here: a failure answered inside send() may retire nothing, but the
  // exchange itself may be finished and reused before send() returns.
  Link& link = *links_[static_cast<std::size_t>(node)];
  const std::shared_ptr<redis::BackendConnection> c = link.shared;
  if (x.out_of_band) {
    outOfBand(link).send(x.request, sink_, id);
    return;
  }
  if (!link.busy.empty()) [[unlikely]] {
    if (const std::string_view busy = stuck(x, node); !busy.empty()) {
      finish(id, busy);  // Redis would not read it until the script ends
      return;
    }
  }
  if (x.script) scriptSent(id, node);
  const bool followed = !x.trailer.empty();
  if (followed) {
    ++x.attempt;
    x.holding = false;
  }
  const std::uint32_t attempt = x.attempt;
  // ASKING holds for the next command only: sent as the request is, so that
  // no AUTH that switches identity comes between them.
  if (asking) c->send(kAsking, sink_, kAskingTag, x.as);
  c->send(x.request, sink_, id, x.as);
  // Its trailer goes on the same connection, unless the send already ended
  // the exchange (its reply is final: the trailer would answer nothing).
  if (followed && exchanges_[id].in_use && exchanges_[id].attempt == attempt) {
    joinTrailer(c, id, attempt);
  }
}

void Router::joinTrailer(const std::shared_ptr<redis::BackendConnection>& c, std::uint32_t id,
                         std::uint32_t attempt) {
  const Exchange& x = exchanges_[id];
  for (TrailerGroup& g : trailing_) {
    if (g.connection == c && g.trailer == x.trailer && g.as == x.as) {
      g.members.emplace_back(id, attempt);
      return;
    }
  }
  TrailerGroup& g = trailing_.emplace_back();
  g.connection = c;
  g.trailer = x.trailer;
  g.as = x.as;
  g.members.emplace_back(id, attempt);
  if (trailers_scheduled_) return;
  trailers_scheduled_ = true;
  // After the handlers already queued: the other writes of this turn join.
  boost::asio::post(executor_, [this, alive = std::weak_ptr<int>(alive_)] {
    if (!alive.expired()) sendTrailers();
  });
}

void Router::sendTrailers() {
  trailers_scheduled_ = false;
  std::vector<TrailerGroup> ready;
  ready.swap(trailing_);
  for (TrailerGroup& g : ready) {
    std::uint32_t index;
    if (!free_trailer_groups_.empty()) {
      index = free_trailer_groups_.back();
      free_trailer_groups_.pop_back();
    } else {
      index = static_cast<std::uint32_t>(trailer_groups_.size());
      trailer_groups_.emplace_back();
    }
    const std::shared_ptr<redis::BackendConnection> c = std::move(g.connection);
    const std::string trailer = std::move(g.trailer);
    const redis::As as = g.as;
    TrailerGroup& sent = trailer_groups_[index];
    sent.members = std::move(g.members);
    sent.in_use = true;
    // A connection closed since fails it at once: its writes hear so.
    c->send(trailer, sink_, kTrailerTag | index, as);
  }
}

bool Router::holdForTrailer(std::uint32_t id, std::string_view frame) {
  Exchange& x = exchanges_[id];
  if (x.trailer.empty()) return false;
  x.held.assign(frame);
  x.holding = true;
  return true;
}

void Router::onTrailer(std::uint64_t tag, std::string_view frame) {
  const auto index = static_cast<std::uint32_t>(tag);
  if (index >= trailer_groups_.size() || !trailer_groups_[index].in_use) return;
  // Taken out first: finishing an exchange may send (and group) more.
  std::vector<std::pair<std::uint32_t, std::uint32_t>> members =
      std::move(trailer_groups_[index].members);
  trailer_groups_[index].members.clear();
  trailer_groups_[index].in_use = false;
  free_trailer_groups_.push_back(index);
  for (const auto& [id, attempt] : members) {
    Exchange& x = exchanges_[id];
    // Sent again since (a redirect, a retry), or failed: not this trailer's.
    if (!x.in_use || x.attempt != attempt || !x.holding) continue;
    std::string both = "*2\r\n";
    both.append(x.held).append(frame);
    x.holding = false;
    finish(id, both);
  }
}

// -------------------------------------------------------------- replies

void Router::onReply(std::uint64_t tag, std::string_view frame) {
  if ((tag & kInternal) != 0) {
    if ((tag & kInternalKinds) == kTrailerTag) {
      onTrailer(tag, frame);
      return;
    }
    if ((tag & kVoteTag) != kVoteTag && (tag & kProbeTag) == kProbeTag) {
      onProbe(static_cast<int>(tag & 0xFFFF), frame);
      return;
    }
    if ((tag & kVoteTag) == kVoteTag) {
      Topology t;
      std::string error = parseShards(frame, voter_, config_.tls.enabled, t);
      if (!error.empty()) {
        spdlog::debug("redis cluster: {} cannot answer the topology: {}", voter_.toString(), error);
      }
      onVoteAnswer(tag & ~kVoteTag,
                   error.empty() ? std::optional<Topology>(std::move(t)) : std::nullopt);
    }
    return;  // ASKING's +OK
  }
  const auto id = static_cast<std::uint32_t>(tag);
  if (id >= exchanges_.size() || !exchanges_[id].in_use) return;
  if (!scripts_.empty()) scriptAnswered(id);
  if (frame.empty() || frame.front() != '-') {
    if (!holdForTrailer(id, frame)) finish(id, frame);
    return;
  }
  const Redirect r = classify(frame);
  Exchange& x = exchanges_[id];
  switch (r.kind) {
    case Redirect::Kind::None:
      if (x.node != map_.owner(x.slot) && x.redirects == 0 && frame.substr(0, 9) == "-LOADING ") {
        ++x.redirects;  // a replica still loading: the primary answers instead
        send(id);
        return;
      }
      if (!holdForTrailer(id, frame)) finish(id, frame);
      return;
    case Redirect::Kind::Moved:
    case Redirect::Kind::Ask: {
      if (!x.keyed) {  // only keys are redirected; pass anything else on
        finish(id, frame);
        return;
      }
      if (++x.redirects > config_.cluster.redirect_limit) {
        finish(id, resp::errorReply(errors::tooManyRedirects(r.slot)));
        return;
      }
      const int from = x.node;
      if (r.kind == Redirect::Kind::Moved) {
        cluster_stats_.moved.add();
        learn(r, from);
      } else {
        cluster_stats_.ask.add();
        exchanges_[id].ask = redirectTarget(r, from);
      }
      send(id);
      return;
    }
    case Redirect::Kind::TryAgain:
    case Redirect::Kind::ClusterDown:
      retryLater(id, std::string(frame));
      return;
  }
}

void Router::onFailure(std::uint64_t tag, const redis::BackendFailure& failure) {
  if ((tag & kInternal) != 0) {
    if ((tag & kInternalKinds) == kTrailerTag) {
      onTrailer(tag, resp::errorReply(failure.errorText()));
    } else if ((tag & kVoteTag) == kVoteTag) {
      onVoteAnswer(tag & ~kVoteTag, std::nullopt);
    } else if ((tag & kProbeTag) == kProbeTag) {
      onProbe(static_cast<int>(tag & 0xFFFF), {});
    }
    return;
  }
  const auto id = static_cast<std::uint32_t>(tag);
  if (id >= exchanges_.size() || !exchanges_[id].in_use) return;
  if (!scripts_.empty()) scriptAnswered(id);
  std::string error = resp::errorReply(failure.errorText());
  requestRefresh();
  // Not sent at all: safe to send again. Sent, and the connection broke: a
  // write may have run, so only reads go again.
  const bool resend =
      failure.kind == redis::BackendFailure::Kind::Unavailable || exchanges_[id].readonly;
  if (stopping_ || !resend) {
    finish(id, error);
  } else {
    retryLater(id, std::move(error));
  }
}

void Router::finish(std::uint32_t id, std::string_view frame) {
  Exchange& x = exchanges_[id];
  std::shared_ptr<redis::ReplySink> sink = std::move(x.sink);
  const std::uint64_t tag = x.tag;
  const std::uint32_t g = x.gather;
  const std::uint32_t part = x.part;
  std::string rewritten;
  if (x.scan) rewritten = scanFinal(x, frame);
  freeExchange(id);
  if (g != kNoGather) {
    Gather& gather = gathers_[g];
    gather.replies[part].assign(frame);
    if (--gather.remaining == 0) deliverGather(g);
    return;
  }
  if (!sink) return;
  sink->deliver(tag, rewritten.empty() ? frame : std::string_view(rewritten));
}

void Router::deliverGather(std::uint32_t g) {
  Gather& gather = gathers_[g];
  const std::string merged =
      mergeReplies(gather.merge, gather.replies, gather.positions, gather.keys);
  std::shared_ptr<redis::ReplySink> sink = std::move(gather.sink);
  const std::uint64_t tag = gather.tag;
  gather.replies.clear();
  free_gathers_.push_back(g);
  if (sink) sink->deliver(tag, merged);
}

std::string Router::scanFinal(const Exchange& x, std::string_view frame) const {
  std::uint64_t node_cursor = 0;
  std::string_view keys;
  if (!splitScanReply(frame, node_cursor, keys)) return std::string(frame);
  std::uint64_t cursor = 0;
  if (node_cursor == 0) {
    const int next = map_.nextFirstSlot(x.slot);
    if (next >= 0) cursor = *encodeCursor(0, next);
  } else {
    const std::optional<std::uint64_t> c = encodeCursor(node_cursor, x.slot);
    if (!c) return resp::errorReply(errors::kScanCursorTooLarge);
    cursor = *c;
  }
  return scanReply(cursor, keys);
}

// -------------------------------------------------------------- retries

void Router::retryLater(std::uint32_t id, std::string error) {
  Exchange& x = exchanges_[id];
  const auto now = std::chrono::steady_clock::now();
  if (!x.retrying) {
    x.retrying = true;
    x.deadline = now + config_.cluster.retry_timeout;
    x.backoff = kFirstBackoff;
    cluster_stats_.retries.add();
  }
  if (now >= x.deadline || stopping_) {
    cluster_stats_.retry_timeouts.add();
    finish(id, error);
    return;
  }
  x.last_error = std::move(error);
  parked_.push_back(Parked{std::min(now + x.backoff, x.deadline), id});
  x.backoff = std::min(x.backoff * 2, std::chrono::milliseconds(kMaxBackoff));
  armRetryTimer();
}

void Router::armRetryTimer() {
  if (retry_armed_ || parked_.empty() || stopping_) return;
  retry_armed_ = true;
  retry_timer_.expires_after(kRetryTick);
  retry_timer_.async_wait([this](boost::system::error_code ec) {
    retry_armed_ = false;
    if (ec || stopping_) return;
    resendParked(false);
    armRetryTimer();
  });
}

void Router::resendParked(bool all) {
  if (parked_.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  std::vector<Parked> due;
  std::vector<Parked> later;
  for (const Parked& p : parked_) (all || p.due <= now ? due : later).push_back(p);
  parked_.swap(later);
  // In the order they were parked: one client's requests keep their order.
  for (const Parked& p : due) {
    if (!exchanges_[p.id].in_use) continue;
    send(p.id);
  }
}

}  // namespace larder::cluster
