#include "larder/cluster/cluster_route.hpp"

#include "larder/commands/registry.hpp"
#include "larder/common/errors.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::cluster {

namespace {
// The PostgreSQL thread's router, in the log's "worker N" lines.
constexpr int kOwnRouterId = -1;
}  // namespace

ClusterRoute::ClusterRoute(Router& router)
    : router_(router),
      // Larder's own requests: no client limit applies.
      parser_(resp::ParserLimits{~std::size_t{0} >> 1, ~std::size_t{0} >> 1, ~std::size_t{0} >> 1,
                                 false}) {}

bool ClusterRoute::planned(std::string_view request, const std::shared_ptr<redis::ReplySink>& sink,
                           std::uint64_t tag, Plan& plan) {
  parser_.reset();
  if (parser_.parse(request, parsed_) != resp::ParseStatus::Complete || parsed_.args.empty()) {
    sink->deliver(tag, resp::errorReply(errors::kClusterUnreadable));
    return false;
  }
  const commands::Command* command = commands::Registry::get().resolve(parsed_.args).command;
  plan = planRequest(command, parsed_.args, keys_);
  switch (plan.kind) {
    case Plan::Kind::CrossSlot:
      sink->deliver(tag, resp::errorReply(errors::kCrossSlot));
      return false;
    case Plan::Kind::Local:  // CLUSTER ...: a question for the router, not the cache layer
      sink->deliver(tag, resp::errorReply(errors::kClusterUnreadable));
      return false;
    default:
      return true;
  }
}

void ClusterRoute::send(std::string_view request, std::shared_ptr<redis::ReplySink> sink,
                        std::uint64_t tag, redis::As as) {
  Plan plan;
  if (!planned(request, sink, tag, plan)) return;
  router_.dispatch(plan, parsed_.args, request, sink, tag, false, false, as);
}

void ClusterRoute::sendFollowed(std::string_view request, std::string_view trailer,
                                std::shared_ptr<redis::ReplySink> sink, std::uint64_t tag,
                                redis::As as) {
  Plan plan;
  if (!planned(request, sink, tag, plan)) return;
  if (plan.kind != Plan::Kind::Slot) {  // a trailer follows one request to one node
    sink->deliver(tag, resp::errorReply(errors::kClusterUnreadable));
    return;
  }
  router_.dispatchFollowed(plan, request, trailer, sink, tag, as);
}

OwnRouter::OwnRouter(boost::asio::any_io_executor executor, const config::RedisConfig& config,
                     std::shared_ptr<boost::asio::ssl::context> tls, const Topology* initial)
    : router_(std::make_unique<Router>(std::move(executor), config, stats_, std::move(tls), initial,
                                       kOwnRouterId)),
      route_(std::make_shared<ClusterRoute>(*router_)) {}

OwnRouter::~OwnRouter() = default;

}  // namespace larder::cluster
