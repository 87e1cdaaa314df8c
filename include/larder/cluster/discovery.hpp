#pragma once
// The cluster's map at start-up and for --check-config: CLUSTER SHARDS from
// the seeds (and the nodes they name) until two nodes agree, each asked on a
// short-lived connection within redis.connect_timeout. Blocking: start-up
// only; the workers' routers keep the map fresh afterwards.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "larder/cluster/topology.hpp"
#include "larder/config/config.hpp"

namespace boost::asio::ssl {
class context;
}

namespace larder::cluster {

struct Discovery {
  std::optional<Topology> topology;   // agreed by two nodes (or the only one)
  std::vector<std::string> problems;  // why nodes did not answer, in order asked
};

Discovery discover(const config::RedisConfig& config,
                   std::shared_ptr<boost::asio::ssl::context> tls);

}  // namespace larder::cluster
