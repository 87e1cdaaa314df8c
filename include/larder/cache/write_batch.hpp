#pragma once
// Every behind write of one event-loop turn on one backend connection, in one
// call of the write script: Redis pays for one script call per batch instead
// of one per write (docs/benchmarks.md).
//
//   MappedWrite::send --add(write, sink, tag)--> the open call (WriteCall + who waits)
//   any other request on the connection, or the end of the loop turn --> seal():
//       EVALSHA <write script> <every write>  [WAIT <replicas> <timeout>]
//   reply *N --> element i --> waiter i's sink->deliver(tag, element)
//
// The connection seals the open call before it sends anything else
// (RequestCoalescer), so a GET pipelined after a SET still reads the SET.
// With write_behind.wait_replicas, the WAIT after the call holds every reply
// of the batch until enough replicas have it.
#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "larder/cache/write_plan.hpp"
#include "larder/cache/write_scripts.hpp"
#include "larder/config/config.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::cache {

// With write_behind.wait_replicas (here and on a cluster, where each write
// is its own call followed by WAIT on the same node connection):
// WAIT <replicas> <timeout_ms> as a request.
std::string waitRequest(int replicas, long long timeout_ms);
// WAIT's reply as a count; -1 when it is not one (WAIT failed).
long long waitCount(std::string_view frame);
// The error a write's reply becomes when WAIT counted fewer than `wanted`
// replicas; "" when enough did.
std::string unconfirmedError(long long replicas, int wanted, long long timeout_ms);
// A write's reply `element` once WAIT has answered: `unconfirmed` instead
// when that is set and the write changed something (not a status or error).
std::string_view afterWait(std::string_view element, std::string_view unconfirmed);

class WriteBatch : public redis::RequestCoalescer, public std::enable_shared_from_this<WriteBatch> {
 public:
  // `executor`: the connection's (the worker's), where the seal at the end of
  // the turn runs.
  WriteBatch(std::weak_ptr<redis::BackendConnection> connection,
             boost::asio::any_io_executor executor);

  // The batch of `connection`, installed as its coalescer on first use.
  static WriteBatch& of(redis::BackendConnection& connection,
                        boost::asio::any_io_executor executor);

  // Joins the open call (opening one, and scheduling its seal for the end of
  // this loop turn, when there is none).
  void add(const KeyWrite& w, bool absent, const config::Config& config,
           std::shared_ptr<redis::ReplySink> sink, std::uint64_t tag);
  void seal() override;

 private:
  struct Waiter {
    std::shared_ptr<redis::ReplySink> sink;
    std::uint64_t tag;
  };
  std::weak_ptr<redis::BackendConnection> connection_;
  boost::asio::any_io_executor executor_;
  std::optional<WriteCall> open_;
  std::vector<Waiter> waiters_;
  int wait_replicas_ = 0;
  long long wait_timeout_ms_ = 0;
  bool scheduled_ = false;
};

}  // namespace larder::cache
