#pragma once
// The pipeline's view of everything outside it: four narrow ports. The I/O
// shell (server/session.cpp) implements them with backend connections, the
// Loader and the worker; the unit tests implement them with fakes. Every
// asynchronous answer comes back to the pipeline as Pipeline::complete(tag,
// frame) or Pipeline::fail(tag, failure) for the tag the request was given,
// on the pipeline's own thread.
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "larder/cache/keyspace.hpp"
#include "larder/cache/write_plan.hpp"
#include "larder/commands/handling.hpp"
#include "larder/config/config.hpp"
#include "larder/proxy/clients.hpp"
#include "larder/proxy/info.hpp"
#include "larder/proxy/stats.hpp"

namespace larder::proxy {

// Which backend connection: the worker's shared, multiplexed one, the
// dedicated one the client holds (MULTI, WATCH, SELECT, blocking, pub/sub),
// or the worker's out-of-band one that no client's script can hold up
// (SCRIPT KILL, FUNCTION KILL).
enum class Conn : std::uint8_t { Shared, Pinned, OutOfBand };

// Which frames of the pinned connection stream straight to the client:
// none (requests and replies), all (RESP2 pub/sub: no frame answers a
// request), or only push frames (RESP3 pub/sub: the connection speaks RESP3,
// replies still answer their requests in order).
enum class Stream : std::uint8_t { Off, All, Pushes };

class BackendPort {
 public:
  virtual ~BackendPort() = default;
  // One complete RESP request; its reply completes `tag`.
  virtual void send(Conn conn, std::string_view request, std::uint64_t tag) = 0;
  // Pub/sub: a request on the pinned connection whose frames stream back
  // through Pipeline::streamFrame.
  virtual void sendOnStream(std::string_view request) = 0;
  // Too many requests in flight on that connection: wait before sending more.
  virtual bool saturated(Conn conn) const = 0;
  // Takes a dedicated connection; false when none can be had.
  virtual bool pin() = 0;
  // Stream mode of the pinned connection (pub/sub).
  virtual void setStream(Stream mode) = 0;
  // Gives the dedicated connection back: to the idle pool when `clean` (its
  // state is the pool's: default db, no MULTI, no subscriptions), else closed.
  virtual void unpin(bool clean) = 0;
  // True when the pinned connection closed under us (its state is gone).
  virtual bool pinLost() const = 0;
  // A script call (EVAL, FCALL...) was sent with `tag` on the shared
  // connection: if it keeps Redis busy, requests queued behind it on that
  // connection would wait instead of getting Redis' -BUSY.
  virtual void watchScript(std::uint64_t tag) = 0;
  // Redis' -BUSY text while a script of another client keeps it busy (this
  // client's requests would be refused by Redis); empty otherwise.
  virtual std::string_view redisBusy() const = 0;
};

// A key of a mapped read: its argument and, when mapped, its keyspace and
// primary-key values.
struct MappedKey {
  std::size_t arg;
  const cache::Keyspace* ks;  // nullptr: unmapped (MGET and EXISTS may mix)
  std::vector<std::string> values;
};

class ReadThroughPort {
 public:
  virtual ~ReadThroughPort() = default;
  // A read of mapped keys: Redis, then the Loader for what Redis lacks.
  virtual void read(Conn conn, commands::ReadKind kind, const std::vector<std::string_view>& args,
                    std::vector<MappedKey> keys, std::uint64_t tag) = 0;
  // The near cache's copy of a GET or HGETALL reply, or null (a miss).
  virtual const std::string* nearValue(const cache::Keyspace& ks, std::string_view key) = 0;
  // A planned write of mapped keys (cache::planWrite checked it).
  virtual void write(Conn conn, cache::WritePlan plan, std::uint64_t tag) = 0;
  // True when the write may be retried or waits on PostgreSQL: nothing the
  // client sent after it may run before it is answered.
  virtual bool writeMayReorder(const cache::WritePlan& plan) const = 0;
};

// The operator commands and the server-wide facts a session may ask for.
class AdminPort {
 public:
  virtual ~AdminPort() = default;
  // The configuration now in force (a reload may replace it between calls;
  // each generation lives as long as the process).
  virtual const config::Config& config() const = 0;
  virtual const cache::KeyspaceRegistry& keyspaces() const = 0;
  virtual WorkerStats& stats() = 0;
  // Larder's INFO fields of a section ("server", "clients", "stats", "larder").
  virtual InfoFields infoFields(std::string_view section) const = 0;
  // LARDER FLUSH|PENDING|DEADLETTERS (the write service) and LARDER
  // INVALIDATE (the invalidator); false when there is no such service.
  virtual bool writesCommand(std::vector<std::string> args, std::uint64_t tag) = 0;
  virtual bool invalidateCommand(std::vector<std::string> args, std::uint64_t tag) = 0;
  // FLUSHALL / FLUSHDB of the keyspaces' db: pending writes first.
  virtual bool flushAll(bool all, std::uint64_t tag) = 0;
  // Re-reads the config file; the encoded result completes `tag`.
  virtual void reload(std::uint64_t tag) = 0;

  // MONITOR: how many clients monitor (read before every request, so it is
  // an atomic, not a call), and a line for each of them.
  virtual const std::atomic<int>& monitors() const = 0;
  virtual void feedMonitors(std::string line) = 0;
  // CLIENT PAUSE / UNPAUSE of Larder's clients, on every worker.
  virtual PauseState& pause() = 0;
  // CLIENT LIST of every other client of every worker matching `filter`,
  // merged with `own` (this client's line, or ""), in id order, completes
  // `tag` as a bulk string.
  virtual void clientList(ClientFilter filter, std::string own, std::uint64_t tag) = 0;
  // CLIENT KILL of every other matching client; `self` says whether this
  // client matched too (it is closed after the reply). The old form
  // (CLIENT KILL addr) answers +OK or an error, the new one a count.
  virtual void clientKill(ClientFilter filter, bool self, bool old_form, std::uint64_t tag) = 0;
  // CLIENT UNBLOCK of Larder's client `id`: Redis unblocks the dedicated
  // connection it is blocked on (TIMEOUT, or ERROR with `error`); Redis'
  // :1 or :0 completes `tag`.
  virtual void clientUnblock(std::uint64_t id, bool error, std::uint64_t tag) = 0;
  // CLIENT TRACKING ... REDIRECT `id`: the Redis id of the dedicated
  // connection of Larder's client `id`, which from now on keeps it
  // (Pipeline::becomeRedirectTarget), completes `tag` as an integer reply;
  // :0 when there is no such client or it cannot have one.
  virtual void clientRedirect(std::uint64_t id, std::uint64_t tag) = 0;
};

// Facts about the client's connection that only the I/O shell knows, for
// CLIENT INFO / CLIENT LIST.
struct ConnectionFacts {
  std::string peer;   // "ip:port"
  std::string local;  // "ip:port"
  long long fd = -1;
  long long age_seconds = 0;
  long long idle_seconds = 0;
  std::size_t query_buffer = 0;
  std::size_t query_buffer_free = 0;
  std::size_t query_buffer_capacity = 0;
  std::size_t writing = 0;  // bytes handed to the socket, not yet written
  std::size_t memory = 0;
};

class ClientPort {
 public:
  virtual ~ClientPort() = default;
  virtual ConnectionFacts facts() const = 0;
  // "ip:port" of the client, as MONITOR shows it; cheap.
  virtual std::string_view peerAddress() const = 0;
  // MONITOR on (this client gets every client's commands) or off (RESET).
  virtual void monitor(bool on) = 0;
};

struct Ports {
  BackendPort& backend;
  ReadThroughPort& reads;
  AdminPort& admin;
  ClientPort& client;
};

}  // namespace larder::proxy
