#include "larder/admin/admin_server.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <mutex>
#include <string_view>
#include <system_error>
#include <unordered_map>

namespace larder::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kReadTimeout = std::chrono::seconds(10);  // also the keep-alive idle limit
constexpr auto kWriteTimeout = std::chrono::seconds(10);
constexpr std::size_t kHeaderLimit = 8 * 1024;
constexpr std::size_t kBodyLimit = 8 * 1024;  // admin requests carry no body worth having
constexpr std::size_t kBufferLimit = 64 * 1024;
constexpr std::size_t kMaxConnections = 64;
constexpr auto kAcceptPause = std::chrono::milliseconds(100);
constexpr auto kRejectLogInterval = std::chrono::seconds(10);
constexpr std::string_view kMetricsType = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kTextType = "text/plain; charset=utf-8";

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;
using Strand = asio::strand<asio::io_context::executor_type>;

// Text from outside (exception messages) made safe for one log line, also
// inside the JSON log pattern: JSON-style escapes, no raw control bytes.
std::string escapeForLog(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// A co_spawn completion handler: exceptions are logged, never dropped.
auto logExceptions(std::string what) {
  return [what = std::move(what)](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("admin: {} ended by an exception: {}", what, escapeForLog(ex.what()));
    } catch (...) {
      spdlog::error("admin: {} ended by an unknown exception", what);
    }
  };
}

// Time depends on the length of `given` only, not on where it differs from `secret`.
bool constantTimeEquals(std::string_view given, std::string_view secret) {
  if (secret.empty()) return given.empty();
  std::size_t diff = given.size() ^ secret.size();
  for (std::size_t i = 0; i < given.size(); ++i) {
    diff |= static_cast<unsigned char>(given[i]) ^
            static_cast<unsigned char>(secret[i % secret.size()]);
  }
  return diff == 0;
}

// `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 7235).
bool bearerMatches(std::string_view header, std::string_view token) {
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() < kScheme.size()) return false;
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return false;
  }
  std::string_view credentials = header.substr(kScheme.size());
  while (!credentials.empty() && (credentials.front() == ' ' || credentials.front() == '\t')) {
    credentials.remove_prefix(1);
  }
  return constantTimeEquals(credentials, token);
}

Response makeResponse(const Request& req, http::status status, std::string body,
                      std::string_view content_type = kTextType) {
  Response res{status, req.version()};
  res.set(http::field::server, "larder");
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  // HEAD: the same headers (Content-Length included), no body.
  if (req.method() == http::verb::head) res.body().clear();
  return res;
}

tcp::endpoint resolve(const config::Endpoint& ep) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(ep.host, ec);
  if (!ec) return {address, ep.port};
  asio::io_context tmp;
  tcp::resolver resolver(tmp);
  auto results = resolver.resolve(ep.host, std::to_string(ep.port), ec);
  if (ec || results.empty()) {
    throw std::system_error(
        ec ? std::error_code(ec) : std::make_error_code(std::errc::invalid_argument),
        "admin: cannot resolve " + ep.toString());
  }
  return results.begin()->endpoint();
}

// Everything the coroutines touch. Shared so it outlives the AdminServer
// until the last coroutine ends; all of it runs on one strand.
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(asio::io_context& context, AdminSource& source, std::string token)
      : strand_(asio::make_strand(context)),
        acceptor_(strand_),
        source_(&source),
        token_(std::move(token)) {}

  tcp::acceptor& acceptor() { return acceptor_; }

  void start() {
    asio::co_spawn(
        strand_, [self = shared_from_this()] { return self->acceptLoop(); },
        logExceptions("accept loop"));
  }

  // Any thread. No call into the source starts after this returns.
  void stop() {
    {
      std::lock_guard lock(source_mutex_);
      source_ = nullptr;
    }
    asio::dispatch(strand_, [self = shared_from_this()] { self->closeAll(); });
  }

 private:
  void closeAll() {
    stopped_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    for (auto& [id, stream] : connections_) {
      stream->socket().shutdown(tcp::socket::shutdown_both, ec);
      stream->close();
    }
  }

  asio::awaitable<void> acceptLoop() {
    while (!stopped_) {
      auto [ec, socket] = co_await acceptor_.async_accept(kUseTuple);
      if (stopped_ || ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
      if (ec) {
        // Out of descriptors or memory: pause instead of spinning on accept.
        if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
            ec == asio::error::no_memory || ec.value() == ENFILE) {
          spdlog::error("admin: accept failed: {}; pausing 100 ms", ec.message());
          asio::steady_timer pause(strand_, kAcceptPause);
          co_await pause.async_wait(kUseTuple);
        } else {
          spdlog::debug("admin: accept failed: {}", ec.message());
        }
        continue;
      }
      if (connections_.size() >= kMaxConnections) {
        logRejection();
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
      const std::uint64_t id = next_id_++;
      connections_.emplace(id, stream);  // before the spawn, so the limit counts it at once
      asio::co_spawn(
          strand_, [self = shared_from_this(), stream, id] { return self->serve(stream, id); },
          logExceptions(fmt::format("connection {}", id)));
    }
  }

  void logRejection() {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_reject_log_ < kRejectLogInterval) return;
    last_reject_log_ = now;
    spdlog::warn("admin: {} connections open; closing new ones", kMaxConnections);
  }

  asio::awaitable<void> serve(std::shared_ptr<beast::tcp_stream> stream, std::uint64_t id) {
    // Leaves the registry however the coroutine ends, an exception included.
    struct Deregister {
      std::shared_ptr<Listener> self;
      std::uint64_t id;
      ~Deregister() { self->connections_.erase(id); }
    } deregister{shared_from_this(), id};

    beast::flat_buffer buffer(kBufferLimit);
    while (!stopped_) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(kBodyLimit);
      stream->expires_after(kReadTimeout);
      auto [ec, read] = co_await http::async_read(*stream, buffer, parser, kUseTuple);
      if (stopped_) break;
      if (ec) {
        if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
            ec != http::error::end_of_stream && ec != http::error::partial_message) {
          co_await refuse(*stream, ec);
        }
        break;  // end of stream, timeout, reset or a malformed request: done
      }
      Response res = handle(parser.get());
      const bool keep_alive = res.keep_alive();
      stream->expires_after(kWriteTimeout);
      auto [write_ec, written] = co_await http::async_write(*stream, res, kUseTuple);
      if (write_ec || !keep_alive) break;
    }
    boost::system::error_code ignored;
    stream->socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream->close();
  }

  // Answers a request that could not be parsed, then the caller closes.
  asio::awaitable<void> refuse(beast::tcp_stream& stream, boost::system::error_code ec) {
    http::status status = http::status::bad_request;
    if (ec == http::error::body_limit) status = http::status::payload_too_large;
    if (ec == http::error::header_limit) status = http::status::request_header_fields_too_large;
    Response res{status, 11};
    res.set(http::field::server, "larder");
    res.set(http::field::content_type, kTextType);
    res.keep_alive(false);
    res.body() = std::string(http::obsolete_reason(status)) + "\n";
    res.prepare_payload();
    stream.expires_after(kWriteTimeout);
    co_await http::async_write(stream, res, kUseTuple);
  }

  bool authorized(const Request& req) const {
    if (token_.empty()) return true;
    auto it = req.find(http::field::authorization);
    if (it == req.end()) return false;
    const auto value = it->value();
    return bearerMatches(std::string_view(value.data(), value.size()), token_);
  }

  Response handle(const Request& req) {
    const auto target = req.target();
    std::string_view path(target.data(), target.size());
    path = path.substr(0, path.find('?'));

    // Authentication comes before routing, so an anonymous caller learns no route names.
    // The probes stay open: kubelets and Docker healthchecks send no token, and they
    // reveal only "up" and "ready" (docs/security.md).
    if (path != "/healthz" && path != "/readyz" && !authorized(req)) {
      Response res = makeResponse(req, http::status::unauthorized, "unauthorized\n");
      res.set(http::field::www_authenticate, "Bearer realm=\"larder\"");
      return res;
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      Response res = makeResponse(req, http::status::method_not_allowed, "method not allowed\n");
      res.set(http::field::allow, "GET, HEAD");
      return res;
    }
    if (path == "/healthz") return makeResponse(req, http::status::ok, "ok\n");
    if (path != "/metrics" && path != "/readyz" && path != "/config") {
      return makeResponse(req, http::status::not_found, "not found\n");
    }

    // The source may be going away (stop()); the lock keeps it alive while in use.
    std::lock_guard lock(source_mutex_);
    if (!source_) return makeResponse(req, http::status::service_unavailable, "stopping\n");
    try {
      if (path == "/metrics") {
        return makeResponse(req, http::status::ok, source_->metricsText(), kMetricsType);
      }
      if (path == "/config") return makeResponse(req, http::status::ok, source_->effectiveConfig());
      std::string why;
      if (source_->ready(why)) return makeResponse(req, http::status::ok, "ready\n");
      if (why.empty()) why = "not ready";
      if (why.back() != '\n') why += '\n';
      return makeResponse(req, http::status::service_unavailable, std::move(why));
    } catch (const std::exception& e) {
      spdlog::error("admin: {} failed: {}", path, escapeForLog(e.what()));
      return makeResponse(req, http::status::internal_server_error, "internal error\n");
    }
  }

  Strand strand_;
  tcp::acceptor acceptor_;
  std::mutex source_mutex_;
  AdminSource* source_;  // null once stopped
  const std::string token_;
  bool stopped_ = false;  // strand only
  std::uint64_t next_id_ = 0;
  std::unordered_map<std::uint64_t, std::shared_ptr<beast::tcp_stream>> connections_;
  std::chrono::steady_clock::time_point last_reject_log_{};
};

}  // namespace

struct AdminServer::Impl {
  std::shared_ptr<Listener> listener;
  config::Endpoint bound;  // the configured host with the port actually bound
  bool started = false;
};

AdminServer::AdminServer(asio::io_context& context, const config::Endpoint& endpoint,
                         AdminSource& source, std::string auth_token)
    : impl_(std::make_unique<Impl>()) {
  impl_->listener = std::make_shared<Listener>(context, source, std::move(auth_token));
  const tcp::endpoint ep = resolve(endpoint);
  auto& acceptor = impl_->listener->acceptor();
  boost::system::error_code ec;
  // Bind and listen now: a busy port must fail start-up, not the first scrape.
  auto check = [&](const char* step) {
    if (ec) {
      throw std::system_error(std::error_code(ec),
                              fmt::format("admin: cannot {} {}", step, endpoint.toString()));
    }
  };
  acceptor.open(ep.protocol(), ec);
  check("open a socket for");
  acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  check("set SO_REUSEADDR on");
  acceptor.bind(ep, ec);
  check("bind");
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  check("listen on");
  const auto local = acceptor.local_endpoint(ec);
  check("read the bound port of");
  impl_->bound = {endpoint.host, local.port()};
}

AdminServer::~AdminServer() { stop(); }

void AdminServer::start() {
  if (impl_->started) return;
  impl_->started = true;
  impl_->listener->start();
  spdlog::info("admin HTTP listening on {}", impl_->bound.toString());
}

void AdminServer::stop() { impl_->listener->stop(); }

unsigned short AdminServer::port() const { return impl_->bound.port; }

}  // namespace larder::admin
