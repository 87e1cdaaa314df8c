#pragma once
// A write to mapped keys, on the worker's thread.
//
//   behind:  the write script per key (value + queue entry + marker, atomic);
//            LARDERMISS -> the Loader brings the row into the cache -> again
//            LARDERFULL -> -ERR, or wait and try again (on_full: block)
//   through: the WriteService commits the row, updates the cache, answers
//   unmapped keys of the same command (MSET, DEL): sent to Redis as is
//
// All parts in, the client's slot gets one reply combined as Redis would.
// While a write may be retried, its session sends nothing after it (the
// session holds), so the client's commands still run in the order sent.
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "larder/cache/write_plan.hpp"
#include "larder/redis/backend_connection.hpp"

namespace larder::cache {

class ReadThroughHost;

class MappedWrite : public redis::ReplySink, public std::enable_shared_from_this<MappedWrite> {
 public:
  MappedWrite(ReadThroughHost& worker, std::shared_ptr<redis::ReplySink> client, std::uint64_t tag,
              WritePlan plan);

  // One Redis: the session's connection; behind writes join its WriteBatch.
  void start(redis::BackendConnection& connection);
  // A sharded route (a cluster, which outlives the op): each script call
  // alone, to its key's slot owner.
  void start(redis::Route& route);
  void deliver(std::uint64_t sub, std::string_view frame) override;

  // True when the write may be retried (or waits on PostgreSQL), so that the
  // session must not send its next command before this one is answered.
  static bool mayReorder(const WritePlan& plan, const config::Config& config);

 private:
  bool through(const KeyWrite& w) const;
  void send(std::size_t i);
  // EVALSHA of the write script for write i (EVAL with the body when `body`).
  // Write i's own script call (a cluster's, or the body again after
  // NOSCRIPT), followed by WAIT with write_behind.wait_replicas.
  void sendAlone(std::size_t i, bool body);
  std::string scriptRequest(std::size_t i, bool body) const;
  void load(std::size_t i);
  void retryWhenRoom(std::size_t i);
  void complete(std::size_t i, std::string reply);
  void finish();

  ReadThroughHost& worker_;
  std::shared_ptr<redis::ReplySink> client_;
  std::uint64_t tag_;
  WritePlan plan_;
  void begin();
  std::shared_ptr<redis::BackendConnection> connection_;  // one Redis: kept while in flight
  redis::Route* route_ = nullptr;                         // connection_, or a cluster's route
  std::vector<std::string> replies_;                      // one per write, then the unmapped part
  std::vector<bool> absent_;                              // the Loader found no row
  std::vector<int> loads_;
  std::vector<char> paused_;  // a pause before the next load has run
  std::vector<std::chrono::steady_clock::time_point> full_since_;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  std::size_t left_ = 0;
};

}  // namespace larder::cache
