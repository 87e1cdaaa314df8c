// The session as its pipeline's ports: backend connections (the worker's
// shared one, a dedicated one from the worker's pool), the read-through side
// (MappedRead, MappedWrite, the near cache) and the worker's services.
// Answers that arrive on another thread are posted back onto the worker's.
#include <boost/asio/post.hpp>

#include "larder/cache/mapped_read.hpp"
#include "larder/cache/mapped_write.hpp"
#include "larder/cache/near_cache.hpp"
#include "larder/common/errors.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/resp/request_parser.hpp"
#include "larder/server/client_directory.hpp"
#include "larder/server/monitor_feed.hpp"
#include "larder/server/session.hpp"
#include "larder/server/worker.hpp"

namespace larder::server {

namespace {

std::string encodeReload(const ReloadResult& r) {
  if (!r.ok) {
    std::string why = r.error;
    std::replace(why.begin(), why.end(), '\r', ' ');
    std::replace(why.begin(), why.end(), '\n', ' ');
    return resp::errorReply(errors::reloadRejected(why));
  }
  std::string out;
  resp::appendArrayHeader(out, 1 + r.applied.size() + r.not_applied.size());
  resp::appendBulk(out, "reloaded " + r.source + ": " + std::to_string(r.applied.size()) +
                            " change(s) applied, " + std::to_string(r.not_applied.size()) +
                            " not applied");
  for (const auto& line : r.applied) resp::appendBulk(out, "applied: " + line);
  for (const auto& line : r.not_applied) resp::appendBulk(out, "not applied: " + line);
  return out;
}

}  // namespace

// ------------------------------------------------------------ BackendPort

redis::BackendConnection& Session::connection(proxy::Conn conn) const {
  switch (conn) {
    case proxy::Conn::Pinned:
      return *pinned_;
    case proxy::Conn::OutOfBand:
      return worker_.outOfBandConnection();
    case proxy::Conn::Shared:
      break;
  }
  return *shared_;
}

void Session::send(proxy::Conn conn, std::string_view request, std::uint64_t tag) {
  if (conn == proxy::Conn::Shared && worker_.scripts().busy()) [[unlikely]] {
    // Behind another client's busy script Redis would not read this request
    // until the script ends; directly it would answer -BUSY at once.
    if (const std::string_view busy = worker_.scripts().stuck(shared_, id_); !busy.empty()) {
      deliver(tag, resp::errorReply(busy));
      return;
    }
  }
  connection(conn).send(request, self(), tag);
}

void Session::sendOnStream(std::string_view request) { pinned_->sendUntracked(request); }

bool Session::saturated(proxy::Conn conn) const { return connection(conn).saturated(); }

bool Session::pin() {
  pinned_ = worker_.acquirePinned();
  if (!pinned_) return false;
  pinned_->setOwner(weak_from_this());
  return true;
}

void Session::setStream(proxy::Stream mode) {
  if (mode == proxy::Stream::Off) {
    pinned_->setStreamSink(nullptr);
  } else {
    pinned_->setStreamSink(self(), mode == proxy::Stream::Pushes);
  }
}

void Session::watchScript(std::uint64_t tag) {
  scripts_.push_back(tag);
  worker_.scripts().started(shared_, id_, tag);
}

std::string_view Session::redisBusy() const {
  // Behind its own script, this client's requests wait as they would in Redis.
  if (!scripts_.empty()) return {};
  return worker_.server().busyScripts().text();
}

void Session::unpin(bool clean) {
  if (!pinned_) return;
  auto connection = std::move(pinned_);
  connection->setOwner({});  // its closing is ours, not news to report
  connection->setStreamSink(nullptr);
  if (!clean) connection->stop();
  worker_.releasePinned(std::move(connection), clean);
}

bool Session::pinLost() const { return pinned_ && pinned_->closed(); }

// -------------------------------------------------------- ReadThroughPort

void Session::read(proxy::Conn conn, commands::ReadKind kind,
                   const std::vector<std::string_view>& args, std::vector<proxy::MappedKey> keys,
                   std::uint64_t tag) {
  std::vector<cache::MappedRead::Key> read_keys;
  read_keys.reserve(keys.size());
  for (auto& k : keys) read_keys.push_back({k.arg, k.ks, std::move(k.values)});
  auto op = std::make_shared<cache::MappedRead>(worker_, self(), tag, kind,
                                                std::vector<std::string>(args.begin(), args.end()),
                                                std::move(read_keys));
  // On a cluster by the router, whatever `conn`: a mapped key changes only by
  // fills, invalidations and mapped writes, which go by the router too, never
  // by this client's requests on its dedicated connection.
  if (cluster_) {
    op->start(worker_.cacheRoute());
    return;
  }
  op->start(connection(conn));
}

const std::string* Session::nearValue(const cache::Keyspace& ks, std::string_view key) {
  cache::NearCache* near = worker_.nearCache();
  if (near == nullptr || !near->enabled(ks.id)) return nullptr;
  const cache::NearValue* v = near->lookup(ks.id, key, std::chrono::steady_clock::now());
  return v ? &v->frame() : nullptr;
}

void Session::write(proxy::Conn conn, cache::WritePlan plan, std::uint64_t tag) {
  auto op = std::make_shared<cache::MappedWrite>(worker_, self(), tag, std::move(plan));
  // On a cluster by the router, whatever `conn` (see read() above): write-
  // through and cache-only writes, each script call to its key's slot owner.
  if (cluster_) {
    op->start(worker_.cacheRoute());
    return;
  }
  op->start(connection(conn));
}

bool Session::writeMayReorder(const cache::WritePlan& plan) const {
  return cache::MappedWrite::mayReorder(plan, worker_.config());
}

// -------------------------------------------------------------- AdminPort

const config::Config& Session::config() const { return worker_.config(); }

const cache::KeyspaceRegistry& Session::keyspaces() const { return worker_.server().keyspaces(); }

proxy::WorkerStats& Session::stats() { return worker_.stats(); }

proxy::InfoFields Session::infoFields(std::string_view section) const {
  return worker_.server().infoFields(section);
}

std::function<void(std::string)> Session::replyLater(std::uint64_t tag) {
  auto self = shared_from_this();
  auto& context = worker_.context();
  return [self, tag, &context](std::string reply) {
    boost::asio::post(context,
                      [self, tag, reply = std::move(reply)] { self->deliver(tag, reply); });
  };
}

bool Session::writesCommand(std::vector<std::string> args, std::uint64_t tag) {
  cache::WriteService* service = worker_.server().writes();
  if (service == nullptr) return false;
  service->command(std::move(args), replyLater(tag));
  return true;
}

bool Session::invalidateCommand(std::vector<std::string> args, std::uint64_t tag) {
  cache::Invalidator* invalidator = worker_.server().invalidator();
  if (invalidator == nullptr) return false;
  invalidator->command(std::move(args), replyLater(tag));
  return true;
}

bool Session::flushAll(bool all, std::uint64_t tag) {
  cache::WriteService* service = worker_.server().writes();
  if (service == nullptr) return false;
  service->flushAllThenWipe(all, replyLater(tag));
  return true;
}

void Session::reload(std::uint64_t tag) {
  auto done = replyLater(tag);
  worker_.server().reload([done](const ReloadResult& r) { done(encodeReload(r)); });
}

const std::atomic<int>& Session::monitors() const { return worker_.server().monitors().count(); }

void Session::feedMonitors(std::string line) {
  worker_.server().monitors().publish(std::move(line));
}

proxy::PauseState& Session::pause() { return worker_.server().clients().pause(); }

void Session::clientList(proxy::ClientFilter filter, std::string own, std::uint64_t tag) {
  worker_.server().clients().list(std::move(filter), std::move(own),
                                  worker_.context().get_executor(),
                                  [self = shared_from_this(), tag](const std::string& text) {
                                    std::string out;
                                    resp::appendBulk(out, text);
                                    self->deliver(tag, out);
                                  });
}

void Session::clientKill(proxy::ClientFilter filter, bool self_matched, bool old_form,
                         std::uint64_t tag) {
  worker_.server().clients().kill(
      std::move(filter), worker_.context().get_executor(),
      [self = shared_from_this(), tag, self_matched, old_form](std::size_t killed) {
        killed += self_matched ? 1 : 0;
        std::string out;
        if (!old_form) {
          resp::appendInteger(out, static_cast<long long>(killed));
        } else if (killed == 0) {
          resp::appendError(out, errors::kNoSuchClient);
        } else {
          out = "+OK\r\n";
        }
        self->deliver(tag, out);
      });
}

void Session::clientUnblock(std::uint64_t id, bool error, std::uint64_t tag) {
  worker_.server().clients().pinnedConnection(
      id, worker_.context().get_executor(),
      [self = shared_from_this(), error, tag](const proxy::PinnedConnection& pinned) {
        if (pinned.redis_id == 0) {
          self->deliver(tag, ":0\r\n");
          return;
        }
        // On an out-of-band connection (to the client's node, on a cluster):
        // no busy script or blocked call holds it up.
        std::string request;
        const std::string rid = std::to_string(pinned.redis_id);
        resp::appendMultibulk(request, {"CLIENT", "UNBLOCK", rid, error ? "ERROR" : "TIMEOUT"});
        if (cluster::Router* router = self->worker_.router()) {
          router->sendOutOfBand(pinned.node, request, self, tag);
        } else {
          self->worker_.outOfBandConnection().send(request, self, tag);
        }
      });
}

proxy::PinnedConnection Session::pinnedConnection() const {
  if (cluster_) return cluster_->pinnedConnection();
  return {pinnedRedisId(), {}};
}

std::uint64_t Session::pinnedRedisId() const { return pinned_ ? pinned_->redisId() : 0; }

void Session::clientRedirect(std::uint64_t id, std::uint64_t tag) {
  worker_.server().clients().redirectTarget(
      id, worker_.context().get_executor(),
      [self = shared_from_this(), tag](std::uint64_t redis_id) {
        std::string out;
        resp::appendInteger(out, static_cast<long long>(redis_id));
        self->deliver(tag, out);
      });
}

std::uint64_t Session::redirectTargetId() {
  // A cluster's connections belong to its nodes: no one Redis client to name.
  if (closed_ || cluster_ || !pipeline_.becomeRedirectTarget()) return 0;
  afterPipeline();  // it may have sent a request of its own (HELLO 3)
  return pinnedRedisId();
}

// ------------------------------------------------------------- ClientPort

void Session::monitor(bool on) {
  if (on == monitoring_) return;
  monitoring_ = on;
  MonitorFeed& feed = worker_.server().monitors();
  if (on) {
    feed.add(id_, socket_.get_executor(), weak_from_this());
  } else {
    feed.remove(id_);
  }
}

bool Session::matches(const proxy::ClientFilter& filter) const {
  const proxy::ConnectionFacts f = facts();
  return filter.matches(pipeline_.summary(f));
}

proxy::ConnectionFacts Session::facts() const {
  const auto now = std::chrono::steady_clock::now();
  proxy::ConnectionFacts f;
  f.peer = peer_;
  boost::system::error_code ec;
  auto& tcp = const_cast<ClientStream&>(socket_).tcp();  // asio's accessors are not const
  const auto local = tcp.local_endpoint(ec);
  if (!ec) f.local = local.address().to_string() + ":" + std::to_string(local.port());
  f.fd = static_cast<long long>(tcp.native_handle());
  f.age_seconds = std::chrono::duration_cast<std::chrono::seconds>(now - created_).count();
  f.idle_seconds = std::chrono::duration_cast<std::chrono::seconds>(now - last_active_).count();
  f.query_buffer = in_.size();
  f.query_buffer_free = in_.writable();
  f.query_buffer_capacity = in_.capacity();
  f.writing = writing_.size();
  f.memory = in_.capacity() + writing_.capacity();
  return f;
}

}  // namespace larder::server
