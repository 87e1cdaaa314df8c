#pragma once
// The cache layer's way into a Redis Cluster (redis/route.hpp): each request
// of the Loader, the Invalidator or a mapped read is parsed, planned from the
// registry's key specs like a client's (request_plan.hpp) and handed to a
// Router, which sends it to the owner of its slot and follows MOVED, ASK and
// failovers. The cache layer names keys of one slot per request (its internal
// keys carry the slot's hash tag, cache/key_names.hpp); a request across
// slots is answered CROSSSLOT, a request Larder would answer itself (CLUSTER
// ...) is refused: neither reaches a node.
#include <memory>
#include <vector>

#include "larder/cluster/router.hpp"
#include "larder/commands/keys.hpp"
#include "larder/redis/route.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cluster {

class ClusterRoute final : public redis::Route {
 public:
  // `router` outlives this; both live on one thread.
  explicit ClusterRoute(Router& router);

  void send(std::string_view request, std::shared_ptr<redis::ReplySink> sink, std::uint64_t tag,
            redis::As as) override;
  void sendFollowed(std::string_view request, std::string_view trailer,
                    std::shared_ptr<redis::ReplySink> sink, std::uint64_t tag,
                    redis::As as) override;
  bool ready() const override { return router_.ready(); }
  bool saturated() const override { return router_.saturated(); }
  bool sharded() const override { return true; }

 private:
  // The plan of `request`, or false when the sink got why it has none.
  bool planned(std::string_view request, const std::shared_ptr<redis::ReplySink>& sink,
               std::uint64_t tag, Plan& plan);

  Router& router_;
  resp::RequestParser parser_;
  resp::Request parsed_;
  std::vector<commands::KeyRef> keys_;
};

// A Router of its own for a thread that is not a worker (the PostgreSQL
// thread's fills and invalidations), and the route into it.
class OwnRouter {
 public:
  OwnRouter(boost::asio::any_io_executor executor, const config::RedisConfig& config,
            std::shared_ptr<boost::asio::ssl::context> tls, const Topology* initial);
  ~OwnRouter();

  Router& router() { return *router_; }
  const std::shared_ptr<ClusterRoute>& route() const { return route_; }
  void start() { router_->start(); }
  void stop() { router_->stop(); }

 private:
  proxy::WorkerStats stats_;
  std::unique_ptr<Router> router_;
  std::shared_ptr<ClusterRoute> route_;
};

}  // namespace larder::cluster
