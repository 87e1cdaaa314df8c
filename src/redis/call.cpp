#include "larder/redis/call.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace larder::redis {

namespace asio = boost::asio;

namespace {

// Hands the reply to the waiting coroutine, resumed from a fresh handler
// rather than inside the connection's read loop.
template <typename Handler>
class CallSink : public ReplySink {
 public:
  CallSink(asio::any_io_executor executor, Handler handler)
      : executor_(std::move(executor)), handler_(std::move(handler)) {}
  void deliver(std::uint64_t, std::string_view frame) override {
    asio::post(executor_, [h = std::move(handler_), reply = std::string(frame)]() mutable {
      std::move(h)(std::move(reply));
    });
  }

 private:
  asio::any_io_executor executor_;
  Handler handler_;
};

// Collects the replies of several requests; the coroutine resumes, from a
// fresh handler, once the last is in.
template <typename Handler>
class GatherSink : public ReplySink {
 public:
  GatherSink(asio::any_io_executor executor, Handler handler, std::size_t n)
      : executor_(std::move(executor)), handler_(std::move(handler)), replies_(n), left_(n) {}
  void deliver(std::uint64_t tag, std::string_view frame) override {
    replies_[tag].assign(frame);
    if (--left_ > 0) return;
    asio::post(executor_, [h = std::move(handler_), replies = std::move(replies_)]() mutable {
      std::move(h)(std::move(replies));
    });
  }

 private:
  asio::any_io_executor executor_;
  Handler handler_;
  std::vector<std::string> replies_;
  std::size_t left_;
};

}  // namespace

asio::awaitable<std::vector<std::string>> callAll(Route& route, std::vector<std::string> requests) {
  if (requests.empty()) co_return std::vector<std::string>{};
  auto executor = co_await asio::this_coro::executor;
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                          void(std::vector<std::string>)>(
      [&route, &requests, executor](auto handler) {
        auto sink = std::make_shared<GatherSink<decltype(handler)>>(executor, std::move(handler),
                                                                    requests.size());
        for (std::size_t i = 0; i < requests.size(); ++i)
          route.send(requests[i], sink, i, As::Client);
      },
      asio::use_awaitable);
}

asio::awaitable<std::vector<std::string>> callScriptEach(Route& route, const Script& script,
                                                         const std::vector<ScriptCall>& calls) {
  auto build = [&](const ScriptCall& c, bool body) {
    const std::vector<std::string_view> keys(c.keys.begin(), c.keys.end());
    const std::vector<std::string_view> args(c.args.begin(), c.args.end());
    std::string request;
    appendScriptCall(request, script, body, keys, args);
    return request;
  };
  std::vector<std::string> requests;
  requests.reserve(calls.size());
  for (const ScriptCall& c : calls) requests.push_back(build(c, false));
  std::vector<std::string> replies = co_await callAll(route, std::move(requests));
  // A node without the script (restarted, SCRIPT FLUSH): its calls again, with the body.
  std::vector<std::size_t> again;
  std::vector<std::string> bodies;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    if (replies[i].rfind("-NOSCRIPT", 0) != 0) continue;
    again.push_back(i);
    bodies.push_back(build(calls[i], true));
  }
  std::vector<std::string> retried = co_await callAll(route, std::move(bodies));
  for (std::size_t j = 0; j < again.size(); ++j) replies[again[j]] = std::move(retried[j]);
  co_return replies;
}

asio::awaitable<std::string> call(Route& route, std::string request) {
  auto executor = co_await asio::this_coro::executor;
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(std::string)>(
      [&route, &request, executor](auto handler) {
        auto sink = std::make_shared<CallSink<decltype(handler)>>(executor, std::move(handler));
        route.send(request, sink, 0, As::Client);
      },
      asio::use_awaitable);
}

asio::awaitable<std::string> callScript(Route& route, const Script& script,
                                        std::vector<std::string> keys,
                                        std::vector<std::string> args) {
  std::vector<ScriptCall> calls;
  calls.push_back(ScriptCall{std::move(keys), std::move(args)});
  std::vector<std::string> replies = co_await callScriptEach(route, script, calls);
  co_return std::move(replies.front());
}

}  // namespace larder::redis
