#pragma once
// A client's request pipeline, without sockets: it decides what each request
// does, keeps the replies in request order, and holds the client's state.
// The I/O shell (server/session.cpp) reads and parses, calls step() for each
// request and writes output(); backend replies come back through complete().
//
//   request --begin()--> stamp, RESP3 form
//           --step()---> gates: unknown/arity, NOAUTH, ACL, MULTI, pub/sub
//                        refusals: reserved keys, mapped keys, guards
//                        route:    local reply | forward(Conn) | mapped read/write
//                        -> Continue | Barrier | Saturated | Stop
//   port completions --complete(tag, frame)--> ReplyQueue --in order--> output()
//
// Order: a request sent on one connection may not overtake one sent on the
// other, so moving between the shared and the pinned connection waits until
// every outstanding reply is in (Barrier). State Redis decides (SELECT,
// MULTI, WATCH, EXEC, CLIENT TRACKING) changes when its reply arrives; while
// such a reply is outstanding, a request whose handling depends on that state
// waits for it (Barrier), and only plain pass-through requests on the pinned
// connection, whose handling is the same either way, go ahead.
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "larder/commands/keys.hpp"
#include "larder/commands/registry.hpp"
#include "larder/proxy/client_state.hpp"
#include "larder/proxy/ports.hpp"
#include "larder/proxy/reply_queue.hpp"
#include "larder/redis/backend_connection.hpp"
#include "larder/resp/request_parser.hpp"
#include "larder/resp/resp3.hpp"

namespace larder::proxy {

class Pipeline {
 public:
  // Barrier: call step() again once outstanding() == 0. Saturated: again once
  // the backend connection has room. Paused: again after pauseLeft() (CLIENT
  // PAUSE; or sooner, UNPAUSE may end it). Stop: read nothing more.
  enum class Flow { Continue, Barrier, Saturated, Paused, Stop };
  // How the connection should end. AfterBackend: read nothing more and wait
  // for the pinned connection to close (QUIT while subscribed: Redis answers
  // +OK on the stream and closes); then AfterReplies.
  enum class End { None, AfterBackend, AfterReplies, Now };

  Pipeline(Ports ports, std::uint64_t id);

  // Once per request, before its first step(): per-command stats (latency
  // from `read_at`, when the request's bytes were read), RESP3 form.
  void begin(const resp::Request& req, const commands::Resolved& cmd,
             std::chrono::steady_clock::time_point read_at);
  Flow step(const resp::Request& req, const commands::Resolved& cmd);

  // ------------------------------------------------------------ replies
  void complete(std::uint64_t tag, std::string_view frame);
  void fail(std::uint64_t tag, const redis::BackendFailure& failure);
  // A frame of the pinned connection in stream mode (pub/sub).
  void streamFrame(std::string_view frame);
  // The pinned connection closed: its state (MULTI, db, subscriptions) is gone.
  void pinClosed();
  // A request the parser refused: answered, then the connection ends.
  void protocolError(std::string_view message);
  // MONITOR: another client's command, for this (monitoring) client.
  void monitorLine(std::string_view line);

  // Bytes ready for the client, in order; the shell takes them.
  std::string& output() { return out_; }
  std::size_t outstanding() const { return queue_.outstanding(); }
  std::size_t heldBytes() const { return queue_.heldBytes(); }
  End end() const { return end_; }
  const ClientState& state() const { return state_; }
  std::uint64_t id() const { return id_; }

  // A reload may have removed or disabled the session's user; false: close.
  bool refreshUser();
  // Subscribed, or waiting in a call on its dedicated connection: as in
  // Redis such a client is not idle, and at shutdown it has nothing to finish.
  bool blocked() const;
  // Another client's CLIENT TRACKING REDIRECTs to this one (tracking.cpp):
  // it takes a dedicated connection now if it has none and keeps it; false
  // when it cannot (requests outstanding, none to be had, ending).
  bool becomeRedirectTarget();
  // CLIENT INFO's line for this client (with its trailing newline).
  std::string clientInfoLine() const;
  // What CLIENT KILL and CLIENT LIST TYPE look at; views into `facts`.
  ClientSummary summary(const ConnectionFacts& facts) const;
  // How long a Paused step should wait at most before trying again.
  std::chrono::steady_clock::duration pauseLeft() const { return pause_left_; }

 private:
  // A state change Redis' reply to `tag` confirms (or not).
  enum class Change : std::uint8_t { Select, Multi, EndMulti, Watch, Unwatch, Sticky };
  struct Unconfirmed {
    std::uint64_t tag;
    Change change;
    long long db;         // Select
    std::string monitor;  // MONITOR: the request's arguments, fed when Redis answers
  };
  // When the request being stepped is shown to monitors: not at all, once it
  // is routed, when Redis' reply confirms it (SELECT shows the new db, EXEC
  // its commands first), or at EXEC (a command queued in MULTI).
  enum class Feed : std::uint8_t { None, Now, AtConfirm, Queued };
  struct InfoRequest {
    std::vector<std::string> overlays;  // Larder's sections laid over the backend's
    bool larder = false;                // "# Larder" appended
  };

  // pipeline.cpp: the gates and the route.
  Flow stepRequest(const resp::Request& req, const commands::Resolved& cmd);
  // CLIENT PAUSE holds this command now (pause_left_ says how long).
  bool paused(const commands::Command* command, commands::LocalCommand local);
  Flow gate(const resp::Request& req, const commands::Resolved& cmd, commands::Route route,
            commands::LocalCommand local, bool& done);
  Flow stepInMulti(const resp::Request& req, const commands::Command* command,
                   commands::LocalCommand local);
  Flow stepStream(const resp::Request& req, const commands::Resolved& cmd, commands::Route route,
                  commands::LocalCommand local);
  Flow route(const resp::Request& req, const commands::Command* command, commands::Route route,
             commands::LocalCommand local);
  Flow outOfBand(const resp::Request& req);
  Flow forward(const resp::Request& req, Conn conn);
  Flow forwardCurrent(const resp::Request& req);
  void sendOnStream(const resp::Request& req);  // pub/sub: untracked, in order
  // Sends and remembers the state change its reply will confirm.
  Flow forwardChanging(const resp::Request& req, Change change, long long db = 0);
  // The connection requests go to now, or nullopt when a barrier is due first.
  std::optional<Conn> currentConnection();
  // The same for reads and writes of mapped keys (never the RESP3 pinned one).
  std::optional<Conn> mappedConnection();
  bool needsBarrierToPin() const { return !state_.pinned && !queue_.empty(); }
  // No keyspaces, an authenticated unrestricted user, the shared connection,
  // nothing pending: step() may forward a plain command at once.
  bool plain() const;
  bool pin(bool stream);
  bool releasable() const;
  void releasePin();
  void dropPin();
  Flow syncStream();
  void onStreamSync(std::string_view frame);
  // RESP3 pub/sub (pubsub_resp3.cpp): SUBSCRIBE and friends on a RESP3
  // pinned connection, every other command as usual on it; the connection
  // is given up once Redis' confirmations say nothing is subscribed.
  Flow subscribeResp3(const resp::Request& req);
  Flow stepPush(const resp::Request& req, commands::Route route, commands::LocalCommand local,
                bool& done);
  // A request of Larder's own on the pinned connection whose reply nobody sees.
  void sendHidden(std::string_view request);
  // The pinned connection switches to RESP3 (HELLO 3, unseen); its pushes
  // stream to the client.
  void speakResp3();
  bool takeHidden(std::uint64_t tag);
  void leavePush();
  // Answers `text` as an error; inside MULTI the transaction is then
  // discarded at EXEC, as Redis does for a command refused while queueing.
  void refuse(std::string_view text);
  // Redis' rejection of EXEC itself (its arity, NOAUTH, NOPERM): the
  // transaction is discarded and the error worded as EXECABORT.
  Flow rejectExec(std::string_view text);

  // tracking.cpp: CLIENT TRACKING and friends on the dedicated connection.
  Flow sticky(const resp::Request& req, const commands::Command& command);
  // The answer to clientRedirect(); false: `tag` is not the lookup's.
  bool lookupAnswered(std::uint64_t tag, std::string_view frame);
  // GETREDIR / TRACKINGINFO (a redirect field) with Redis' id of a client
  // this one redirected to replaced by its Larder id.
  std::string_view larderRedirect(std::string_view frame);
  // A tracking-redir-broken push, the same.
  std::string_view larderPush(std::string_view frame);
  // HELLO of a client whose pinned connection must follow its protocol
  // (tracking pushes, RESP3 pub/sub): `reply` answers once Redis has switched.
  Flow helloPinned(bool resp3, std::string reply);
  // Redis answered the HELLO 2 of helloPinned: frames from now on are RESP2.
  void protocolSwitched(std::uint64_t tag);

  // keyspace_guard.cpp: Larder's reserved keys and mapped keys.
  // "" when the request may run; else why not (an error text).
  std::string guardKeys(const resp::Request& req, const commands::Command& command);
  std::string refusalInTransaction(const resp::Request& req, const commands::Command& command);
  bool touchesReservedKey(const resp::Request& req, const commands::Command& command);
  bool namesMappedKey(const resp::Request& req, const commands::Command& command);
  // Reads and writes of mapped keys; false when no key is mapped.
  bool routeMapped(const resp::Request& req, const commands::Command& command, Flow& flow);
  Flow routeWrite(const resp::Request& req, const commands::Command& command,
                  const std::vector<std::size_t>& keys);
  bool answerNear(const resp::Request& req, const commands::Command& command);

  // acl_checks.cpp: the session's user.
  void resetUser();
  void authenticateAs(const config::UserConfig& user);
  bool restricted() const { return state_.user && !state_.user->permissions.unrestricted(); }
  std::string aclDenial(const resp::Request& req, const commands::Resolved& cmd);
  Flow acl(const resp::Request& req);

  // client_commands.cpp: CLIENT, MONITOR.
  Flow client(const resp::Request& req);
  Flow clientList(const resp::Request& req);
  Flow clientKill(const resp::Request& req);
  Flow clientReply(const resp::Request& req);
  Flow clientUnblock(const resp::Request& req);
  Flow clientPause(const resp::Request& req);
  Flow monitor();
  void clearConnectionState();  // RESET: MONITOR, CLIENT REPLY
  bool subscribed() const;      // pub/sub type for CLIENT LIST and KILL

  // monitor_feed (replies.cpp): this client's commands for the monitors.
  void feedMonitors(std::string_view args_part, long long db);
  void afterStep(Flow flow);

  // local_commands.cpp
  Flow local(const resp::Request& req, commands::LocalCommand command);
  Flow ping(const resp::Request& req);
  Flow hello(const resp::Request& req);
  Flow auth(const resp::Request& req);
  Flow select(const resp::Request& req);
  Flow reset(const resp::Request& req);
  Flow quit();

  // admin_commands.cpp: INFO, LARDER, FLUSHALL.
  Flow info(const resp::Request& req);
  std::string mergeInfo(const InfoRequest& request, std::string_view backend_frame) const;
  Flow larder(const resp::Request& req);
  Flow flushAll(const resp::Request& req);

  // replies.cpp
  void observe(std::uint64_t tag);
  void confirm(std::uint64_t tag, std::string_view frame);
  std::string_view clientForm(std::uint64_t tag, std::string_view bytes);
  void setProtocol(bool resp3);
  void reply(std::string_view bytes);  // a locally answered command, in order
  void replyError(std::string_view text);
  void endAfterReplies() { end_ = end_ == End::Now ? End::Now : End::AfterReplies; }

  Ports ports_;
  std::uint64_t id_;
  // No keyspace at start means none ever: a reload cannot add the first one.
  const bool no_keyspaces_;
  ClientState state_;
  ReplyQueue queue_;
  std::string out_;
  End end_ = End::None;
  std::vector<Unconfirmed> unconfirmed_;
  std::unordered_map<std::uint64_t, InfoRequest> info_merges_;   // tag -> what INFO asked
  std::unordered_map<std::uint64_t, std::string> replacements_;  // tag -> reply to send instead
  resp::ReplyForms reply_forms_;  // the protocol and shape each outstanding slot takes
  std::string scratch_;           // re-encoded inline requests
  std::vector<std::string_view> key_values_;
  std::vector<commands::KeyRef> keys_;

  // Leaving pub/sub: a PING token sent on the stream, answered in order.
  enum class StreamSync { None, Subscribed, Ended };
  StreamSync sync_ = StreamSync::None;
  std::uint64_t sync_tag_ = 0;  // slot held until the token comes back
  std::string sync_token_;
  std::uint64_t sync_count_ = 0;

  bool hold_ = false;  // a mapped write may be retried: send nothing until it is answered
  // One past the tag of the last mapped read: a mapped write waits for such
  // reads to be answered (a miss answered after the write ran would see it).
  std::uint64_t mapped_read_end_ = 0;

  // RESP3 pub/sub: tags answered by the RESP3 pinned connection (their
  // replies are already in RESP3), in send order; tags of Larder's own
  // requests there; a (P|S)SUBSCRIBE family command sent since Redis last
  // confirmed the counts.
  std::deque<std::uint64_t> native_;
  std::vector<std::uint64_t> hidden_;
  bool push_unsynced_ = false;

  // CLIENT TRACKING ... REDIRECT: the lookup of the Larder id in flight or
  // answered (tag 0 and not done: none); the Redis ids this client
  // redirected to, with the Larder ids it named (the last few, oldest
  // first); the tags of GETREDIR and TRACKINGINFO replies to map back.
  struct Lookup {
    std::uint64_t tag = 0;
    long long larder = 0;
    std::uint64_t redis = 0;  // 0: no such client
    bool done = false;
  };
  Lookup lookup_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> redirects_;  // redis id, larder id
  std::vector<std::uint64_t> redirect_replies_;
  std::string rewrite_;
  std::uint64_t protocol_tag_ = 0;  // HELLO 2 sent on a RESP3 pinned connection

  // MONITOR
  const std::atomic<int>& monitors_;  // clients monitoring, server-wide
  PauseState& pause_;                 // CLIENT PAUSE, server-wide
  Feed feed_ = Feed::None;
  std::string feed_args_;                // the current request's quoted arguments
  std::vector<std::string> feed_multi_;  // MULTI: queued commands, fed at EXEC

  const commands::Command* last_command_ = nullptr;  // CLIENT LIST's cmd=
  unsigned multi_queued_ = 0;                        // CLIENT LIST's multi=
  bool multi_writes_ = false;  // a write is queued in MULTI: EXEC waits for CLIENT PAUSE WRITE
  std::chrono::steady_clock::duration pause_left_{};
};

}  // namespace larder::proxy
