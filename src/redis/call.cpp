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

}  // namespace

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
  const std::vector<std::string_view> key_views(keys.begin(), keys.end());
  const std::vector<std::string_view> arg_views(args.begin(), args.end());
  std::string request;
  appendScriptCall(request, script, false, key_views, arg_views);
  std::string reply = co_await call(route, std::move(request));
  if (reply.rfind("-NOSCRIPT", 0) == 0) {
    request.clear();
    appendScriptCall(request, script, true, key_views, arg_views);
    reply = co_await call(route, std::move(request));
  }
  co_return reply;
}

}  // namespace larder::redis
