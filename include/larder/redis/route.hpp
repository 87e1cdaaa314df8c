#pragma once
// Where the cache layer's own Redis traffic goes: one connection to one
// Redis, or a Redis Cluster's router, which sends each request to the owner
// of its keys' slot and follows MOVED and ASK (cluster/cluster_route.hpp).
//
//   Loader, Invalidator, MappedRead --send(request)--> Route
//                                     BackendConnection   one Redis
//                                     ClusterRoute        Router -> slot owner
//
// A request sent on a sharded route names keys of one slot only: callers that
// batch many keys group them by slot first (sharded()).
#include <cstdint>
#include <memory>
#include <string_view>

namespace larder::redis {

class ReplySink;

// Who a request runs as in Redis (client_identity.hpp): client traffic as the
// restricted client user when the connection has one, Larder's own requests
// (write scripts, refresh probes) as the configured user.
enum class As : std::uint8_t { Client, Larder };

class Route {
 public:
  virtual ~Route() = default;

  // One complete RESP request; its reply goes to sink->deliver(tag, ...)
  // exactly once (or sink->fail).
  virtual void send(std::string_view request, std::shared_ptr<ReplySink> sink, std::uint64_t tag,
                    As as) = 0;
  // `request`, then `trailer` right behind it on the same connection (WAIT,
  // which counts the replicas of what its connection wrote). The sink gets
  // *2 [request's reply, trailer's reply] once, or the request's error alone
  // when no Redis answered it.
  virtual void sendFollowed(std::string_view request, std::string_view trailer,
                            std::shared_ptr<ReplySink> sink, std::uint64_t tag, As as) = 0;
  // The Redis (every slot's owner, on a cluster) can be asked now.
  virtual bool ready() const = 0;
  // Too many requests in flight: wait before sending more.
  virtual bool saturated() const = 0;
  // Keys of different slots must go in different requests.
  virtual bool sharded() const = 0;
};

}  // namespace larder::redis
