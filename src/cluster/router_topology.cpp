// The router's view of the cluster (router.hpp): node links, the slot map,
// MOVED patches, and the topology votes that replace the map as a whole.
//
//   requestRefresh() --(at most every 100 ms; backs off while votes fail)--> startVote()
//   startVote: candidates = primaries, then other known nodes, then the seeds
//   askNext: CLUSTER SHARDS (as Larder) on the candidate's shared connection
//   answer --TopologyVote--> two nodes agree: adopt(); else the next candidate
//   housekeeping (every 100 ms): readiness, a vote that hangs, the refresh timer
#include <spdlog/spdlog.h>

#include <algorithm>

#include "larder/cluster/router.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::cluster {

namespace {

constexpr std::uint64_t kVoteTag = (std::uint64_t{1} << 63) | (std::uint64_t{1} << 62);
constexpr std::string_view kClusterShards = "*2\r\n$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n";
constexpr std::string_view kReadOnly = "*1\r\n$8\r\nREADONLY\r\n";
constexpr std::string_view kUnwatch = "*1\r\n$7\r\nUNWATCH\r\n";
constexpr auto kTick = std::chrono::milliseconds(100);
constexpr auto kMinRefreshGap = std::chrono::milliseconds(100);
constexpr auto kMaxRefreshGap = std::chrono::milliseconds(2000);
constexpr std::size_t kMaxIdleDedicated = 8;

// Swallows replies nobody waits for (UNWATCH on a connection going idle).
class DiscardSink : public redis::ReplySink {
 public:
  void deliver(std::uint64_t, std::string_view) override {}
  void fail(std::uint64_t, const redis::BackendFailure&) override {}
};

}  // namespace

Router::Router(boost::asio::any_io_executor executor, const config::RedisConfig& config,
               proxy::WorkerStats& stats, std::shared_ptr<boost::asio::ssl::context> tls,
               const Topology* initial, int worker)
    : executor_(executor),
      config_(config),
      stats_(stats),
      tls_(std::move(tls)),
      sink_(std::make_shared<Sink>(*this)),
      retry_timer_(executor),
      script_timer_(executor),
      tick_(executor),
      worker_(worker) {
  if (initial != nullptr) {
    adopt(*initial);
  } else {
    for (const config::Endpoint& seed : config_.cluster.seeds) nodeAt(seed);
  }
}

Router::~Router() = default;

void Router::start() {
  started_ = true;
  for (auto& link : links_) {
    if (link->shared) link->shared->start();
  }
  housekeeping();
  if (map_.slotsKnown() == 0) requestRefresh();
}

void Router::stop() {
  stopping_ = true;
  retry_timer_.cancel();
  script_timer_.cancel();
  tick_.cancel();
  vote_.reset();
  for (auto& link : links_) stopLink(*link);
  std::vector<Parked> parked;
  parked.swap(parked_);
  for (const Parked& p : parked) {
    if (!exchanges_[p.id].in_use) continue;
    std::string error = std::move(exchanges_[p.id].last_error);
    finish(p.id, error);
  }
}

// ------------------------------------------------------------------ links

std::vector<std::string> Router::preloadFor(redis::ConnectionKind kind) const {
  // Replica reads need READONLY on every (re)connect; harmless on a primary.
  // The shared connections also load the cache layer's scripts (setPreload).
  std::vector<std::string> preload;
  if (config_.cluster.read_from_replicas) preload.emplace_back(kReadOnly);
  if (kind == redis::ConnectionKind::Shared) {
    preload.insert(preload.end(), preload_.begin(), preload_.end());
  }
  return preload;
}

void Router::setPreload(std::vector<std::string> requests) {
  preload_ = std::move(requests);
  for (auto& link : links_) {  // the initial map's, made by the constructor
    if (link->shared) link->shared->setPreload(preloadFor(redis::ConnectionKind::Shared));
  }
}

void Router::setClientIdentity(std::shared_ptr<const redis::ClientIdentity> identity) {
  identity_ = std::move(identity);
  for (auto& link : links_) {  // the initial map's, made by the constructor
    if (link->shared) link->shared->setClientIdentity(identity_);
  }
}

std::shared_ptr<redis::BackendConnection> Router::makeConnection(Link& link,
                                                                 redis::ConnectionKind kind) {
  auto c = std::make_shared<redis::BackendConnection>(executor_, *link.config, kind, stats_.backend,
                                                      tls_);
  c->setPreload(preloadFor(kind));
  c->setClientIdentity(identity_);
  return c;
}

std::vector<config::Endpoint> Router::primaryAddresses() const {
  std::vector<config::Endpoint> out;
  for (int first : map_.firstSlots()) {
    const int node = map_.owner(first);
    if (node < 0) continue;
    const config::Endpoint& address = addressOf(node);
    if (std::find(out.begin(), out.end(), address) == out.end()) out.push_back(address);
  }
  return out;
}

int Router::nodeAt(const config::Endpoint& address) {
  for (std::size_t i = 0; i < links_.size(); ++i) {
    Link& link = *links_[i];
    if (!(link.address == address)) continue;
    if (!link.shared) {  // retired, now named again
      link.shared = makeConnection(link, redis::ConnectionKind::Shared);
      if (started_) link.shared->start();
    }
    return static_cast<int>(i);
  }
  auto link = std::make_unique<Link>();
  link->address = address;
  link->config = std::make_unique<config::RedisConfig>(config_);
  link->config->address = address;
  link->config->cluster = {};
  link->shared = makeConnection(*link, redis::ConnectionKind::Shared);
  if (started_) link->shared->start();
  links_.push_back(std::move(link));
  return static_cast<int>(links_.size() - 1);
}

int Router::anyNode() const {
  const std::vector<int>& firsts = map_.firstSlots();
  return firsts.empty() ? -1 : map_.owner(firsts.front());
}

void Router::stopLink(Link& link) {
  if (link.shared) link.shared->stop();  // fails what is in flight
  if (link.out_of_band) link.out_of_band->stop();
  link.out_of_band.reset();
  for (auto& c : link.idle) c->stop();
  link.idle.clear();
}

redis::BackendConnection& Router::outOfBand(Link& link) {
  if (!link.out_of_band || link.out_of_band->closed()) {
    link.out_of_band = makeConnection(link, redis::ConnectionKind::Shared);
    link.out_of_band->start();
  }
  return *link.out_of_band;
}

void Router::sendOutOfBand(const config::Endpoint& address, std::string_view request,
                           const std::shared_ptr<redis::ReplySink>& sink, std::uint64_t tag) {
  outOfBand(*links_[static_cast<std::size_t>(nodeAt(address))]).send(request, sink, tag);
}

std::shared_ptr<redis::BackendConnection> Router::outOfBandTo(const config::Endpoint& address) {
  Link& link = *links_[static_cast<std::size_t>(nodeAt(address))];
  outOfBand(link);
  return link.out_of_band;
}

bool Router::nodeUp(int node) const {
  if (node < 0 || static_cast<std::size_t>(node) >= links_.size()) return false;
  const Link& link = *links_[static_cast<std::size_t>(node)];
  return link.shared && link.shared->ready();
}

std::shared_ptr<redis::BackendConnection> Router::acquireDedicated(int node) {
  if (node < 0 || static_cast<std::size_t>(node) >= links_.size()) return nullptr;
  Link& link = *links_[static_cast<std::size_t>(node)];
  while (!link.idle.empty()) {
    auto c = std::move(link.idle.back());
    link.idle.pop_back();
    if (c->ready()) return c;
    c->stop();
  }
  auto c = makeConnection(link, redis::ConnectionKind::Pinned);
  c->start();
  return c;
}

void Router::releaseDedicated(int node, std::shared_ptr<redis::BackendConnection> c, bool clean) {
  if (!c) return;
  const bool valid = node >= 0 && static_cast<std::size_t>(node) < links_.size();
  Link* link = valid ? links_[static_cast<std::size_t>(node)].get() : nullptr;
  if (clean && !stopping_ && link && link->shared && c->ready() &&
      link->idle.size() < kMaxIdleDedicated) {
    // WATCH may outlive an EXEC that failed; the next owner starts clean.
    static const auto discard = std::make_shared<DiscardSink>();
    c->send(kUnwatch, discard, 1);
    link->idle.push_back(std::move(c));
    return;
  }
  c->stop();
}

int Router::redirectTarget(const Redirect& r, int from) {
  config::Endpoint to = r.to;
  if (to.host.empty() && from >= 0 && static_cast<std::size_t>(from) < links_.size()) {
    to.host = links_[static_cast<std::size_t>(from)]->address.host;
  }
  return to.host.empty() ? -1 : nodeAt(to);
}

void Router::learn(const Redirect& r, int node) {
  if (r.kind != Redirect::Kind::Moved || r.slot < 0) return;
  const int owner = redirectTarget(r, node);
  if (owner < 0) return;
  if (map_.owner(r.slot) != owner) {
    map_.assign(r.slot, owner);
    slots_known_.store(map_.slotsKnown(), std::memory_order_relaxed);
  }
  requestRefresh();
}

// ------------------------------------------------------------------- maps

void Router::adopt(const Topology& t) {
  SlotMap next;
  std::vector<bool> named;
  for (const Shard& shard : t.shards) {
    const NodeInfo* primary = shard.primary();
    if (primary == nullptr) continue;
    const int p = nodeAt(primary->address);
    std::vector<int> replicas;
    for (std::size_t i = 1; i < shard.nodes.size(); ++i) {
      const int r = nodeAt(shard.nodes[i].address);
      // Not "loading" too: Redis 7.0 says so of a replica until its offset
      // is gossiped, long after it synced; a replica still loading answers
      // -LOADING, and the read goes to the primary (router.cpp).
      if (!shard.nodes[i].failed) replicas.push_back(r);
      if (named.size() <= static_cast<std::size_t>(r))
        named.resize(static_cast<std::size_t>(r) + 1);
      named[static_cast<std::size_t>(r)] = true;
    }
    links_[static_cast<std::size_t>(p)]->replicas = std::move(replicas);
    if (named.size() <= static_cast<std::size_t>(p)) named.resize(static_cast<std::size_t>(p) + 1);
    named[static_cast<std::size_t>(p)] = true;
    for (auto [lo, hi] : shard.ranges) {
      for (int slot = lo; slot <= hi; ++slot) next.assign(slot, p);
    }
  }
  bool changed = false;
  for (int slot = 0; slot < kSlots && !changed; ++slot)
    changed = next.owner(slot) != map_.owner(slot);
  map_ = next;
  if (changed) {
    cluster_stats_.map_changes.add();
    if (worker_ == 0) {
      spdlog::info("redis cluster: map adopted: {}", t.describe());
    } else {
      spdlog::debug("redis cluster: worker {} adopted a new map", worker_);
    }
  }
  // Nodes that left the cluster: their connections go (in-flight requests
  // fail and are retried where they may be).
  for (std::size_t i = 0; i < links_.size(); ++i) {
    Link& link = *links_[i];
    const bool in_cluster = i < named.size() && named[i];
    if (in_cluster || !link.shared || map_.references(static_cast<int>(i))) continue;
    spdlog::debug("redis cluster: {} is no longer in the cluster", link.address.toString());
    stopLink(link);
    link.shared.reset();
    link.replicas.clear();
  }
  updateReady();
  resendParked(true);
}

void Router::updateReady() {
  const int known = map_.slotsKnown();
  slots_known_.store(known, std::memory_order_relaxed);
  bool ready = known == kSlots;
  for (int first : map_.firstSlots()) {
    const Link& link = *links_[static_cast<std::size_t>(map_.owner(first))];
    ready = ready && link.shared && link.shared->ready();
  }
  ready_.store(ready, std::memory_order_relaxed);
}

// ------------------------------------------------------------------ votes

void Router::requestRefresh() {
  refresh_wanted_ = true;
  if (vote_ || stopping_ || !started_) return;
  const auto gap = std::min(kMaxRefreshGap, kMinRefreshGap * (1 << std::min(vote_failures_, 5)));
  if (std::chrono::steady_clock::now() - last_refresh_ >= gap) startVote();
}

void Router::startVote() {
  refresh_wanted_ = false;
  last_refresh_ = vote_started_ = std::chrono::steady_clock::now();
  ++vote_serial_;
  // Primaries first (connected ones first), then the other nodes, then seeds.
  std::vector<config::Endpoint> candidates;
  auto add = [&](const config::Endpoint& e) {
    if (std::find(candidates.begin(), candidates.end(), e) == candidates.end()) {
      candidates.push_back(e);
    }
  };
  for (int pass = 0; pass < 2; ++pass) {
    for (int first : map_.firstSlots()) {
      const Link& link = *links_[static_cast<std::size_t>(map_.owner(first))];
      if ((pass == 0) == (link.shared && link.shared->ready())) add(link.address);
    }
  }
  for (const auto& link : links_) {
    if (link->shared) add(link->address);
  }
  for (const config::Endpoint& seed : config_.cluster.seeds) add(seed);
  vote_ = std::make_unique<TopologyVote>(std::move(candidates));
  cluster_stats_.refreshes.add();
  askNext();
}

void Router::askNext() {
  if (!vote_) return;
  const std::optional<config::Endpoint> next = vote_->next();
  if (!next) {
    ++vote_failures_;
    spdlog::debug("redis cluster: worker {}: no two nodes agreed on the map ({} answer(s))",
                  worker_, vote_->answers());
    vote_.reset();
    refresh_wanted_ = true;
    return;
  }
  voter_ = *next;
  const int node = nodeAt(*next);
  const std::shared_ptr<redis::BackendConnection> c =
      links_[static_cast<std::size_t>(node)]->shared;
  // May fail at once (the node is down), which asks the next one.
  c->send(kClusterShards, sink_, kVoteTag | vote_serial_, redis::As::Larder);
}

void Router::onVoteAnswer(std::uint64_t serial, std::optional<Topology> t) {
  if (!vote_ || serial != vote_serial_) return;  // a vote given up on
  vote_->answer(voter_, std::move(t));
  if (vote_->agreed()) {
    const Topology agreed = vote_->topology();
    vote_.reset();
    vote_failures_ = 0;
    adopt(agreed);
    return;
  }
  askNext();
}

void Router::housekeeping() {
  if (stopping_) return;
  updateReady();
  const auto now = std::chrono::steady_clock::now();
  const auto vote_limit =
      std::max<std::chrono::milliseconds>(config_.connect_timeout, std::chrono::milliseconds(1000));
  if (vote_ && now - vote_started_ > vote_limit) {
    spdlog::debug("redis cluster: worker {}: topology vote timed out", worker_);
    vote_.reset();  // its late answers are ignored by serial
    ++vote_failures_;
    refresh_wanted_ = true;
  }
  if (!vote_ && now - last_refresh_ >= config_.cluster.refresh_interval) refresh_wanted_ = true;
  if (refresh_wanted_) requestRefresh();
  tick_.expires_after(kTick);
  tick_.async_wait([this](boost::system::error_code ec) {
    if (!ec) housekeeping();
  });
}

}  // namespace larder::cluster
