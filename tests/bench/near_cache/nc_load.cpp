// nc_load: closed-loop read load for the near-cache benchmark
// (tests/bench/near_cache/near_bench.sh).
//
// T threads, each with its own epoll and C connections; every connection keeps
// P requests in flight (P = 1: one request, one reply, as most clients do).
// Keys are <prefix><id>, the id drawn from a zipfian distribution over 1..N
// (exact P(rank k) ~ 1/k^theta by rejection-inversion, Hoermann & Derflinger
// 1996, as larder_read_bench), rank r mapped to id r+1 (the hottest keys are
// 1, 2, ...). The command is `GET key` or `HGET key <field>`.
//
// Prints one line: "ops=<replies> seconds=<s> ops_per_sec=<x> errors=<n>".
// Bounded: --duration seconds, and every connection gives up after 5 s without
// a reply (a stuck server ends the run, it does not hang it).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 6379;
  int threads = 1;
  int connections = 50;  // per thread
  int pipeline = 1;
  double duration = 10;
  std::uint64_t keys = 100000;
  double theta = 0.99;
  std::string prefix = "note:";
  std::string field;  // non-empty: HGET key field
  std::uint64_t seed = 42;
};

struct Rng {  // splitmix64: enough for key choice
  std::uint64_t x;
  std::uint64_t next() {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
};

class Zipf {  // rejection-inversion; rank in [0, n)
 public:
  Zipf(std::uint64_t n, double theta) : n_(n), theta_(theta) {
    h_x1_ = hIntegral(1.5) - 1.0;
    h_n_ = hIntegral(double(n) + 0.5);
    s_ = 2.0 - hIntegralInverse(hIntegral(2.5) - h(2.0));
  }
  std::uint64_t next(Rng& rng) const {
    for (;;) {
      const double u = h_n_ + rng.uniform() * (h_x1_ - h_n_);
      const double x = hIntegralInverse(u);
      auto k = std::clamp<std::int64_t>(std::int64_t(x + 0.5), 1, std::int64_t(n_));
      if (double(k) - x <= s_ || u >= hIntegral(double(k) + 0.5) - h(double(k)))
        return std::uint64_t(k - 1);
    }
  }

 private:
  static double helper1(double x) {
    return std::abs(x) > 1e-8 ? std::log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
  }
  static double helper2(double x) {
    return std::abs(x) > 1e-8 ? std::expm1(x) / x
                              : 1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x));
  }
  double h(double x) const { return std::exp(-theta_ * std::log(x)); }
  double hIntegral(double x) const {
    const double lx = std::log(x);
    return helper2((1.0 - theta_) * lx) * lx;
  }
  double hIntegralInverse(double x) const {
    double t = x * (1.0 - theta_);
    if (t < -1.0) t = -1.0;
    return std::exp(helper1(t) * x);
  }
  std::uint64_t n_;
  double theta_, h_x1_, h_n_, s_;
};

void appendBulk(std::string& out, const std::string& s) {
  out += '$';
  out += std::to_string(s.size());
  out += "\r\n";
  out += s;
  out += "\r\n";
}

// Counts complete replies at the front of `in` (bulk, nil, simple, integer,
// error: what GET and HGET answer); returns bytes consumed, -1 on garbage.
long countReplies(const char* in, std::size_t n, int& replies, int& errors) {
  std::size_t pos = 0;
  for (;;) {
    const char* eol = static_cast<const char*>(std::memchr(in + pos, '\n', n - pos));
    if (eol == nullptr) return long(pos);
    const std::size_t line_end = std::size_t(eol - in) + 1;
    const char type = in[pos];
    if (type == '$') {
      const long len = std::strtol(in + pos + 1, nullptr, 10);
      if (len < 0) {
        pos = line_end;
      } else {
        if (line_end + std::size_t(len) + 2 > n) return long(pos);
        pos = line_end + std::size_t(len) + 2;
      }
    } else if (type == '+' || type == ':' || type == '-') {
      if (type == '-') ++errors;
      pos = line_end;
    } else {
      return -1;
    }
    ++replies;
  }
}

struct Conn {
  int fd = -1;
  std::string in;
  std::string out;
  int inflight = 0;
  Clock::time_point last_reply;
};

struct Result {
  std::uint64_t ops = 0;
  std::uint64_t errors = 0;
  bool failed = false;
};

void runThread(const Options& o, int index, Clock::time_point end, Result& result) {
  Rng rng{o.seed + std::uint64_t(index) * 7919};
  const Zipf zipf(o.keys, o.theta);
  auto request = [&](std::string& out) {
    const std::string key = o.prefix + std::to_string(zipf.next(rng) + 1);
    if (o.field.empty()) {
      out += "*2\r\n$3\r\nGET\r\n";
      appendBulk(out, key);
    } else {
      out += "*3\r\n$4\r\nHGET\r\n";
      appendBulk(out, key);
      appendBulk(out, o.field);
    }
  };
  const int ep = epoll_create1(0);
  std::vector<Conn> conns(std::size_t(o.connections));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(std::uint16_t(o.port));
  inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr);
  for (std::size_t i = 0; i < conns.size(); ++i) {
    Conn& c = conns[i];
    c.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      std::perror("connect");
      result.failed = true;
      return;
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c.fd, F_SETFL, O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    for (int p = 0; p < o.pipeline; ++p) request(c.out);
    c.inflight = o.pipeline;
    c.last_reply = Clock::now();
    if (write(c.fd, c.out.data(), c.out.size()) != ssize_t(c.out.size())) {
      result.failed = true;
      return;
    }
    c.out.clear();
  }
  std::vector<epoll_event> events(conns.size());
  char buf[64 * 1024];
  bool stopping = false;
  std::size_t open = conns.size();
  while (open > 0) {
    const auto now = Clock::now();
    if (now >= end) stopping = true;
    const int n = epoll_wait(ep, events.data(), int(events.size()), 100);
    for (int e = 0; e < n; ++e) {
      Conn& c = conns[events[std::size_t(e)].data.u64];
      const ssize_t got = read(c.fd, buf, sizeof buf);
      if (got <= 0) {
        result.failed = true;
        close(c.fd);
        c.fd = -1;
        --open;
        continue;
      }
      c.in.append(buf, std::size_t(got));
      int replies = 0, errors = 0;
      const long used = countReplies(c.in.data(), c.in.size(), replies, errors);
      if (used < 0) {
        std::fprintf(stderr, "unexpected reply: %.40s\n", c.in.c_str());
        std::exit(2);
      }
      c.in.erase(0, std::size_t(used));
      c.inflight -= replies;
      if (!stopping) result.ops += std::uint64_t(replies);
      result.errors += std::uint64_t(errors);
      c.last_reply = Clock::now();
      if (stopping) {
        if (c.inflight == 0) {
          close(c.fd);
          c.fd = -1;
          --open;
        }
        continue;
      }
      for (int r = 0; r < replies; ++r) request(c.out);
      c.inflight += replies;
      std::size_t off = 0;
      while (off < c.out.size()) {  // small writes: the socket buffer takes them
        const ssize_t w = write(c.fd, c.out.data() + off, c.out.size() - off);
        if (w <= 0) break;
        off += std::size_t(w);
      }
      c.out.erase(0, off);
    }
    for (Conn& c : conns) {  // a server that stopped answering ends the run
      if (c.fd >= 0 && Clock::now() - c.last_reply > std::chrono::seconds(5)) {
        result.failed = true;
        close(c.fd);
        c.fd = -1;
        --open;
      }
    }
  }
  close(ep);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--host")
      o.host = v;
    else if (a == "--port")
      o.port = std::atoi(v.c_str());
    else if (a == "--threads")
      o.threads = std::atoi(v.c_str());
    else if (a == "--connections")
      o.connections = std::atoi(v.c_str());
    else if (a == "--pipeline")
      o.pipeline = std::atoi(v.c_str());
    else if (a == "--duration")
      o.duration = std::atof(v.c_str());
    else if (a == "--keys")
      o.keys = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--theta")
      o.theta = std::atof(v.c_str());
    else if (a == "--prefix")
      o.prefix = v;
    else if (a == "--field")
      o.field = v;
    else if (a == "--seed")
      o.seed = std::strtoull(v.c_str(), nullptr, 10);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (o.theta <= 0 || o.theta == 1.0 || o.keys < 2 || o.duration <= 0 || o.pipeline < 1) {
    std::fprintf(stderr, "bad options\n");
    return 2;
  }
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(o.duration));
  std::vector<Result> results(std::size_t(o.threads));
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; ++t) {
    threads.emplace_back(runThread, std::cref(o), t, end, std::ref(results[std::size_t(t)]));
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(end - start).count();
  std::uint64_t ops = 0, errors = 0;
  bool failed = false;
  for (const auto& r : results) {
    ops += r.ops;
    errors += r.errors;
    failed = failed || r.failed;
  }
  std::printf("ops=%llu seconds=%.2f ops_per_sec=%.0f errors=%llu%s\n",
              static_cast<unsigned long long>(ops), seconds, double(ops) / seconds,
              static_cast<unsigned long long>(errors), failed ? " failed=1" : "");
  return failed ? 1 : 0;
}
