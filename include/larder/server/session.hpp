#pragma once
// One client connection: a coroutine that reads requests, routes each one, and
// writes replies back strictly in request order.
//
//   socket --read--> in_ --RequestParser--> route()
//        forward: reserve a ReplyQueue slot, send on the backend connection
//        local:   reserve a slot and complete it at once
//   backend deliver(tag, frame) --> ReplyQueue --in order--> out_ --write--> socket
//
// Ordering across backend connections: a session sends on one connection at a
// time. Before it moves (shared -> pinned for MULTI/pub-sub/blocking, or back),
// it waits until every outstanding reply has arrived, so Redis executes the
// client's commands in the order they were sent.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "larder/commands/keys.hpp"
#include "larder/commands/registry.hpp"
#include "larder/common/byte_buffer.hpp"
#include "larder/redis/backend_connection.hpp"
#include "larder/resp/request_parser.hpp"
#include "larder/resp/resp3.hpp"
#include "larder/server/client_stream.hpp"
#include "larder/server/reply_queue.hpp"

namespace larder::server {

class Worker;

class Session : public redis::ReplySink, public std::enable_shared_from_this<Session> {
 public:
  // `tls` null: a plain client; else the TLS listener's context.
  Session(Worker& worker, boost::asio::ip::tcp::socket socket,
          std::shared_ptr<boost::asio::ssl::context> tls, std::uint64_t id);
  ~Session() override;

  void start();
  // Graceful stop: read nothing more, close once in-flight replies are written.
  void shutdown();
  // Closes now (idle timeout, output limit, server stop).
  void close();

  void deliver(std::uint64_t tag, std::string_view frame) override;
  void backendClosed() override;

  std::uint64_t id() const { return id_; }
  std::chrono::steady_clock::time_point lastActive() const { return last_active_; }
  bool exemptFromIdleTimeout() const;
  // After a reload: a client whose user was removed or disabled is closed, as
  // Redis' ACL DELUSER does (acl_session.cpp). Worker sweep, once a second.
  void recheckUser();

 private:
  // Barrier: wait for every outstanding reply. Saturated: the backend
  // connection has too much in flight; wait until it drains.
  enum class Flow { Continue, Barrier, Saturated, Stop };

  boost::asio::awaitable<void> run();
  // TLS only: the server handshake within tls.handshake_timeout; false: close.
  boost::asio::awaitable<bool> handshake();
  boost::asio::awaitable<void> waitOutstanding(std::size_t at_most);
  boost::asio::awaitable<void> waitBackendCapacity();
  // Reads whatever else the socket holds; true when the client has gone.
  bool clientGone();
  // `cmd` is the request's registry row (null: unknown to Redis 7.0).
  Flow route(const resp::Request& req, const commands::Resolved& cmd);
  Flow routeLocal(const resp::Request& req, commands::LocalCommand command);
  Flow forward(const resp::Request& req, redis::BackendConnection& connection);
  // To the pinned connection while its state lasts, else the shared one.
  Flow forwardCurrent(const resp::Request& req);
  // The connection forwardCurrent would use, or nullptr when a barrier is due.
  redis::BackendConnection* currentConnection();
  // Commands on keys of a mapped keyspace (mapped_commands.cpp). Returns false
  // when no key is mapped and the command goes on as usual.
  bool routeMapped(const resp::Request& req, const commands::Command& command, Flow& flow);
  // True when a key argument lies under Larder's reserved prefix "__larder:".
  bool touchesReservedKey(const resp::Request& req, const commands::Command& command);
  // Inside MULTI: the error for a command that must not reach a mapped or
  // reserved key (queued in Redis it would bypass Larder), or "".
  std::string refusalInTransaction(const resp::Request& req, const commands::Command& command);
  bool needsBarrierToPin() const { return !pinned_ && !queue_.empty(); }
  // false (and an error reply) when no dedicated connection can be had.
  bool pin(bool stream);
  bool releasable() const;
  void sendOnStream(const resp::Request& req);  // pub/sub: untracked, in order
  void dropPin();  // closes the dedicated connection (its state goes with it)
  // Also switches the parser to Redis' pre-AUTH limits and back.
  void setAuthenticated(bool authenticated);
  Flow syncStream();
  void onStreamSync(std::string_view frame);
  void releasePin();

  // ACL users (acl_session.cpp).
  // The connection's state before AUTH: the default user when it needs no
  // password, else not authenticated.
  void resetUser();
  void authenticateAs(const config::UserConfig& user);
  // The session's user in the config now in force; false when it is gone or disabled.
  bool refreshUser();
  // "" when the session's user may run `req`, else the NOPERM error text.
  std::string aclDenial(const resp::Request& req, const commands::Resolved& cmd);
  bool restricted() const { return user_ && !user_->permissions.unrestricted(); }
  Flow acl(const resp::Request& req);

  // Local commands (local_commands.cpp).
  Flow hello(const resp::Request& req);
  Flow auth(const resp::Request& req);
  Flow select(const resp::Request& req);
  // INFO and LARDER RELOAD|STATS|LOGLEVEL (admin_commands.cpp).
  struct InfoRequest {
    std::vector<std::string> overlays;  // Larder's sections laid over the backend's
    bool larder = false;                // "# Larder" appended
  };
  Flow info(const resp::Request& req);
  std::string mergeInfo(const InfoRequest& request, std::string_view backend_frame) const;
  Flow larderAdmin(const resp::Request& req, const std::string& sub);
  Flow larder(const resp::Request& req);    // write_commands.cpp
  Flow flushAll(const resp::Request& req);  // write_commands.cpp
  // A write to mapped keys (write_commands.cpp).
  Flow routeWrite(const resp::Request& req, const commands::Command& command,
                  const std::vector<std::size_t>& keys);
  // Answers the reserved slot `tag` later, from any thread via the worker.
  std::function<void(std::string)> replyLater(std::uint64_t tag);
  Flow client(const resp::Request& req);
  Flow reset(const resp::Request& req);
  std::string clientInfoLine();  // non-const: asio's native_handle() is

  void observe(std::uint64_t tag);  // the latency of the request slot `tag` answers
  // The reply for slot `tag` in the protocol its request was made under (RESP3).
  std::string_view clientForm(std::uint64_t tag, std::string_view bytes);
  void setProtocol(bool resp3);        // HELLO 2|3, RESET; before the reply is reserved
  void reply(std::string_view bytes);  // a locally answered command, in order
  void replyError(std::string_view text);
  bool answerNear(const resp::Request& req, const commands::Command& command);
  void protocolError(const std::string& message);
  void emit(std::string_view bytes);  // bytes in order, straight to out_
  void scheduleFlush();
  void flush();
  void afterWrite();
  void closeWhenFlushed();
  void wakeReader();
  std::shared_ptr<ReplySink> self() { return shared_from_this(); }

  Worker& worker_;
  ClientStream socket_;  // plain TCP or TLS
  std::uint64_t id_;
  std::string peer_;
  std::chrono::steady_clock::time_point created_;
  std::chrono::steady_clock::time_point last_active_;

  ByteBuffer in_;
  resp::RequestParser parser_;
  resp::Request request_;
  std::string scratch_;                       // re-encoded inline requests
  std::vector<std::string_view> key_values_;  // scratch for keyspace matching
  std::vector<commands::KeyRef> keys_;        // scratch: the request's keys

  ReplyQueue queue_;
  std::string out_;
  std::string writing_;
  bool write_active_ = false;
  bool flush_scheduled_ = false;
  std::unordered_map<std::uint64_t, InfoRequest> info_merges_;   // tag -> what INFO asked
  std::unordered_map<std::uint64_t, std::string> replacements_;  // tag -> reply to send instead
  bool resp3_ = false;            // HELLO 3: replies are translated (resp/resp3.hpp)
  resp::ReplyForms reply_forms_;  // the protocol and shape each outstanding slot takes

  // Waiting for replies to drain (backpressure or a barrier).
  boost::asio::steady_timer wake_;
  std::size_t wake_at_ = 0;
  bool waiting_ = false;

  redis::BackendConnection* shared_ = nullptr;
  std::shared_ptr<redis::BackendConnection> pinned_;
  bool stream_ = false;  // pinned in pub/sub: frames flow straight through
  bool in_multi_ = false;
  bool multi_aborted_ = false;  // a queued command was refused: EXEC discards
  bool watching_ = false;
  bool sticky_ = false;  // CLIENT TRACKING and friends: pinned until RESET
  // Leaving pub/sub: a PING token sent on the stream, answered in order.
  enum class StreamSync { None, Subscribed, Ended };
  StreamSync sync_ = StreamSync::None;
  std::uint64_t sync_tag_ = 0;  // slot held until the token comes back
  std::string sync_token_;
  std::uint64_t sync_count_ = 0;
  bool dirty_stream_ = false;  // a RESET went through the stream connection
  bool quitting_ = false;      // QUIT sent on the stream; Redis closes it
  long long db_ = 0;

  bool authenticated_ = false;
  // The authenticated user, in the config generation user_config_ (kept for
  // the life of the process, so the pointer stays valid). nullptr: not
  // authenticated, or a config without users (everything allowed).
  const config::UserConfig* user_ = nullptr;
  const config::Config* user_config_ = nullptr;
  std::string name_;
  std::string lib_name_;
  std::string lib_ver_;
  std::string last_command_;

  bool hold_ = false;  // a mapped write may be retried: send nothing until it is answered
  // One past the tag of the last mapped read: a mapped write waits for such
  // reads to be answered (a miss answered after the write ran would see it).
  std::uint64_t mapped_read_end_ = 0;
  bool reading_stopped_ = false;
  bool draining_ = false;  // server shutdown: finish what was sent, then close
  bool close_when_flushed_ = false;
  bool closed_ = false;
};

}  // namespace larder::server
