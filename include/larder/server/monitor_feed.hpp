#pragma once
// MONITOR across workers. A session that runs MONITOR registers here; every
// session's pipeline, while count() > 0, formats a line per command
// (proxy/monitor_line.hpp) and publishes it; the line is posted to each
// monitor's own worker and appended to its output there.
//
//   any worker: pipeline --line--> publish() --post--> monitor's worker --> its output
//
// Nothing is formatted or locked while nobody monitors: pipelines read
// count() (one relaxed load per request) before doing anything. A monitor
// that does not read is bounded twice: lines posted but not yet taken count
// against limits.client_output_limit here (over it, the monitor is closed),
// and taken lines against the same limit in its session, as any reply.
// The list of monitors is guarded by a mutex, taken only while someone monitors.
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace larder::server {

class Session;

class MonitorFeed {
 public:
  explicit MonitorFeed(std::size_t limit) : limit_(limit) {}

  const std::atomic<int>& count() const { return count_; }
  // On the monitor's worker thread.
  void add(std::uint64_t id, boost::asio::any_io_executor executor, std::weak_ptr<Session> session);
  void remove(std::uint64_t id);
  // Any thread.
  void publish(std::string line);

 private:
  struct Backlog {
    std::atomic<std::size_t> bytes{0};  // posted, not yet taken by the session
    std::atomic<bool> dropped{false};
  };
  struct Monitor {
    std::uint64_t id;
    boost::asio::any_io_executor executor;
    std::weak_ptr<Session> session;
    std::shared_ptr<Backlog> backlog;
  };

  std::size_t limit_;
  std::atomic<int> count_{0};
  std::mutex mutex_;
  std::vector<Monitor> monitors_;
};

}  // namespace larder::server
