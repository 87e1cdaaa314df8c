#pragma once
// Larder's clients across workers, for CLIENT LIST, CLIENT KILL and CLIENT
// PAUSE. Each worker owns its sessions and only its thread touches them, so
// a question about every client is posted to every worker, each answers
// for its own sessions, and the last answer completes the request on the
// asking session's worker:
//
//   session (worker A) --list/kill--> post to A, B, ... --each: its sessions-->
//       gather (mutex) --last one--> post to A --> done(reply)
//
// Nothing here runs unless a client asks. The pause state is one atomic
// pair read by every pipeline (proxy/clients.hpp).
#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "larder/proxy/clients.hpp"

namespace larder::server {

class Session;
class Worker;

using proxy::PinnedConnection;

class ClientDirectory {
 public:
  // Before any client connects; the workers outlive every request.
  void setWorkers(std::vector<Worker*> workers) { workers_ = std::move(workers); }

  proxy::PauseState& pause() { return pause_; }

  // CLIENT LIST: the line of every client matching `filter`, `own` among
  // them, in id order (LIST ID: in the order asked); `done` runs on `home`.
  void list(proxy::ClientFilter filter, std::string own, boost::asio::any_io_executor home,
            std::function<void(std::string)> done);
  // CLIENT KILL: closes every client matching `filter`; `done(count)` on `home`.
  void kill(proxy::ClientFilter filter, boost::asio::any_io_executor home,
            std::function<void(std::size_t)> done);
  // CLIENT UNBLOCK: the dedicated connection client `id` holds; `done` on `home`.
  void pinnedConnection(std::uint64_t id, boost::asio::any_io_executor home,
                        std::function<void(PinnedConnection)> done);
  // CLIENT TRACKING REDIRECT: the Redis id of the dedicated connection
  // client `id` keeps from now on (Session::redirectTargetId; 0: no such
  // client, or it cannot have one); `done(redis_id)` on `home`.
  void redirectTarget(std::uint64_t id, boost::asio::any_io_executor home,
                      std::function<void(std::uint64_t)> done);

 private:
  // Asks client `id`, on its worker, for an answer (the other workers have
  // none); `done` on `home` with it, or with T{} when no worker has the client.
  template <class T>
  void askClient(std::uint64_t id, std::function<T(Session&)> ask,
                 boost::asio::any_io_executor home, std::function<void(T)> done);

  std::vector<Worker*> workers_;
  proxy::PauseState pause_;
};

}  // namespace larder::server
