#pragma once
// One client session's backend port when the backend is a Redis Cluster: the
// session hands its pipeline this instead of itself (server/session.cpp), so
// nothing changes for a single Redis. Each request is parsed once more here
// (the pipeline's port carries bytes), planned (request_plan.hpp), and then
// answered as a one-node cluster would (CLUSTER SLOTS ...), refused with
// CROSSSLOT, or handed to the worker's Router or to the client's ClusterPin.
//
//   Pipeline --send(Shared, bytes, tag)--> plan --> Local | CROSSSLOT | Router::dispatch
//            --send(Pinned, ...)---------> ClusterPin (or the Router, for a key
//                                          of another node outside a transaction)
#include <memory>
#include <string>
#include <vector>

#include "larder/cluster/cluster_pin.hpp"
#include "larder/cluster/router.hpp"
#include "larder/commands/keys.hpp"
#include "larder/proxy/ports.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cluster {

class ClusterBackend : public proxy::BackendPort {
 public:
  // `local_address`: "ip:port" the client connected to (CLUSTER SLOTS names it).
  ClusterBackend(Router& router, proxy::WorkerStats& stats, int max_pinned,
                 std::string local_address);
  ~ClusterBackend() override;

  // The session, once it is owned by a shared_ptr: replies go there.
  void attach(std::weak_ptr<redis::ReplySink> session) { session_ = std::move(session); }
  // The session closes: its dedicated connection goes.
  void close() { unpin(false); }

  void send(proxy::Conn conn, std::string_view request, std::uint64_t tag) override;
  void sendOnStream(std::string_view request) override;
  bool saturated(proxy::Conn conn) const override;
  bool pin() override;
  void setStream(proxy::Stream mode) override;
  void unpin(bool clean) override;
  bool pinLost() const override;
  // CLIENT UNBLOCK: the client's dedicated connection and its node.
  proxy::PinnedConnection pinnedConnection() const;
  // Busy scripts are watched on one Redis only (docs/compatibility.md): on a
  // cluster a request behind a busy script waits for it on that node's
  // connection, and SCRIPT KILL / FUNCTION KILL are routed like any command.
  // The next request sent is a script call (router_scripts.cpp watches it).
  void watchScript(std::uint64_t tag) override {
    script_tag_ = tag;
    script_next_ = true;
  }
  std::string_view redisBusy() const override { return {}; }

 private:
  // Plans `request` (one complete multibulk); false when it does not parse.
  bool plan(std::string_view request, Plan& out, const commands::Command*& command);
  void reply(const std::shared_ptr<redis::ReplySink>& sink, std::uint64_t tag,
             std::string_view frame);

  Router& router_;
  proxy::WorkerStats& stats_;
  int max_pinned_;
  std::string local_;
  std::weak_ptr<redis::ReplySink> session_;
  std::shared_ptr<ClusterPin> pin_;
  proxy::Stream stream_ = proxy::Stream::Off;
  std::uint64_t script_tag_ = 0;
  bool script_next_ = false;
  resp::RequestParser parser_;
  resp::Request parsed_;
  std::vector<commands::KeyRef> keys_;
};

}  // namespace larder::cluster
