// Replies: each completes its slot in the ReplyQueue and leaves in request
// order; a reply that answers a state-changing request confirms (or not) the
// change it was waiting for.
#include "larder/common/errors.hpp"
#include "larder/proxy/monitor_line.hpp"
#include "larder/proxy/pipeline.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::proxy {

void Pipeline::observe(std::uint64_t tag) {
  const ReplyQueue::Stamp stamp = queue_.takeStamp(tag);
  if (stamp.command == kNoStatsSlot) return;
  ports_.admin.stats().by_command[stamp.command].latency.observe(std::chrono::steady_clock::now() -
                                                                 stamp.start);
}

void Pipeline::complete(std::uint64_t tag, std::string_view frame) {
  if (end_ == End::Now) return;
  if (lookupAnswered(tag, frame)) return;  // CLIENT TRACKING REDIRECT's target
  if (protocol_tag_ != 0) protocolSwitched(tag);
  if (!hidden_.empty() && takeHidden(tag)) {  // Larder's own request: nobody sees its reply
    queue_.complete(tag, {}, out_);
    return;
  }
  observe(tag);
  if (!redirect_replies_.empty()) {
    if (auto it = std::find(redirect_replies_.begin(), redirect_replies_.end(), tag);
        it != redirect_replies_.end()) {
      redirect_replies_.erase(it);
      frame = larderRedirect(frame);  // Redis' id of the target -> its Larder id
    }
  }
  if (!unconfirmed_.empty()) confirm(tag, frame);
  if (!native_.empty() && native_.front() == tag) {
    // From the RESP3 pinned connection (pub/sub): already in the client's form.
    native_.pop_front();
    info_merges_.erase(tag);  // Redis' INFO as it is: its RESP3 form is not merged
    if (auto it = replacements_.find(tag); it != replacements_.end()) {
      const std::string replacement = std::move(it->second);
      replacements_.erase(it);
      queue_.complete(tag, replacement, out_);
      return;
    }
    queue_.complete(tag, frame, out_);
    return;
  }
  if (!replacements_.empty()) {
    if (auto it = replacements_.find(tag); it != replacements_.end()) {
      const std::string replacement = std::move(it->second);
      replacements_.erase(it);
      queue_.complete(tag, clientForm(tag, replacement), out_);
      return;
    }
  }
  if (!info_merges_.empty()) {
    if (auto it = info_merges_.find(tag); it != info_merges_.end()) {
      const std::string merged = mergeInfo(it->second, frame);
      info_merges_.erase(it);
      queue_.complete(tag, clientForm(tag, merged), out_);
      return;
    }
  }
  queue_.complete(tag, clientForm(tag, frame), out_);
}

void Pipeline::fail(std::uint64_t tag, const redis::BackendFailure& failure) {
  complete(tag, resp::errorReply(failure.errorText()));
}

void Pipeline::confirm(std::uint64_t tag, std::string_view frame) {
  auto it = std::find_if(unconfirmed_.begin(), unconfirmed_.end(),
                         [tag](const Unconfirmed& u) { return u.tag == tag; });
  if (it == unconfirmed_.end()) return;
  const Unconfirmed u = *it;
  unconfirmed_.erase(it);
  if (state_.unconfirmed > 0) --state_.unconfirmed;
  const bool ok = frame == "+OK\r\n";
  const bool error = !frame.empty() && frame.front() == '-';
  switch (u.change) {
    case Change::Select:
      if (ok) state_.db = u.db;
      if (!u.monitor.empty()) feedMonitors(u.monitor, state_.db);
      break;
    case Change::Multi:
      if (ok) state_.in_multi = true;
      break;
    case Change::EndMulti:
      // EXEC and DISCARD end the transaction whatever they answer (EXECABORT
      // included) and forget WATCH; EXEC without MULTI changes nothing.
      if (!u.monitor.empty()) {
        // An EXEC that ran (an array, not nil) shows its commands first.
        const bool ran = frame.size() > 1 && frame[0] == '*' && frame[1] != '-';
        if (ran) {
          for (const std::string& queued : feed_multi_) feedMonitors(queued, state_.db);
        }
        feedMonitors(u.monitor, state_.db);
      }
      if (state_.in_multi) {
        state_.in_multi = state_.watching = state_.multi_aborted = false;
        feed_multi_.clear();
        multi_queued_ = 0;
        multi_writes_ = false;
      }
      break;
    case Change::Watch:
      if (ok) state_.watching = true;
      break;
    case Change::Unwatch:
      if (ok) state_.watching = false;
      break;
    case Change::Sticky:
      if (!error) state_.sticky = true;
      break;
  }
}

void Pipeline::streamFrame(std::string_view frame) {
  if (end_ == End::Now) return;
  if (sync_tag_ != 0 && frame.find(sync_token_) != std::string_view::npos) {
    onStreamSync(frame);
    return;
  }
  state_.subscriptions.observe(frame);
  // Stream frames carry no slot: they are already in order. A RESP3 pinned
  // connection sends them as pushes already.
  if (state_.push) {
    out_.append(larderPush(frame));
  } else {
    out_.append(state_.resp3 ? reply_forms_.push(frame) : frame);
  }
}

void Pipeline::monitorLine(std::string_view line) {
  if (end_ == End::Now || state_.reply_off) return;
  out_.append(line);
}

void Pipeline::feedMonitors(std::string_view args_part, long long db) {
  ports_.admin.feedMonitors(proxy::monitorLine(std::chrono::system_clock::now(), db,
                                               ports_.client.peerAddress(), args_part));
}

void Pipeline::afterStep(Flow flow) {
  // A request is shown once it is past every refusal and on its way: not
  // while it waits (it is stepped again), not when refused (feed_ cleared).
  if (flow == Flow::Barrier || flow == Flow::Saturated || flow == Flow::Paused) return;
  if (feed_ == Feed::Now) {
    feedMonitors(feed_args_, state_.db);
  } else if (feed_ == Feed::Queued) {
    feed_multi_.push_back(std::move(feed_args_));
  }
  feed_ = Feed::None;
}

void Pipeline::pinClosed() {
  // The dedicated connection is gone, and with it the client's MULTI, WATCH,
  // subscriptions or db: ending the connection tells the client, as a Redis
  // restart would (and QUIT while subscribed ends here).
  endAfterReplies();
}

void Pipeline::protocolError(std::string_view message) {
  ports_.admin.stats().protocol_errors.add();
  replyError("ERR Protocol error: " + std::string(message));
  endAfterReplies();
}

std::string_view Pipeline::clientForm(std::uint64_t tag, std::string_view bytes) {
  if (!reply_forms_.active()) return bytes;
  return reply_forms_.translate(tag, bytes, queue_.headTag());
}

void Pipeline::setProtocol(bool resp3) {
  state_.resp3 = resp3;
  reply_forms_.switched(resp3, queue_.nextTag(), queue_.headTag());
}

void Pipeline::reply(std::string_view bytes) {
  const std::uint64_t tag = queue_.reserve();
  observe(tag);
  queue_.complete(tag, clientForm(tag, bytes), out_);
}

void Pipeline::replyError(std::string_view text) {
  std::string bytes;
  resp::appendError(bytes, text);
  reply(bytes);
}

}  // namespace larder::proxy
