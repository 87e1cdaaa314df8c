// Busy scripts on a cluster (router.hpp; docs/cluster.md, "Busy scripts").
//
// While a script runs past its node's busy-reply threshold, the node answers
// every other connection with -BUSY, but reads nothing more from the
// connection the script came on: the node's shared connection, where other
// clients' requests wait behind it. So the router keeps the script calls in
// flight on shared connections, and one still running after kProbeAfter
// makes it PING that node on its out-of-band connection:
//   -BUSY ...  the node is busy: other clients' requests for it get that
//              reply at once, as from the node itself (the script's own
//              client's requests wait behind it, as in Redis)
//   else       not (yet) busy: asked again while scripts run there
// The node's last script answered -> busy no more.
#include <algorithm>

#include "larder/cluster/router.hpp"

namespace larder::cluster {

namespace {

constexpr std::string_view kPing = "*1\r\n$4\r\nPING\r\n";

}  // namespace

const void* Router::clientOf(const Exchange& x) const {
  return x.gather != kNoGather ? gathers_[x.gather].sink.get() : x.sink.get();
}

void Router::scriptSent(std::uint32_t id, int node) {
  scripts_.push_back(Watched{id, node, clientOf(exchanges_[id]), std::chrono::steady_clock::now()});
  armScriptProbe();
}

void Router::scriptAnswered(std::uint32_t id) {
  const auto it =
      std::find_if(scripts_.begin(), scripts_.end(), [id](const Watched& w) { return w.id == id; });
  if (it == scripts_.end()) return;
  const int node = it->node;
  scripts_.erase(it);
  const bool more = std::any_of(scripts_.begin(), scripts_.end(),
                                [node](const Watched& w) { return w.node == node; });
  if (!more) links_[static_cast<std::size_t>(node)]->busy.clear();
}

std::string_view Router::stuck(const Exchange& x, int node) const {
  const void* client = clientOf(x);
  for (const Watched& w : scripts_) {
    if (w.node == node && w.client == client) return {};  // behind its own script
  }
  return links_[static_cast<std::size_t>(node)]->busy;
}

void Router::armScriptProbe() {
  if (script_armed_ || stopping_) return;
  script_armed_ = true;
  script_timer_.expires_after(kProbeAfter);
  script_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    script_armed_ = false;
    probeScripts();
  });
}

void Router::probeScripts() {
  const auto due = std::chrono::steady_clock::now() - kProbeAfter;
  bool waiting = false;
  for (const Watched& w : scripts_) {
    Link& link = *links_[static_cast<std::size_t>(w.node)];
    if (!link.busy.empty() || link.probing) continue;
    if (w.since > due) {
      waiting = true;  // too young to ask about yet
      continue;
    }
    link.probing = true;
    outOfBand(link).send(kPing, sink_, kProbeTag | static_cast<std::uint64_t>(w.node));
  }
  if (waiting) armScriptProbe();
}

void Router::onProbe(int node, std::string_view frame) {
  if (node < 0 || static_cast<std::size_t>(node) >= links_.size()) return;
  Link& link = *links_[static_cast<std::size_t>(node)];
  link.probing = false;
  const bool running = std::any_of(scripts_.begin(), scripts_.end(),
                                   [node](const Watched& w) { return w.node == node; });
  if (!running) return;
  if (frame.starts_with("-BUSY")) {
    link.busy.assign(frame);
  } else {
    armScriptProbe();  // not past its threshold yet, or another script by now
  }
}

}  // namespace larder::cluster
