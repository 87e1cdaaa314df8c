#include <fcntl.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "larder/admin/admin_server.hpp"

// Present only when UBSan is linked in (weak: null otherwise).
extern "C" void __ubsan_handle_dynamic_type_cache_miss(void*, void*, void*) __attribute__((weak));

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

struct OkSource : larder::admin::AdminSource {
  std::string metricsText() const override { return ""; }
  bool ready(std::string&) const override { return true; }
  std::string effectiveConfig() const override { return ""; }
};

// Fills the descriptor table (under a lowered soft limit) until released.
class DescriptorHog {
 public:
  DescriptorHog() {
    getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit low = saved_;
    low.rlim_cur = std::min<rlim_t>(saved_.rlim_cur, 512);  // keeps the dup loop short
    setrlimit(RLIMIT_NOFILE, &low);
    for (;;) {
      const int fd = fcntl(0, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) break;
      fds_.push_back(fd);
    }
  }
  ~DescriptorHog() { release(); }
  void release() {
    for (int fd : fds_) close(fd);
    fds_.clear();
    setrlimit(RLIMIT_NOFILE, &saved_);
  }
  bool exhausted() const {
    const int fd = fcntl(0, F_DUPFD_CLOEXEC, 0);
    if (fd >= 0) close(fd);
    return fd < 0 && errno == EMFILE;
  }

 private:
  rlimit saved_{};
  std::vector<int> fds_;
};

}  // namespace

TEST_CASE("AdminServer pauses on EMFILE and recovers", "[admin][http]") {
  // UBSan's vptr check opens a pipe on a type-cache miss, so with the descriptor
  // table full it reports false errors on any thread; this test cannot run there.
  if (&__ubsan_handle_dynamic_type_cache_miss != nullptr) {
    WARN("skipped under UBSan");
    return;
  }
  // Captures the log; swapped in before the server thread starts, restored after it ends.
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("admin-test", sink));

  OkSource source;
  asio::io_context context;
  larder::admin::AdminServer server(context, larder::config::Endpoint{"127.0.0.1", 0}, source);
  server.start();
  std::promise<void> finished;
  std::thread thread([&] {
    context.run();
    finished.set_value();
  });

  asio::io_context client_io;
  boost::beast::tcp_stream client(client_io);
  client.socket().open(tcp::v4());  // its descriptor exists before the table fills
  std::string reply;
  boost::system::error_code connect_ec;
  bool exhausted = false;
  {
    // No Catch assertions in here: the table is full.
    DescriptorHog hog;
    exhausted = hog.exhausted();
    client.socket().connect({asio::ip::make_address("127.0.0.1"), server.port()}, connect_ec);
    // The server's accept now fails with EMFILE; it must wait, not spin.
    std::this_thread::sleep_for(std::chrono::milliseconds(350));
  }
  if (!connect_ec) {
    const std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    client.expires_after(std::chrono::seconds(5));
    asio::async_write(client, asio::buffer(request), [](boost::system::error_code, std::size_t) {});
    client.expires_after(std::chrono::seconds(5));
    asio::async_read(client, asio::dynamic_buffer(reply),
                     [](boost::system::error_code, std::size_t) {});
    client_io.run();
  }

  server.stop();
  const bool finished_in_time =
      finished.get_future().wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  if (!finished_in_time) context.stop();
  thread.join();
  spdlog::set_default_logger(previous);

  CHECK(finished_in_time);
  REQUIRE(exhausted);
  REQUIRE_FALSE(connect_ec);
  CHECK(reply.rfind("HTTP/1.1 200", 0) == 0);  // served once descriptors were free
  int pauses = 0;
  for (const auto& line : sink->last_formatted()) {
    if (line.find("accept failed") != std::string::npos) ++pauses;
  }
  // About one failure per 100 ms pause over 350 ms; a busy loop would log thousands.
  CHECK(pauses >= 1);
  CHECK(pauses <= 6);
}
