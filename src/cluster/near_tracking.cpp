#include "larder/cluster/near_tracking.hpp"

#include <algorithm>

namespace larder::cluster {

ClusterNearTracking::ClusterNearTracking(boost::asio::any_io_executor executor,
                                         const config::RedisConfig& config,
                                         std::shared_ptr<boost::asio::ssl::context> tls,
                                         redis::BackendStats& stats, cache::NearCache& cache,
                                         int worker, const Router& router)
    : executor_(std::move(executor)),
      config_(config),
      tls_(std::move(tls)),
      stats_(stats),
      cache_(cache),
      worker_(worker),
      router_(router) {}

ClusterNearTracking::~ClusterNearTracking() { stop(); }

void ClusterNearTracking::start() {
  started_ = true;
  follow();
}

void ClusterNearTracking::stop() {
  started_ = false;
  for (auto& node : nodes_) node->tracking->stop();
  nodes_.clear();
  cache_.setUsable(false);
}

void ClusterNearTracking::tick(std::chrono::steady_clock::time_point now) {
  if (!started_) return;
  follow();
  for (auto& node : nodes_) node->tracking->tick(now);
}

void ClusterNearTracking::follow() {
  const std::vector<config::Endpoint> primaries = router_.primaryAddresses();
  if (primaries.empty()) return;  // no map yet: keep what there is
  bool changed = false;
  // A primary no more (failed over, removed): its keys are another's now.
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (std::find(primaries.begin(), primaries.end(), (*it)->config->address) != primaries.end()) {
      ++it;
      continue;
    }
    (*it)->tracking->stop();
    it = nodes_.erase(it);
    changed = true;
  }
  for (const config::Endpoint& address : primaries) {
    const bool known = std::any_of(nodes_.begin(), nodes_.end(),
                                   [&](const auto& n) { return n->config->address == address; });
    if (known) continue;
    auto node = std::make_unique<Node>();
    node->config = std::make_unique<config::RedisConfig>(config_);
    node->config->address = address;
    node->config->cluster = {};
    Node* raw = node.get();
    node->tracking = std::make_shared<cache::NearCacheTracking>(
        executor_, *node->config, tls_, stats_, cache_, worker_, [this, raw](bool up) {
          raw->up = up;
          update();
        });
    nodes_.push_back(std::move(node));
    raw->tracking->start();
    changed = true;
  }
  // Keys cached while another node held their slots: dropped.
  if (changed) cache_.flush();
  update();
}

void ClusterNearTracking::update() {
  const bool all_up = !nodes_.empty() && std::all_of(nodes_.begin(), nodes_.end(),
                                                     [](const auto& n) { return n->up; });
  cache_.setUsable(all_up);
}

}  // namespace larder::cluster
