// Writes to mapped keys and the operator commands that go with them: the
// session's side (checks, ordering, reply slots); the work is done by
// MappedWrite on the worker and by the WriteService on the PostgreSQL thread.
#include <boost/asio/post.hpp>

#include "larder/resp/reply_writer.hpp"
#include "larder/server/mapped_write.hpp"
#include "larder/server/session.hpp"
#include "larder/server/worker.hpp"

namespace larder::server {

namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// The write mode's verdict on a planned write; "" when it may go ahead.
std::string modeRefusal(const WritePlan& plan, std::string_view command) {
  for (const auto& w : plan.writes) {
    if (w.cache_only) continue;  // EXPIRE and friends touch the cache only
    switch (w.ks->config.write) {
      case config::WriteMode::None:
        return "READONLY Larder: keyspace '" + w.ks->name() + "' is read-only (write: none)";
      case config::WriteMode::Through:
        if (w.op == "getdel" || (w.op == "set" && w.needs_row)) {
          return "ERR Larder: " + upper(command) +
                 " with NX, XX, GET or KEEPTTL is not supported on keyspace '" + w.ks->name() +
                 "' (write: through)";
        }
        break;
      case config::WriteMode::Behind:
        break;
    }
  }
  return {};
}

}  // namespace

std::function<void(std::string)> Session::replyLater(std::uint64_t tag) {
  auto self = shared_from_this();
  auto& context = worker_.context();
  return [self, tag, &context](std::string reply) {
    boost::asio::post(context,
                      [self, tag, reply = std::move(reply)] { self->deliver(tag, reply); });
  };
}

Session::Flow Session::routeWrite(const resp::Request& req, const commands::Command& command,
                                  const std::vector<std::size_t>& keys) {
  WritePlan plan = planWrite(command, req.args, keys, worker_.server().keyspaces());
  if (plan.error.empty()) plan.error = modeRefusal(plan, req.args[0]);
  if (!plan.error.empty()) {
    for (const auto& w : plan.writes) worker_.stats().keyspace(w.ks->id).refused.add();
    replyError(plan.error);
    return Flow::Continue;
  }
  if (plan.writes.empty()) return forwardCurrent(req);
  // A read pipelined before this write may still be loading: if the write ran
  // first, the load would answer with it.
  if (!queue_.empty() && queue_.headTag() < mapped_read_end_) return Flow::Barrier;
  redis::BackendConnection* connection = currentConnection();
  if (connection == nullptr) return Flow::Barrier;
  if (connection->saturated()) return Flow::Saturated;
  hold_ = MappedWrite::mayReorder(plan, worker_.config());
  const std::uint64_t tag = queue_.reserve();
  auto op = std::make_shared<MappedWrite>(worker_, self(), tag, std::move(plan));
  op->start(*connection);
  return Flow::Continue;
}

Session::Flow Session::larder(const resp::Request& req) {
  const std::string sub = req.args.size() > 1 ? upper(req.args[1]) : std::string();
  if (sub == "RELOAD" || sub == "STATS" || sub == "LOGLEVEL") return larderAdmin(req, sub);
  if (sub == "INVALIDATE") {
    cache::Invalidator* invalidator = worker_.server().invalidator();
    if (invalidator == nullptr) {
      replyError("ERR Larder: no keyspaces are configured");
      return Flow::Continue;
    }
    // Writes this client sent before are in Redis before the keys go.
    if (!queue_.empty()) return Flow::Barrier;
    std::vector<std::string> args(req.args.begin() + 1, req.args.end());
    invalidator->command(std::move(args), replyLater(queue_.reserve()));
    return Flow::Continue;
  }
  cache::WriteService* service = worker_.server().writes();
  if (service == nullptr) {
    replyError("ERR Larder: no keyspaces are configured");
    return Flow::Continue;
  }
  // Writes this client sent before must be in the queue before we look at it.
  if (!queue_.empty()) return Flow::Barrier;
  std::vector<std::string> args(req.args.begin() + 1, req.args.end());
  service->command(std::move(args), replyLater(queue_.reserve()));
  return Flow::Continue;
}

Session::Flow Session::flushAll(const resp::Request& req) {
  cache::WriteService* service = worker_.server().writes();
  const bool all = commands::equalsIgnoreCase(req.args[0], "flushall");
  if (service == nullptr || (!all && db_ != worker_.config().redis.db)) {
    return forwardCurrent(req);  // no mapped keys there: Redis' own FLUSHDB
  }
  if (req.args.size() > 2 ||
      (req.args.size() == 2 && !commands::equalsIgnoreCase(req.args[1], "async") &&
       !commands::equalsIgnoreCase(req.args[1], "sync"))) {
    replyError("ERR syntax error");
    return Flow::Continue;
  }
  if (!queue_.empty()) return Flow::Barrier;
  service->flushAllThenWipe(all, replyLater(queue_.reserve()));
  return Flow::Continue;
}

}  // namespace larder::server
