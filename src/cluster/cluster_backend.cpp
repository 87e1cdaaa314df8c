#include "larder/cluster/cluster_backend.hpp"

#include <utility>

#include "larder/cluster/one_node.hpp"
#include "larder/common/errors.hpp"
#include "larder/proxy/reply_queue.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::cluster {

ClusterBackend::ClusterBackend(Router& router, proxy::WorkerStats& stats, int max_pinned,
                               std::string local_address)
    : router_(router),
      stats_(stats),
      max_pinned_(max_pinned),
      local_(std::move(local_address)),
      // The pipeline has checked every request against the client's limits.
      parser_(resp::ParserLimits{~std::size_t{0} >> 1, ~std::size_t{0} >> 1, ~std::size_t{0} >> 1,
                                 false}) {}

// The session unpins when it closes (Session::close); see ~ClusterPin.
ClusterBackend::~ClusterBackend() = default;

bool ClusterBackend::plan(std::string_view request, Plan& out, const commands::Command*& command) {
  parser_.reset();
  if (parser_.parse(request, parsed_) != resp::ParseStatus::Complete || parsed_.args.empty()) {
    return false;
  }
  command = commands::Registry::get().resolve(parsed_.args).command;
  out = planRequest(command, parsed_.args, keys_);
  return true;
}

void ClusterBackend::reply(const std::shared_ptr<redis::ReplySink>& sink, std::uint64_t tag,
                           std::string_view frame) {
  sink->deliver(tag, frame);
}

void ClusterBackend::send(proxy::Conn conn, std::string_view request, std::uint64_t tag) {
  const bool script = std::exchange(script_next_, false) && script_tag_ == tag;
  const std::shared_ptr<redis::ReplySink> sink = session_.lock();
  if (!sink) return;
  Plan p;
  const commands::Command* command = nullptr;
  if (!plan(request, p, command)) {
    reply(sink, tag, resp::errorReply(errors::kClusterUnreadable));
    return;
  }
  // Inside a transaction the node queues even these (and EXEC answers them).
  const bool queued = conn == proxy::Conn::Pinned && pin_ && pin_->inTransaction() &&
                      p.local != LocalAnswer::TrackingRefused;
  if (p.kind == Plan::Kind::Local && !queued) {
    const OneNode node = oneNodeAt(local_, router_.slotsKnown());
    reply(sink, tag, oneNodeReply(p.local, node, parsed_.args));
    return;
  }
  if (conn == proxy::Conn::Pinned && pin_) {
    const bool blocking = command != nullptr &&
                          commands::routeOf(*command, parsed_.args) == commands::Route::Blocking;
    switch (pin_->send(p, command, blocking, request, tag)) {
      case ClusterPin::Outcome::Sent:
        return;
      case ClusterPin::Outcome::Refused:
        reply(sink, tag, resp::errorReply(errors::kSlotNotServed));
        return;
      case ClusterPin::Outcome::Shared:
        break;
    }
  }
  if (p.kind == Plan::Kind::CrossSlot) {
    reply(sink, tag, resp::errorReply(errors::kCrossSlot));
    return;
  }
  router_.dispatch(p, parsed_.args, request, sink, tag, conn == proxy::Conn::OutOfBand, script);
}

void ClusterBackend::sendOnStream(std::string_view request) {
  if (!pin_) return;
  Plan p;
  const commands::Command* command = nullptr;
  if (!plan(request, p, command)) return;
  // Shard channels in several slots: Redis' own refusal, in the stream.
  if (p.kind == Plan::Kind::CrossSlot) {
    if (auto sink = session_.lock())
      sink->deliver(proxy::kStreamTag, resp::errorReply(errors::kCrossSlot));
    return;
  }
  if (pin_->sendOnStream(p, request) == ClusterPin::Outcome::Refused) {
    if (auto sink = session_.lock()) {
      sink->deliver(proxy::kStreamTag, resp::errorReply(errors::kSlotNotServed));
    }
  }
}

bool ClusterBackend::saturated(proxy::Conn conn) const {
  if (conn == proxy::Conn::Pinned && pin_) return pin_->saturated();
  return router_.saturated();
}

bool ClusterBackend::pin() {
  if (stats_.pinned_current.get() >= static_cast<std::uint64_t>(max_pinned_)) return false;
  stats_.pinned_current.add();
  stats_.pinned_total.add();
  pin_ = std::make_shared<ClusterPin>(router_, session_);
  if (stream_ != proxy::Stream::Off) pin_->setStream(stream_);
  return true;
}

void ClusterBackend::setStream(proxy::Stream mode) {
  stream_ = mode;
  if (pin_) pin_->setStream(mode);
}

void ClusterBackend::unpin(bool clean) {
  if (!pin_) return;
  std::shared_ptr<ClusterPin> pin = std::move(pin_);
  pin->release(clean);
  stats_.pinned_current.sub();
  stream_ = proxy::Stream::Off;
}

bool ClusterBackend::pinLost() const { return pin_ && pin_->lost(); }

proxy::PinnedConnection ClusterBackend::pinnedConnection() const {
  return pin_ ? pin_->pinnedConnection() : proxy::PinnedConnection{};
}

}  // namespace larder::cluster
