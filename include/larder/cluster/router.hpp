#pragma once
// One worker's way into a Redis Cluster: a link per node (one shared,
// pipelined connection, a pool of dedicated ones), the slot map, and every
// request in flight through it until its final reply.
//
//   ClusterBackend::send --plan--> dispatch()
//        Slot/Keyless  -> one Exchange -> owner(slot).shared
//        Split/AllPrim -> one Exchange per part, a Gather merges (merge.hpp)
//        Scan          -> one Exchange, the reply's cursor rewritten (scan.hpp)
//   node reply --> onReply(exchange)
//        -MOVED   map patched, refresh asked, resent to the new owner
//        -ASK     ASKING + resent to the target; map unchanged
//        -TRYAGAIN, -CLUSTERDOWN, node unreachable: parked, resent after a
//                 backoff or a new map, until retry_timeout; then the error
//        anything else: the final reply -> sink->deliver(tag) (or the Gather)
//   refresh: CLUSTER SHARDS from the nodes until two agree (TopologyVote), on
//            MOVED, failures and every refresh_interval; parked requests go
//            again at once when a new map is adopted.
//
// Every path ends in exactly one delivery per dispatch. Single-threaded (the
// worker's); callbacks from connections may re-enter, so exchanges are named
// by index and looked up again after every call out.
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "larder/cluster/redirect.hpp"
#include "larder/cluster/request_plan.hpp"
#include "larder/cluster/slot_map.hpp"
#include "larder/cluster/topology.hpp"
#include "larder/common/counter.hpp"
#include "larder/config/config.hpp"
#include "larder/proxy/stats.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::cluster {

// Counted by one worker's router, read by INFO and /metrics.
struct ClusterStats {
  Counter moved;           // MOVED replies followed
  Counter ask;             // ASK replies followed
  Counter retries;         // requests parked for TRYAGAIN, CLUSTERDOWN or an unreachable node
  Counter retry_timeouts;  // ... that ran out of retry_timeout and got the error
  Counter refreshes;       // topology votes started
  Counter map_changes;     // new maps adopted
};

class Router {
 public:
  // `initial`: the map found at start-up, if any. `worker`: for the log
  // (worker 0 logs map changes at info level, the others at debug).
  Router(boost::asio::any_io_executor executor, const config::RedisConfig& config,
         proxy::WorkerStats& stats, std::shared_ptr<boost::asio::ssl::context> tls,
         const Topology* initial, int worker);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  void start();
  void stop();

  // One client request and its plan (not Local, not CrossSlot); its final
  // reply goes to sink->deliver(tag), exactly once. `out_of_band`: on each
  // node's out-of-band connection, which nothing else queues on (SCRIPT KILL
  // must not wait behind the busy script it kills).
  // `script`: a script call (EVAL, FCALL...) whose node other clients'
  // requests must not wait behind once Redis says it is busy (router_scripts.cpp).
  // `as`: Larder's own requests (the cache layer's, cluster_route.hpp) run as Larder.
  void dispatch(const Plan& plan, std::span<const std::string_view> args, std::string_view bytes,
                const std::shared_ptr<redis::ReplySink>& sink, std::uint64_t tag,
                bool out_of_band = false, bool script = false, redis::As as = redis::As::Client);
  // One request of one slot (a write script) followed on the same connection
  // by `trailer` (WAIT: it counts the replicas of what that connection
  // wrote). The sink gets *2 [the request's final reply, the trailer's
  // reply], or the request's error alone when it never got a final reply
  // from a node. A redirect or a retry sends both again; a trailer of an
  // earlier attempt is dropped. The requests of one loop turn on one
  // connection share one trailer, sent after the last of them (as the
  // one-Redis write batch shares one WAIT).
  void dispatchFollowed(const Plan& plan, std::string_view bytes, std::string_view trailer,
                        const std::shared_ptr<redis::ReplySink>& sink, std::uint64_t tag,
                        redis::As as);
  // Requests every node's shared connection sends first on each (re)connect
  // (BackendConnection::setPreload): the cache layer's scripts. Before start().
  void setPreload(std::vector<std::string> requests);
  // Client traffic on every connection runs as `identity` (the restricted
  // redis.client_acl_user; client_identity.hpp), requests `as` Larder as the
  // configured user: no client script reaches a reserved key on any node.
  // Before start().
  void setClientIdentity(std::shared_ptr<const redis::ClientIdentity> identity);
  bool saturated() const;
  // Any thread: every slot has an owner whose connection is up.
  bool ready() const { return ready_.load(std::memory_order_relaxed); }
  int slotsKnown() const { return slots_known_.load(std::memory_order_relaxed); }
  const ClusterStats& clusterStats() const { return cluster_stats_; }

  // ------------------------------------------- dedicated connections (pins)
  boost::asio::any_io_executor executor() const { return executor_; }
  // How long a request waits for a shard to be served again.
  std::chrono::milliseconds retryTimeout() const { return config_.cluster.retry_timeout; }
  int ownerOf(int slot) const { return map_.owner(slot); }
  // `node`'s shared connection is up: a dedicated connection made now would connect.
  bool nodeUp(int node) const;
  const config::Endpoint& addressOf(int node) const {
    return links_[static_cast<std::size_t>(node)]->address;
  }
  // `request` on the out-of-band connection of the node at `address` (CLIENT
  // UNBLOCK of a client blocked there); its reply goes to sink->deliver(tag).
  void sendOutOfBand(const config::Endpoint& address, std::string_view request,
                     const std::shared_ptr<redis::ReplySink>& sink, std::uint64_t tag);
  // The out-of-band connection of the node at `address` (made when new):
  // for questions about the node itself (the persistence audit).
  std::shared_ptr<redis::BackendConnection> outOfBandTo(const config::Endpoint& address);
  // The primaries of the current map, each once (empty: no map yet).
  std::vector<config::Endpoint> primaryAddresses() const;
  // Where keyless requests go: the owner of the lowest slot with one; -1 none.
  int anyNode() const;
  // A ready idle connection to `node` or a new one; null when no such node.
  std::shared_ptr<redis::BackendConnection> acquireDedicated(int node);
  void releaseDedicated(int node, std::shared_ptr<redis::BackendConnection> c, bool clean);
  // A redirect seen on a dedicated connection to `node`: MOVED patches the
  // map and asks for a refresh, as on the shared path.
  void learn(const Redirect& r, int node);
  // The link of `address`, made (and its connection started) when new.
  int nodeAt(const config::Endpoint& address);
  // The node a MOVED or ASK from `from` points to (a redirect without a host
  // means the host of the node that sent it).
  int redirectTarget(const Redirect& r, int from);

 private:
  static constexpr std::uint32_t kNoGather = 0xFFFFFFFF;

  struct Link {
    config::Endpoint address;
    std::unique_ptr<config::RedisConfig> config;            // its connections keep a reference
    std::shared_ptr<redis::BackendConnection> shared;       // null: retired (not in the cluster)
    std::shared_ptr<redis::BackendConnection> out_of_band;  // made on first use
    std::string busy;      // Redis' -BUSY reply while a script keeps the node busy
    bool probing = false;  // a PING asks whether it is
    std::vector<std::shared_ptr<redis::BackendConnection>> idle;  // dedicated, ready for a pin
    std::vector<int> replicas;  // usable replicas, when this node is a primary
  };
  struct Exchange {
    std::string request;
    std::string trailer;  // dispatchFollowed: sent right after the request
    std::string held;     // ... and the request's final reply, until the trailer's comes
    std::shared_ptr<redis::ReplySink> sink;  // null for a part of a Gather
    std::uint64_t tag = 0;
    std::string last_error;  // what a retry that runs out of time answers
    std::chrono::steady_clock::time_point deadline{};
    std::chrono::milliseconds backoff{0};
    std::uint32_t gather = kNoGather;
    std::uint32_t part = 0;
    int slot = 0;               // sent to this slot's owner (keyless: it only picks a node)
    int ask = -1;               // ASK: the node it goes to next, once, after ASKING
    int node = -1;              // where it went last
    std::uint32_t attempt = 0;  // sends with a trailer, never reset: names the latest send
    bool holding = false;       // `held` waits for the trailer's reply
    std::uint8_t redirects = 0;
    bool keyed = false;
    bool readonly = false;
    bool retrying = false;
    bool scan = false;
    bool out_of_band = false;
    bool script = false;
    bool in_use = false;
    redis::As as = redis::As::Client;
  };
  struct Gather {
    std::shared_ptr<redis::ReplySink> sink;
    std::uint64_t tag = 0;
    Merge merge = Merge::None;
    std::size_t remaining = 0;
    std::size_t keys = 0;
    std::vector<std::string> replies;
    std::vector<std::vector<std::uint32_t>> positions;
  };
  // Connections report to the router through this; the worker stops every
  // connection before the router goes.
  class Sink : public redis::ReplySink {
   public:
    explicit Sink(Router& router) : router_(router) {}
    void deliver(std::uint64_t tag, std::string_view frame) override {
      router_.onReply(tag, frame);
    }
    void fail(std::uint64_t tag, const redis::BackendFailure& failure) override {
      router_.onFailure(tag, failure);
    }

   private:
    Router& router_;
  };

  // router.cpp: requests
  std::uint32_t allocExchange();
  // The single exchange of a keyed or keyless plan, not sent yet.
  std::uint32_t singleExchange(const Plan& plan, std::string_view bytes,
                               const std::shared_ptr<redis::ReplySink>& sink, std::uint64_t tag);
  // The request's final reply `frame`: true when it waits for the trailer.
  bool holdForTrailer(std::uint32_t id, std::string_view frame);
  // Exchange `id`'s request (send `attempt`) went out on `c`: its trailer
  // joins the turn's one for that connection.
  void joinTrailer(const std::shared_ptr<redis::BackendConnection>& c, std::uint32_t id,
                   std::uint32_t attempt);
  // End of the turn: each connection's trailer, once.
  void sendTrailers();
  void onTrailer(std::uint64_t tag, std::string_view frame);
  void freeExchange(std::uint32_t id);
  void send(std::uint32_t id);
  void onReply(std::uint64_t tag, std::string_view frame);
  void onFailure(std::uint64_t tag, const redis::BackendFailure& failure);
  void finish(std::uint32_t id, std::string_view frame);
  void retryLater(std::uint32_t id, std::string error);
  void armRetryTimer();
  void resendParked(bool all);
  void deliverGather(std::uint32_t gather);
  void dispatchScan(std::span<const std::string_view> args,
                    const std::shared_ptr<redis::ReplySink>& sink, std::uint64_t tag);
  std::string scanFinal(const Exchange& x, std::string_view frame) const;
  int replicaFor(int primary);

  // router_scripts.cpp: busy scripts
  static constexpr std::uint64_t kProbeTag = (std::uint64_t{1} << 63) | (std::uint64_t{1} << 61);
  static constexpr std::chrono::milliseconds kProbeAfter{20};
  struct Watched {
    std::uint32_t id;
    int node;
    const void* client;  // the session that sent it: its own requests wait, as in Redis
    std::chrono::steady_clock::time_point since;
  };
  const void* clientOf(const Exchange& x) const;
  void scriptSent(std::uint32_t id, int node);
  void scriptAnswered(std::uint32_t id);
  // Redis' -BUSY reply for `x` on `node`, "" when it may be sent there.
  std::string_view stuck(const Exchange& x, int node) const;
  void armScriptProbe();
  void probeScripts();
  void onProbe(int node, std::string_view frame);

  // router_topology.cpp: links, maps, refresh
  void adopt(const Topology& t);
  void requestRefresh();
  void startVote();
  void askNext();
  void onVoteAnswer(std::uint64_t serial, std::optional<Topology> t);
  void housekeeping();
  void updateReady();
  std::vector<std::string> preloadFor(redis::ConnectionKind kind) const;
  std::shared_ptr<redis::BackendConnection> makeConnection(Link& link, redis::ConnectionKind kind);
  redis::BackendConnection& outOfBand(Link& link);
  // Stops every connection of `link` (in-flight requests fail).
  static void stopLink(Link& link);

  boost::asio::any_io_executor executor_;
  const config::RedisConfig& config_;
  proxy::WorkerStats& stats_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  std::shared_ptr<redis::ReplySink> sink_;
  std::vector<std::unique_ptr<Link>> links_;
  SlotMap map_;
  std::deque<Exchange> exchanges_;  // stable references; reused through free_
  std::vector<std::uint32_t> free_;
  std::size_t live_ = 0;  // exchanges in use
  std::deque<Gather> gathers_;
  std::vector<std::uint32_t> free_gathers_;
  struct Parked {
    std::chrono::steady_clock::time_point due;
    std::uint32_t id;
  };
  std::vector<Parked> parked_;
  boost::asio::steady_timer retry_timer_;
  bool retry_armed_ = false;
  std::vector<Watched> scripts_;  // script calls in flight on shared connections
  // dispatchFollowed's trailers: this turn's, one per connection and
  // trailer, then sent, named by their index in the reply's tag.
  struct TrailerGroup {
    std::shared_ptr<redis::BackendConnection> connection;  // until sent
    std::string trailer;
    redis::As as = redis::As::Larder;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> members;  // exchange, attempt
    bool in_use = false;
  };
  std::vector<TrailerGroup> trailing_;
  std::deque<TrailerGroup> trailer_groups_;
  std::vector<std::uint32_t> free_trailer_groups_;
  bool trailers_scheduled_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // posted handlers check it
  boost::asio::steady_timer script_timer_;
  bool script_armed_ = false;
  boost::asio::steady_timer tick_;

  // Topology refresh: one vote at a time.
  std::unique_ptr<TopologyVote> vote_;
  config::Endpoint voter_;  // the node asked last
  std::uint64_t vote_serial_ = 0;
  std::chrono::steady_clock::time_point vote_started_{};
  std::chrono::steady_clock::time_point last_refresh_{};
  bool refresh_wanted_ = false;
  int vote_failures_ = 0;
  std::size_t rr_ = 0;  // replica round robin
  int worker_;
  bool started_ = false;

  ClusterStats cluster_stats_;
  std::atomic<bool> ready_{false};
  std::atomic<int> slots_known_{0};
  bool stopping_ = false;
  std::vector<std::string> preload_;
  std::shared_ptr<const redis::ClientIdentity> identity_;
};

}  // namespace larder::cluster
