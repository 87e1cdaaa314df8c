#pragma once
// A client's dedicated connection when the backend is a cluster (MULTI/EXEC,
// WATCH, blocking commands, pub/sub). It binds to one node, chosen by the
// first key it carries, and takes its connection from that node's pool in
// the router: never one new TCP connection per transaction.
//
//   WATCH k / BLPOP k / SSUBSCRIBE ch -> bound to the owner of k's (ch's) slot
//   MULTI (no key yet)                -> bound to any node, provisionally; the
//        first keyed command moves it: MULTI and the keyless commands queued
//        so far are replayed on the key's node (replies dropped), the first
//        node's transaction is discarded
//   in a transaction, a key of another node  -> sent anyway: the node answers
//        -MOVED, which the client sees as CROSSSLOT (and EXEC as EXECABORT),
//        as Redis Cluster would refuse a cross-slot transaction
//   outside a transaction, a key of another node -> not here: the shared path
//   a lone request (a blocking call) answered -MOVED/-ASK -> resent on the
//        right node's connection
//   a new connection that cannot connect (the shard's primary is down and
//        not yet replaced): what was sent on it was never written, so it is
//        kept and sent again on a connection to the slot's owner once that
//        node is up (a promoted replica), until retry_timeout, as the shared
//        path waits; then the client gets the error
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "larder/cluster/request_plan.hpp"
#include "larder/cluster/router.hpp"
#include "larder/proxy/ports.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::cluster {

class ClusterPin : public std::enable_shared_from_this<ClusterPin> {
 public:
  ClusterPin(Router& router, std::weak_ptr<redis::ReplySink> session);
  ~ClusterPin();

  enum class Outcome { Sent, Shared, Refused };
  // A request the pipeline sends on its dedicated connection. Shared: it
  // belongs on the shared path (a key of another node outside a
  // transaction); Refused: no node to bind to (no map yet).
  // `blocking`: the registry routes it as a blocking call (BLPOP, XREAD BLOCK, WAIT).
  Outcome send(const Plan& plan, const commands::Command* command, bool blocking,
               std::string_view bytes, std::uint64_t tag);
  // Between MULTI and EXEC/DISCARD as far as the pin has seen.
  bool inTransaction() const { return in_multi_; }
  Outcome sendOnStream(const Plan& plan, std::string_view bytes);
  void setStream(proxy::Stream mode);
  bool saturated() const;
  bool lost() const;
  // CLIENT UNBLOCK: the Redis id of the connection and its node.
  proxy::PinnedConnection pinnedConnection() const;
  // Gives the connection back to its node's pool (clean) or closes it.
  void release(bool clean);

  // From the connection's replies (PinSink): true when a redirect of the
  // lone request `tag` was followed here and the client sees nothing yet.
  bool followed(std::uint64_t tag, const Redirect& r);

 private:
  class PinSink;
  class StandInSink;

  // From a connection's sink: a reply came, so it is connected.
  void connected(const PinSink* from);
  // From a connection's sink: `tag` was never written (it could not
  // connect). True when the pin keeps it to send again.
  bool holdUnwritten(const PinSink* from, std::uint64_t tag, const redis::BackendFailure& failure);
  // Waiting for the shard's node: the connection's closing is not the client's news.
  bool waiting() const { return waiting_; }

  bool bind(int node);
  // Makes `conn` (to `node`) the pin's connection: owner, stream mode, counts.
  void take(std::shared_ptr<redis::BackendConnection> conn, int node);
  // Leaves the current connection for one to `node`. The connection left
  // keeps delivering what it still owes (replies find their client by tag)
  // and goes back to its pool with the pin; one per node, reused if the pin
  // comes back to that node.
  bool switchTo(int node);
  // A provisional MULTI follows its first key to `node`.
  void moveTo(int node);
  void track(const commands::Command* command);
  // Kept requests: wait for the slot's owner, then send them again there.
  bool keepUnwritten(std::uint64_t tag, std::string_view bytes,
                     std::shared_ptr<redis::ReplySink> sink = nullptr);
  void dropUnwritten();
  void armWait();
  void retryUnwritten();
  // The wait ran out (or the kept requests outgrew their bound): they get the error.
  void giveUp();
  // The node the client's MULTI went to answered it (a null `failure`: with
  // `frame`). True when the answer is not the client's (a stand-in's is).
  bool firstMulti(std::string_view frame, const redis::BackendFailure* failure);
  // The MULTI that rebuilt a moved transaction was answered.
  void standIn(std::string_view frame, const redis::BackendFailure* failure);
  void answerWithStandIn();

  Router& router_;
  std::weak_ptr<redis::ReplySink> session_;
  std::shared_ptr<PinSink> sink_;
  std::shared_ptr<redis::BackendConnection> conn_;
  int node_ = -1;
  bool provisional_ = false;         // bound by a keyless MULTI: the first key may move it
  bool in_multi_ = false;            // MULTI sent, EXEC/DISCARD not yet
  bool watching_ = false;            // WATCH sent, not ended
  bool stream_ = false;              // replies or pushes go to the stream sink
  bool pushes_only_ = false;         // RESP3: only pushes; replies still answer requests
  std::vector<std::string> replay_;  // keyless requests queued in a provisional MULTI
  // Connections the pin moved away from (switchTo).
  std::vector<std::pair<int, std::shared_ptr<redis::BackendConnection>>> left_;
  std::size_t replay_bytes_ = 0;
  // The last request, kept while it may be resent elsewhere (no state on the
  // connection, nothing else sent on it).
  std::uint64_t last_tag_ = 0;
  std::string last_request_;
  bool last_resendable_ = false;
  std::size_t sends_ = 0;  // on this connection since it was bound
  int redirects_ = 0;

  // Requests sent on a connection not yet known to be connected, kept (up to
  // kMaxReplay, kMaxReplayBytes) until its first reply.
  struct Unwritten {
    std::uint64_t tag;
    std::string bytes;
    // Null: the client's request; else where the reply goes (a MULTI rebuilt).
    std::shared_ptr<redis::ReplySink> sink;
  };
  std::vector<Unwritten> unwritten_;
  std::size_t unwritten_bytes_ = 0;
  bool keep_unwritten_ = false;
  bool waiting_ = false;  // the connection could not connect: waiting for the node
  int wait_slot_ = -1;    // the slot whose owner the kept requests go to; -1 any node
  std::chrono::steady_clock::time_point wait_deadline_{};
  std::string wait_detail_;  // the connection error the kept requests get at the deadline
  std::unique_ptr<boost::asio::steady_timer> wait_timer_;

  // The client's MULTI and, once a provisional MULTI moved, who answers it:
  // the first node, or, should that one fail it, the MULTI that rebuilt the
  // transaction on the key's node (a client must not see MULTI fail and EXEC run).
  enum class First : std::uint8_t { None, Pending, Ok, Failed };
  std::uint64_t multi_tag_ = 0;
  bool multi_open_ = false;  // the client's MULTI has no answer yet
  First first_ = First::None;
  bool standin_arrived_ = false;
  bool standin_failed_ = false;
  redis::BackendFailure::Kind standin_kind_ = redis::BackendFailure::Kind::Unavailable;
  std::string standin_;  // its reply, or the failure's detail
};

}  // namespace larder::cluster
