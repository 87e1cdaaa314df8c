#pragma once
// One client connection's I/O shell: a coroutine that reads and parses
// requests, hands each to the pipeline (proxy/pipeline.hpp, where every
// decision is made), and writes the pipeline's output back. It is also the
// pipeline's ports: backend connections, the read-through side and the
// worker's server-wide services.
//
//   socket --read--> in_ --RequestParser--> pipeline_.begin/step()
//        Barrier: wait until every outstanding reply is in; Saturated: until
//        the backend connection has room; Continue: next request
//   backend deliver(tag, frame) --> pipeline_.complete() --> output --write--> socket
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <string>

#include "larder/cluster/cluster_backend.hpp"
#include "larder/common/byte_buffer.hpp"
#include "larder/proxy/pipeline.hpp"
#include "larder/redis/backend_connection.hpp"
#include "larder/resp/request_parser.hpp"
#include "larder/server/client_stream.hpp"

namespace larder::server {

class Worker;

class Session : public redis::ReplySink,
                public std::enable_shared_from_this<Session>,
                private proxy::BackendPort,
                private proxy::ReadThroughPort,
                private proxy::AdminPort,
                private proxy::ClientPort {
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

  // Replies from backend connections (and from Larder's own services, posted
  // onto the worker's thread).
  void deliver(std::uint64_t tag, std::string_view frame) override;
  void fail(std::uint64_t tag, const redis::BackendFailure& failure) override;
  void backendClosed() override;

  std::uint64_t id() const { return id_; }
  std::chrono::steady_clock::time_point lastActive() const { return last_active_; }
  bool exemptFromIdleTimeout() const { return pipeline_.blocked(); }
  // The flush scheduleFlush() asked the worker for, at the end of the loop turn.
  void flushDeferred();
  // After a reload: a client whose user was removed or disabled is closed, as
  // Redis' ACL DELUSER does. Worker sweep, once a second.
  void recheckUser();

  // CLIENT LIST / KILL from any session (server/client_directory.cpp), on
  // this session's worker thread.
  bool matches(const proxy::ClientFilter& filter) const;
  std::string clientInfoLine() const { return pipeline_.clientInfoLine(); }
  // MONITOR: another client's command line, on this session's worker thread.
  void monitorLine(std::string_view line);
  // CLIENT UNBLOCK: the Redis id of the dedicated connection held, or 0.
  std::uint64_t pinnedRedisId() const;
  proxy::PinnedConnection pinnedConnection() const;  // CLIENT UNBLOCK
  // CLIENT TRACKING REDIRECT to this client: the Redis id of the dedicated
  // connection it now keeps (Pipeline::becomeRedirectTarget), or 0.
  std::uint64_t redirectTargetId();
  void closeOverOutputLimit();

 private:
  boost::asio::awaitable<void> run();
  // TLS only: the server handshake within tls.handshake_timeout; false: close.
  boost::asio::awaitable<bool> handshake();
  boost::asio::awaitable<void> waitOutstanding(std::size_t at_most);
  boost::asio::awaitable<void> waitBackendCapacity();
  boost::asio::awaitable<void> waitPause();
  // Reads whatever else the socket holds; true when the client has gone.
  bool clientGone();
  // After the pipeline answered something: output limit, flush, end.
  void afterPipeline();
  void scheduleFlush();
  void flush();
  void afterWrite();
  void closeWhenFlushed();
  void wakeReader();
  // The parser's limits follow authentication (Redis' pre-AUTH limits).
  void updateParserLimits();

  // proxy::BackendPort
  void send(proxy::Conn conn, std::string_view request, std::uint64_t tag) override;
  void sendOnStream(std::string_view request) override;
  bool saturated(proxy::Conn conn) const override;
  bool pin() override;
  void setStream(proxy::Stream mode) override;
  void unpin(bool clean) override;
  bool pinLost() const override;
  void watchScript(std::uint64_t tag) override;
  std::string_view redisBusy() const override;
  // proxy::ReadThroughPort
  void read(proxy::Conn conn, commands::ReadKind kind, const std::vector<std::string_view>& args,
            std::vector<proxy::MappedKey> keys, std::uint64_t tag) override;
  const std::string* nearValue(const cache::Keyspace& ks, std::string_view key) override;
  void write(proxy::Conn conn, cache::WritePlan plan, std::uint64_t tag) override;
  bool writeMayReorder(const cache::WritePlan& plan) const override;
  // proxy::AdminPort
  const config::Config& config() const override;
  const cache::KeyspaceRegistry& keyspaces() const override;
  proxy::WorkerStats& stats() override;
  proxy::InfoFields infoFields(std::string_view section) const override;
  bool writesCommand(std::vector<std::string> args, std::uint64_t tag) override;
  bool invalidateCommand(std::vector<std::string> args, std::uint64_t tag) override;
  bool flushAll(bool all, std::uint64_t tag) override;
  void reload(std::uint64_t tag) override;
  const std::atomic<int>& monitors() const override;
  void feedMonitors(std::string line) override;
  proxy::PauseState& pause() override;
  void clientList(proxy::ClientFilter filter, std::string own, std::uint64_t tag) override;
  void clientKill(proxy::ClientFilter filter, bool self, bool old_form, std::uint64_t tag) override;
  void clientUnblock(std::uint64_t id, bool error, std::uint64_t tag) override;
  void clientRedirect(std::uint64_t id, std::uint64_t tag) override;
  // proxy::ClientPort
  proxy::ConnectionFacts facts() const override;
  std::string_view peerAddress() const override { return peer_; }
  void monitor(bool on) override;

  redis::BackendConnection& connection(proxy::Conn conn) const;
  proxy::BackendPort& backendPort();
  // Completes `tag` later, from any thread, on the worker's.
  std::function<void(std::string)> replyLater(std::uint64_t tag);
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
  std::chrono::steady_clock::time_point read_at_;    // when the buffered requests were read
  const commands::Command* last_command_ = nullptr;  // the last non-container command
  bool parser_authenticated_ = false;

  // Cluster mode: the pipeline's backend port instead of this session's own
  // (declared before pipeline_, which is given a reference to it).
  std::unique_ptr<cluster::ClusterBackend> cluster_;
  proxy::Pipeline pipeline_;
  std::string writing_;
  bool write_active_ = false;
  bool flush_scheduled_ = false;

  // Waiting for replies to drain (backpressure or a barrier).
  boost::asio::steady_timer wake_;
  std::size_t wake_at_ = 0;
  bool waiting_ = false;

  redis::BackendConnection* shared_ = nullptr;
  std::shared_ptr<redis::BackendConnection> pinned_;
  // Tags of script calls in flight on the shared connection, oldest first
  // (server/script_watch.hpp).
  std::deque<std::uint64_t> scripts_;
  bool monitoring_ = false;

  bool reading_stopped_ = false;
  bool draining_ = false;  // server shutdown: finish what was sent, then close
  bool close_when_flushed_ = false;
  bool closed_ = false;
};

}  // namespace larder::server
