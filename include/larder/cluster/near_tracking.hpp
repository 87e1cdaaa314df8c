#pragma once
// The near cache on a Redis Cluster (docs/near_cache.md, docs/cluster.md): a
// key's writes happen on its primary, so each primary gets a tracking of its
// own (cache/near_cache_tracking.hpp: a subscriber and a BCAST tracker), made
// and dropped as the worker's map changes. The near cache is usable only
// while every primary's invalidation is up; one lost, or a primary that
// comes or goes, flushes it.
//
//   tick (each second): Router::primaryAddresses() -> trackings added/dropped
//                       -> each tracking's heartbeat
//   a tracking up/down -> NearCache::setUsable(every one up)
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <vector>

#include "larder/cache/near_cache.hpp"
#include "larder/cache/near_cache_tracking.hpp"
#include "larder/cluster/router.hpp"
#include "larder/config/config.hpp"

namespace larder::cluster {

class ClusterNearTracking {
 public:
  // `router`, `cache` and `stats` outlive this; all on the worker's thread.
  ClusterNearTracking(boost::asio::any_io_executor executor, const config::RedisConfig& config,
                      std::shared_ptr<boost::asio::ssl::context> tls, redis::BackendStats& stats,
                      cache::NearCache& cache, int worker, const Router& router);
  ~ClusterNearTracking();

  void start();
  void stop();
  void tick(std::chrono::steady_clock::time_point now);

 private:
  struct Node {
    std::unique_ptr<config::RedisConfig> config;  // the tracking keeps a reference
    std::shared_ptr<cache::NearCacheTracking> tracking;
    bool up = false;
  };
  void follow();
  void update();

  boost::asio::any_io_executor executor_;
  const config::RedisConfig& config_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  redis::BackendStats& stats_;
  cache::NearCache& cache_;
  int worker_;
  const Router& router_;
  std::vector<std::unique_ptr<Node>> nodes_;
  bool started_ = false;
};

}  // namespace larder::cluster
