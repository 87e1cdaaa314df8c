#include "larder/admin/admin_server.hpp"

#include <atomic>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using larder::admin::AdminServer;
using larder::admin::AdminSource;
using larder::config::Endpoint;

constexpr auto kWait = std::chrono::seconds(5);  // upper bound for every client step
constexpr std::string_view kTextType = "text/plain; charset=utf-8";

// Unit-test stand-in for the Server: canned texts, readiness flipped by the test.
struct FakeSource : AdminSource {
  std::atomic<bool> is_ready{true};
  std::atomic<bool> config_throws{false};
  std::string metricsText() const override { return "# TYPE larder_up gauge\nlarder_up 1\n"; }
  bool ready(std::string& why) const override {
    if (is_ready) return true;
    why = "redis backend unreachable\npostgres pool empty";
    return false;
  }
  std::string effectiveConfig() const override {
    if (config_throws) throw std::runtime_error("broken \"config\"\n");
    return "listen: 127.0.0.1:6380\nrequirepass: <redacted>\n";
  }
};

// An AdminServer on 127.0.0.1:0 with its io_context on a thread of its own.
struct Fixture {
  FakeSource source;
  asio::io_context context;
  std::unique_ptr<AdminServer> server;
  std::promise<void> finished;
  std::thread thread;

  explicit Fixture(std::string token = {}) {
    server =
        std::make_unique<AdminServer>(context, Endpoint{"127.0.0.1", 0}, source, std::move(token));
    server->start();
    thread = std::thread([this] {
      context.run();
      finished.set_value();
    });
  }
  ~Fixture() {
    server->stop();
    // stop() must let run() return on its own; force it after a bound and fail.
    const bool finished_in_time =
        finished.get_future().wait_for(kWait) == std::future_status::ready;
    if (!finished_in_time) context.stop();
    thread.join();
    server.reset();
    CHECK(finished_in_time);  // not FAIL: a destructor must not throw
  }
  unsigned short port() const { return server->port(); }
};

struct Reply {
  boost::system::error_code ec;
  http::response<http::string_body> res;
};

// A blocking HTTP/1.1 client: each step runs its own io_context under a deadline.
class Client {
 public:
  boost::system::error_code connect(unsigned short port) {
    boost::system::error_code result;
    stream_.expires_after(kWait);
    stream_.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                          [&](boost::system::error_code ec) { result = ec; });
    drive();
    return result;
  }

  Reply get(std::string target, std::string token = {}, bool keep_alive = true) {
    return request(http::verb::get, std::move(target), std::move(token), keep_alive);
  }

  Reply request(http::verb method, std::string target, std::string token = {},
                bool keep_alive = true) {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    req.keep_alive(keep_alive);
    req.prepare_payload();
    return exchange(req);
  }

  Reply exchange(const http::request<http::string_body>& req) {
    Reply reply;
    stream_.expires_after(kWait);
    http::async_write(stream_, req,
                      [&](boost::system::error_code ec, std::size_t) { reply.ec = ec; });
    drive();
    if (reply.ec) return reply;
    http::response_parser<http::string_body> parser;
    parser.skip(req.method() == http::verb::head);  // a HEAD response has no body
    stream_.expires_after(kWait);
    http::async_read(stream_, buffer_, parser,
                     [&](boost::system::error_code ec, std::size_t) { reply.ec = ec; });
    drive();
    if (!reply.ec) reply.res = parser.release();
    return reply;
  }

  // Sends raw bytes, then collects whatever comes back until the server closes.
  std::string raw(const std::string& bytes) {
    std::string out;
    stream_.expires_after(kWait);
    asio::async_write(stream_, asio::buffer(bytes), [](boost::system::error_code, std::size_t) {});
    drive();
    stream_.expires_after(kWait);
    asio::async_read(stream_, asio::dynamic_buffer(out),
                     [&](boost::system::error_code ec, std::size_t) { raw_ec_ = ec; });
    drive();
    return out;
  }
  boost::system::error_code rawError() const { return raw_ec_; }

  void close() { stream_.close(); }

 private:
  void drive() {
    io_.restart();
    io_.run();
  }

  asio::io_context io_;
  beast::tcp_stream stream_{io_};
  beast::flat_buffer buffer_;
  boost::system::error_code raw_ec_;
};

std::string header(const Reply& r, http::field f) {
  auto it = r.res.find(f);
  return it == r.res.end() ? std::string() : std::string(it->value());
}

// Polls `ok` every 20 ms for at most kWait.
template <typename F>
bool eventually(F ok) {
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace

TEST_CASE("AdminServer serves each route", "[admin][http]") {
  Fixture f;
  Client c;
  REQUIRE_FALSE(c.connect(f.port()));

  auto r = c.get("/metrics");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);
  CHECK(r.res.body() == f.source.metricsText());
  CHECK(header(r, http::field::content_type) == "text/plain; version=0.0.4; charset=utf-8");

  r = c.get("/healthz");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);
  CHECK(r.res.body() == "ok\n");
  CHECK(header(r, http::field::content_type) == kTextType);

  r = c.get("/readyz");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);
  CHECK(r.res.body() == "ready\n");

  r = c.get("/config");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);
  CHECK(r.res.body() == f.source.effectiveConfig());
  CHECK(header(r, http::field::content_type) == kTextType);

  r = c.get("/healthz?verbose=1");  // the query string does not change the route
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);
}

TEST_CASE("AdminServer /readyz follows the source", "[admin][http]") {
  Fixture f;
  Client c;
  REQUIRE_FALSE(c.connect(f.port()));
  f.source.is_ready = false;
  auto r = c.get("/readyz");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::service_unavailable);
  CHECK(r.res.body() == "redis backend unreachable\npostgres pool empty\n");
  f.source.is_ready = true;
  r = c.get("/readyz");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);
  CHECK(r.res.body() == "ready\n");
}

TEST_CASE("AdminServer answers 404 and 405", "[admin][http]") {
  Fixture f;
  Client c;
  REQUIRE_FALSE(c.connect(f.port()));
  auto r = c.get("/nope");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::not_found);
  CHECK(r.res.keep_alive());

  r = c.request(http::verb::post, "/metrics");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::method_not_allowed);
  CHECK(header(r, http::field::allow) == "GET, HEAD");

  r = c.request(http::verb::delete_, "/healthz");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::method_not_allowed);
}

TEST_CASE("AdminServer HEAD has headers and no body", "[admin][http]") {
  Fixture f;
  Client c;
  REQUIRE_FALSE(c.connect(f.port()));
  auto r = c.request(http::verb::head, "/metrics");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);
  CHECK(r.res.body().empty());
  CHECK(header(r, http::field::content_length) == std::to_string(f.source.metricsText().size()));
  CHECK(header(r, http::field::content_type) == "text/plain; version=0.0.4; charset=utf-8");
  // The connection is still in step: no stray body bytes precede the next answer.
  r = c.get("/healthz");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.body() == "ok\n");
}

TEST_CASE("AdminServer keeps connections alive, closes on request", "[admin][http]") {
  Fixture f;
  Client c;
  REQUIRE_FALSE(c.connect(f.port()));
  for (int i = 0; i < 3; ++i) {
    auto r = c.get("/healthz");
    REQUIRE_FALSE(r.ec);
    CHECK(r.res.result() == http::status::ok);
    CHECK(r.res.keep_alive());
  }
  auto r = c.get("/healthz", {}, /*keep_alive=*/false);
  REQUIRE_FALSE(r.ec);
  CHECK_FALSE(r.res.keep_alive());
  CHECK(c.raw("").empty());  // the server closed its side
  CHECK(c.rawError() == asio::error::eof);
}

TEST_CASE("AdminServer checks the bearer token", "[admin][http]") {
  Fixture f("s3cret");
  Client c;
  REQUIRE_FALSE(c.connect(f.port()));
  for (const char* target : {"/metrics", "/config", "/nope"}) {
    auto r = c.get(target);
    REQUIRE_FALSE(r.ec);
    CHECK(r.res.result() == http::status::unauthorized);
    CHECK(header(r, http::field::www_authenticate).rfind("Bearer", 0) == 0);
    for (const char* wrong : {"s3creT", "s3cre", "s3cret2", "x"}) {
      r = c.get(target, wrong);
      REQUIRE_FALSE(r.ec);
      CHECK(r.res.result() == http::status::unauthorized);
    }
  }
  auto r = c.get("/metrics", "s3cret");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);
  CHECK(r.res.body() == f.source.metricsText());

  r = c.get("/healthz");  // liveness and readiness stay open for probes
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);
  r = c.get("/readyz");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() != http::status::unauthorized);

  http::request<http::string_body> req{http::verb::get, "/config", 11};
  req.set(http::field::authorization, "bearer   s3cret");  // scheme case and spacing
  r = c.exchange(req);
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);

  req.set(http::field::authorization, "Basic s3cret");
  r = c.exchange(req);
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::unauthorized);
}

TEST_CASE("AdminServer refuses malformed requests and keeps serving", "[admin][http]") {
  Fixture f;
  {
    Client bad;
    REQUIRE_FALSE(bad.connect(f.port()));
    const std::string reply = bad.raw("this is not http\r\n\r\n");
    CHECK(reply.rfind("HTTP/1.1 400", 0) == 0);
  }
  {
    Client big;
    REQUIRE_FALSE(big.connect(f.port()));
    const std::string body(64 * 1024, 'x');
    const std::string reply =
        big.raw("POST /metrics HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\n\r\n" + body);
    // 413, or a reset when the server closes with the body still unread.
    CHECK((reply.empty() || reply.rfind("HTTP/1.1 413", 0) == 0));
  }
  {
    Client huge;
    REQUIRE_FALSE(huge.connect(f.port()));
    const std::string reply =
        huge.raw("GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(16 * 1024, 'p') + "\r\n\r\n");
    CHECK((reply.empty() || reply.rfind("HTTP/1.1 431", 0) == 0));
  }
  Client good;
  REQUIRE_FALSE(good.connect(f.port()));
  auto r = good.get("/healthz");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);
}

TEST_CASE("AdminServer answers 500 when the source throws", "[admin][http]") {
  Fixture f;
  f.source.config_throws = true;
  Client c;
  REQUIRE_FALSE(c.connect(f.port()));
  auto r = c.get("/config");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::internal_server_error);
  r = c.get("/healthz");
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);
}

TEST_CASE("AdminServer bounds concurrent connections", "[admin][http]") {
  Fixture f;
  constexpr int kLimit = 64;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kLimit; ++i) {
    clients.push_back(std::make_unique<Client>());
    REQUIRE_FALSE(clients.back()->connect(f.port()));
    auto r = clients.back()->get("/healthz");  // answered: the server holds this connection
    REQUIRE_FALSE(r.ec);
  }
  {
    Client extra;
    REQUIRE_FALSE(extra.connect(f.port()));  // the kernel accepts; the server then closes
    CHECK(extra.get("/healthz").ec);
  }
  clients.front()->close();
  CHECK(eventually([&] {
    Client again;
    return !again.connect(f.port()) && !again.get("/healthz").ec;
  }));
  auto r = clients.back()->get("/healthz");  // the others were left alone
  REQUIRE_FALSE(r.ec);
  CHECK(r.res.result() == http::status::ok);
}

TEST_CASE("AdminServer stop closes the listener and open connections", "[admin][http]") {
  Fixture f;
  Client c;
  REQUIRE_FALSE(c.connect(f.port()));
  REQUIRE_FALSE(c.get("/healthz").ec);
  f.server->stop();
  CHECK(c.raw("").empty());  // the open keep-alive connection is closed
  CHECK(eventually([&] { return static_cast<bool>(Client().connect(f.port())); }));
}

TEST_CASE("AdminServer fails at construction on a busy port", "[admin][http]") {
  FakeSource source;
  asio::io_context context;
  AdminServer first(context, Endpoint{"127.0.0.1", 0}, source);
  REQUIRE(first.port() != 0);
  try {
    AdminServer second(context, Endpoint{"127.0.0.1", first.port()}, source);
    FAIL("binding a busy port did not throw");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find("bind") != std::string::npos);
    CHECK(e.code() == std::errc::address_in_use);
  }
}
