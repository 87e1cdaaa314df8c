// MONITOR across workers (see monitor_feed.hpp).
#include "larder/server/monitor_feed.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>

#include "larder/server/session.hpp"

namespace larder::server {

void MonitorFeed::add(std::uint64_t id, boost::asio::any_io_executor executor,
                      std::weak_ptr<Session> session) {
  std::lock_guard lock(mutex_);
  monitors_.push_back({id, std::move(executor), std::move(session), std::make_shared<Backlog>()});
  count_.store(static_cast<int>(monitors_.size()), std::memory_order_relaxed);
}

void MonitorFeed::remove(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  std::erase_if(monitors_, [id](const Monitor& m) { return m.id == id; });
  count_.store(static_cast<int>(monitors_.size()), std::memory_order_relaxed);
}

void MonitorFeed::publish(std::string line) {
  auto shared = std::make_shared<const std::string>(std::move(line));
  const std::size_t size = shared->size();
  std::lock_guard lock(mutex_);
  for (const Monitor& m : monitors_) {
    if (m.backlog->dropped.load(std::memory_order_relaxed)) continue;
    if (m.backlog->bytes.fetch_add(size, std::memory_order_relaxed) + size > limit_) {
      // Its worker has not even taken the lines posted to it: as a client
      // over its output limit, the monitor is closed.
      m.backlog->dropped.store(true, std::memory_order_relaxed);
      boost::asio::post(m.executor, [session = m.session] {
        if (auto s = session.lock()) s->closeOverOutputLimit();
      });
      continue;
    }
    boost::asio::post(m.executor, [session = m.session, backlog = m.backlog, shared] {
      backlog->bytes.fetch_sub(shared->size(), std::memory_order_relaxed);
      if (auto s = session.lock()) s->monitorLine(*shared);
    });
  }
}

}  // namespace larder::server
