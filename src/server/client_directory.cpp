// Larder's clients across workers (see client_directory.hpp).
#include "larder/server/client_directory.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <mutex>
#include <optional>

#include "larder/server/session.hpp"
#include "larder/server/worker.hpp"

namespace larder::server {

namespace asio = boost::asio;

namespace {

// Answers from every worker, completed by the last one.
template <class Part>
struct Gather {
  std::mutex mutex;
  std::vector<Part> parts;
  std::size_t left = 0;
};

}  // namespace

void ClientDirectory::list(proxy::ClientFilter filter, std::string own, asio::any_io_executor home,
                           std::function<void(std::string)> done) {
  using Line = std::pair<std::uint64_t, std::string>;
  auto gather = std::make_shared<Gather<Line>>();
  gather->left = workers_.size();
  if (!own.empty()) gather->parts.emplace_back(filter.skip, std::move(own));
  auto finish = [gather, filter, home, done = std::move(done)]() mutable {
    // Redis lists clients in connection order; Larder's ids follow it. LIST
    // ID lists them in the order asked.
    auto rank = [&filter](std::uint64_t id) {
      if (filter.ids.empty()) return id;
      return static_cast<std::uint64_t>(std::find(filter.ids.begin(), filter.ids.end(), id) -
                                        filter.ids.begin());
    };
    std::sort(gather->parts.begin(), gather->parts.end(),
              [&rank](const Line& a, const Line& b) { return rank(a.first) < rank(b.first); });
    std::string text;
    for (const Line& line : gather->parts) text += line.second;
    asio::post(home, [done = std::move(done), text = std::move(text)] { done(text); });
  };
  for (Worker* worker : workers_) {
    asio::post(worker->context(), [worker, gather, filter, finish]() mutable {
      std::vector<Line> mine;
      for (const auto& session : worker->liveSessions()) {
        if (session->matches(filter)) mine.emplace_back(session->id(), session->clientInfoLine());
      }
      std::lock_guard lock(gather->mutex);
      for (Line& line : mine) gather->parts.push_back(std::move(line));
      if (--gather->left == 0) finish();
    });
  }
}

void ClientDirectory::kill(proxy::ClientFilter filter, asio::any_io_executor home,
                           std::function<void(std::size_t)> done) {
  auto gather = std::make_shared<Gather<std::size_t>>();
  gather->left = workers_.size();
  auto finish = [gather, home, done = std::move(done)]() mutable {
    std::size_t killed = 0;
    for (std::size_t n : gather->parts) killed += n;
    asio::post(home, [done = std::move(done), killed] { done(killed); });
  };
  for (Worker* worker : workers_) {
    asio::post(worker->context(), [worker, gather, filter, finish]() mutable {
      std::size_t killed = 0;
      for (const auto& session : worker->liveSessions()) {
        if (!session->matches(filter)) continue;
        session->close();
        ++killed;
      }
      std::lock_guard lock(gather->mutex);
      gather->parts.push_back(killed);
      if (--gather->left == 0) finish();
    });
  }
}

void ClientDirectory::pinnedConnection(std::uint64_t id, asio::any_io_executor home,
                                       std::function<void(PinnedConnection)> done) {
  askClient<PinnedConnection>(
      id, [](Session& session) { return session.pinnedConnection(); }, std::move(home),
      std::move(done));
}

void ClientDirectory::redirectTarget(std::uint64_t id, asio::any_io_executor home,
                                     std::function<void(std::uint64_t)> done) {
  askClient<std::uint64_t>(
      id, [](Session& session) { return session.redirectTargetId(); }, std::move(home),
      std::move(done));
}

template <class T>
void ClientDirectory::askClient(std::uint64_t id, std::function<T(Session&)> ask,
                                asio::any_io_executor home, std::function<void(T)> done) {
  auto gather = std::make_shared<Gather<T>>();
  gather->left = workers_.size();
  auto finish = [gather, home, done = std::move(done)]() mutable {
    T answer{};
    if (!gather->parts.empty()) answer = std::move(gather->parts.front());
    asio::post(home, [done = std::move(done), answer = std::move(answer)] { done(answer); });
  };
  for (Worker* worker : workers_) {
    asio::post(worker->context(), [worker, gather, id, ask, finish]() mutable {
      std::optional<T> mine;
      for (const auto& session : worker->liveSessions()) {
        if (session->id() == id) mine = ask(*session);  // ids are unique
      }
      std::lock_guard lock(gather->mutex);
      if (mine) gather->parts.push_back(std::move(*mine));
      if (--gather->left == 0) finish();
    });
  }
}

}  // namespace larder::server
