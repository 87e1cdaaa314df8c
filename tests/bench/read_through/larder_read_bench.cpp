// larder_read_bench: closed-loop read load generator for the read-through
// benchmark (tests/bench/read_through/read_bench.sh, docs/benchmarks.md).
//
// C client threads, each with its own blocking connection(s), read rows of
// public.items(id bigint primary key, name, price, stock, updated_at) by id,
// the ids drawn from a zipfian distribution over 1..N, in one of three modes:
//
//   larder       HGETALL item:<id> against Larder (which loads misses from
//                PostgreSQL and fills Redis itself);
//   cache-aside  what an application does without Larder: HGETALL item:<id>
//                against Redis; on an empty reply SELECT the row from
//                PostgreSQL (one libpq connection per client thread, prepared
//                statement), then HSET + PEXPIRE it into Redis (one pipelined
//                round trip) and return it;
//   postgres     the prepared SELECT against PostgreSQL, every time.
//
// Output: one CSV row per second (throughput, hit ratio, database queries and
// keys, p50/p99/p999 latency of the requests that completed in that second),
// then a single "SUMMARY key=value ..." line: totals, cold phase (first
// --cold seconds) and warm phase (last --warm seconds) throughput and latency,
// PostgreSQL statements executed (pg_stat_statements, when the server has it
// loaded) and the number of distinct keys the clients asked for.
//
// Zipf sampler: exact P(rank k) ~ 1/k^theta by rejection-inversion (Hoermann
// & Derflinger 1996, as Apache Commons RNG); `--sampler gray` uses Gray et al.
// (SIGMOD '94) as YCSB's ZipfianGenerator instead, with zeta(N, theta)
// precomputed, which over-weights ranks 3..10 (rank 3 by ~19% at theta 0.99).
// Rank r (0 = hottest) is mapped to an id by a bijective affine permutation
// id = (a*r + b) mod N + 1 unless --no-scramble, so hot rows are spread over the
// table instead of all sitting in its first heap pages. Every rank keeps its
// exact probability (unlike YCSB's hash-based scramble, which folds ranks onto
// each other).
//
// Latency: a log-linear histogram (32 sub-buckets per power of two, <= 3.1%
// relative error, values in ns), one per second of the run, merged for the
// overall/cold/warm percentiles. Every loop is bounded: by --duration or
// --requests (and --max-seconds), and a watchdog ends the process if the
// clients do not stop.

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::nanoseconds;

// ------------------------------------------------------------------ options

enum class Mode { Larder, CacheAside, Postgres };

struct Options {
  Mode mode = Mode::Larder;
  std::string mode_name = "larder";
  std::string host = "127.0.0.1";
  int port = 6380;       // Larder (larder) or Redis (cache-aside)
  std::string pg;        // libpq conninfo (cache-aside, postgres; stats by default)
  std::string pg_admin;  // conninfo for pg_stat_statements (default: --pg)
  std::string table = "public.items";
  std::string key_prefix = "item:";
  std::uint64_t rows = 1'000'000;
  int clients = 50;
  double duration = 30;        // seconds; 0 with --requests
  std::uint64_t requests = 0;  // 0: run for --duration
  int max_seconds = 600;       // hard bound on a --requests run
  double theta = 0.99;
  bool scramble = true;
  bool gray = false;  // --sampler gray: YCSB's approximation
  std::uint64_t seed = 42;
  std::int64_t ttl_ms = 3'600'000;  // cache-aside fill TTL (as the Larder keyspace: 1h)
  double ttl_jitter = 0.10;         // +- fraction (as the Larder keyspace: 10%)
  int cold = 5;
  int warm = 10;
  std::string csv;       // file for the per-second CSV (default stdout)
  bool pg_stats = true;  // count statements with pg_stat_statements
  bool csv_header = true;
};

[[noreturn]] void usage(int rc) {
  std::fprintf(rc ? stderr : stdout,
               "usage: larder_read_bench --mode larder|cache-aside|postgres [options]\n"
               "  --host H --port P     Larder (larder) or Redis (cache-aside) [127.0.0.1:6380]\n"
               "  --pg CONNINFO         libpq conninfo: needed by cache-aside and postgres;\n"
               "                        also used (every mode) to count statements via\n"
               "                        pg_stat_statements\n"
               "  --pg-admin CONNINFO   conninfo for pg_stat_statements (needs a role that may\n"
               "                        call pg_stat_statements_reset) [--pg]\n"
               "  --table T             [public.items]      --key-prefix P [item:]\n"
               "  --rows N [1000000]    ids 1..N            --clients C [50]\n"
               "  --duration S [30]     or --requests R (bounded by --max-seconds [600])\n"
               "  --theta X [0.99]      --no-scramble       --seed N [42]\n"
               "  --sampler exact|gray  zipf by rejection-inversion (exact) [exact] or\n"
               "                        Gray et al./YCSB (approximate for ranks 3..10)\n"
               "  --ttl-ms MS [3600000] --ttl-jitter F [0.1] cache-aside fill TTL\n"
               "  --cold S [5] --warm S [10]  phase lengths for the summary\n"
               "  --csv FILE            per-second CSV here instead of stdout\n"
               "  --no-csv-header       --no-pg-stats\n");
  std::exit(rc);
}

Options parseArgs(int argc, char** argv) {
  Options o;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", argv[i]);
      usage(2);
    }
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--mode") {
      o.mode_name = need(i);
      if (o.mode_name == "larder")
        o.mode = Mode::Larder;
      else if (o.mode_name == "cache-aside")
        o.mode = Mode::CacheAside;
      else if (o.mode_name == "postgres")
        o.mode = Mode::Postgres;
      else
        usage(2);
    } else if (a == "--host")
      o.host = need(i);
    else if (a == "--port")
      o.port = std::stoi(need(i));
    else if (a == "--pg")
      o.pg = need(i);
    else if (a == "--pg-admin")
      o.pg_admin = need(i);
    else if (a == "--table")
      o.table = need(i);
    else if (a == "--key-prefix")
      o.key_prefix = need(i);
    else if (a == "--rows")
      o.rows = std::stoull(need(i));
    else if (a == "--clients")
      o.clients = std::stoi(need(i));
    else if (a == "--duration")
      o.duration = std::stod(need(i));
    else if (a == "--requests")
      o.requests = std::stoull(need(i));
    else if (a == "--max-seconds")
      o.max_seconds = std::stoi(need(i));
    else if (a == "--theta")
      o.theta = std::stod(need(i));
    else if (a == "--no-scramble")
      o.scramble = false;
    else if (a == "--sampler") {
      const std::string m = need(i);
      if (m == "gray")
        o.gray = true;
      else if (m == "exact")
        o.gray = false;
      else
        usage(2);
    } else if (a == "--seed")
      o.seed = std::stoull(need(i));
    else if (a == "--ttl-ms")
      o.ttl_ms = std::stoll(need(i));
    else if (a == "--ttl-jitter")
      o.ttl_jitter = std::stod(need(i));
    else if (a == "--cold")
      o.cold = std::stoi(need(i));
    else if (a == "--warm")
      o.warm = std::stoi(need(i));
    else if (a == "--csv")
      o.csv = need(i);
    else if (a == "--no-csv-header")
      o.csv_header = false;
    else if (a == "--no-pg-stats")
      o.pg_stats = false;
    else if (a == "-h" || a == "--help")
      usage(0);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      usage(2);
    }
  }
  if (o.rows < 2 || o.clients < 1 || o.theta <= 0 || o.theta == 1.0 || o.max_seconds < 1 ||
      (o.requests == 0 && o.duration <= 0)) {
    std::fprintf(stderr, "bad option values\n");
    usage(2);
  }
  if (o.mode != Mode::Larder && o.pg.empty()) {
    std::fprintf(stderr, "--pg is needed for mode %s\n", o.mode_name.c_str());
    usage(2);
  }
  if (o.pg_admin.empty()) o.pg_admin = o.pg;
  if (o.requests == 0 && o.duration > o.max_seconds) o.max_seconds = int(std::ceil(o.duration));
  return o;
}

// ------------------------------------------------------------------ random + zipf

struct Rng {  // xoshiro256**
  std::uint64_t s[4];
  static std::uint64_t splitmix(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  explicit Rng(std::uint64_t seed) {
    for (auto& w : s) w = splitmix(seed);
  }
  std::uint64_t next() {
    const std::uint64_t r = std::rotl(s[1] * 5, 7) * 9;
    const std::uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = std::rotl(s[3], 45);
    return r;
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

class Zipf {
 public:
  enum class Method { RejectionInversion, Gray };
  Zipf(std::uint64_t n, double theta, Method m) : n_(n), theta_(theta), method_(m) {
    zetan_ = zeta(n, theta);
    // Gray et al. / YCSB
    const double zeta2 = zeta(2, theta);
    alpha_ = 1.0 / (1.0 - theta);
    eta_ = (1.0 - std::pow(2.0 / double(n), 1.0 - theta)) / (1.0 - zeta2 / zetan_);
    half_pow_theta_ = 1.0 + std::pow(0.5, theta);
    // Rejection-inversion
    h_x1_ = hIntegral(1.5) - 1.0;
    h_n_ = hIntegral(double(n) + 0.5);
    s_ = 2.0 - hIntegralInverse(hIntegral(2.5) - h(2.0));
  }
  // Rank in [0, n), 0 the most popular.
  std::uint64_t next(Rng& rng) const {
    return method_ == Method::Gray ? nextGray(rng) : nextRejectionInversion(rng);
  }
  // Exact probability of rank r.
  double probability(std::uint64_t r) const {
    return 1.0 / std::pow(double(r + 1), theta_) / zetan_;
  }

 private:
  // Gray et al., SIGMOD '94 (YCSB's ZipfianGenerator): one uniform, no loop;
  // approximate for the ranks after the first two (rank 2 ~19% too likely at
  // theta 0.99).
  std::uint64_t nextGray(Rng& rng) const {
    const double u = rng.uniform();
    const double uz = u * zetan_;
    if (uz < 1.0) return 0;
    if (uz < half_pow_theta_) return 1;
    auto r = std::uint64_t(double(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
    return std::min(r, n_ - 1);
  }
  // Hoermann & Derflinger, "Rejection-inversion to generate variates from
  // monotone discrete distributions" (1996): exact P(k) ~ k^-theta, k in 1..n,
  // a few percent of draws rejected.
  std::uint64_t nextRejectionInversion(Rng& rng) const {
    for (;;) {
      const double u = h_n_ + rng.uniform() * (h_x1_ - h_n_);
      const double x = hIntegralInverse(u);
      auto k = std::int64_t(x + 0.5);
      k = std::clamp<std::int64_t>(k, 1, std::int64_t(n_));
      if (double(k) - x <= s_ || u >= hIntegral(double(k) + 0.5) - h(double(k)))
        return std::uint64_t(k - 1);
    }
  }
  static double helper1(double x) {  // log1p(x) / x
    return std::abs(x) > 1e-8 ? std::log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
  }
  static double helper2(double x) {  // expm1(x) / x
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
  static double zeta(std::uint64_t n, double theta) {
    double sum = 0;
    for (std::uint64_t i = n; i >= 1; --i)
      sum += 1.0 / std::pow(double(i), theta);  // small terms first
    return sum;
  }
  std::uint64_t n_;
  double theta_;
  Method method_;
  double zetan_, alpha_, eta_, half_pow_theta_;
  double h_x1_, h_n_, s_;
};

__extension__ typedef unsigned __int128 u128;

// Bijection of [0, n): r -> (a*r + b) mod n with gcd(a, n) = 1.
class Permutation {
 public:
  Permutation(std::uint64_t n, std::uint64_t seed, bool enabled) : n_(n), enabled_(enabled) {
    a_ = (0x9E3779B97F4A7C15ull ^ seed) % n;
    if (a_ < 2) a_ = 2;
    while (std::gcd(a_, n) != 1) ++a_;
    b_ = (seed * 0xD1B54A32D192ED03ull) % n;
  }
  std::uint64_t operator()(std::uint64_t r) const {
    if (!enabled_) return r;
    return std::uint64_t(u128(a_) * r % n_ + b_) % n_;
  }

 private:
  std::uint64_t n_, a_ = 1, b_ = 0;
  bool enabled_;
};

// ------------------------------------------------------------------ histogram

constexpr int kSubBits = 5;
constexpr std::uint64_t kSub = 1u << kSubBits;
constexpr int kBuckets = int((48 - kSubBits + 1) * kSub);  // up to 2^48 ns (~78 hours)

inline int bucketOf(std::uint64_t v) {
  if (v < kSub) return int(v);
  const int e = 63 - std::countl_zero(v);
  const int idx = int((e - kSubBits + 1) * kSub + ((v >> (e - kSubBits)) & (kSub - 1)));
  return std::min(idx, kBuckets - 1);
}
inline double bucketMid(int i) {  // representative value (ns)
  if (std::uint64_t(i) < kSub) return i;
  const int g = i / int(kSub), s = i % int(kSub);
  const int e = g + kSubBits - 1;
  const double lo = double((kSub + s) << (e - kSubBits));
  const double width = double(std::uint64_t(1) << (e - kSubBits));
  return lo + width / 2;
}

struct Hist {
  std::vector<std::uint64_t> b = std::vector<std::uint64_t>(kBuckets, 0);
  std::uint64_t n = 0;
  void add(const Hist& o) {
    for (int i = 0; i < kBuckets; ++i) b[i] += o.b[i];
    n += o.n;
  }
  double percentileUs(double p) const {  // p in [0, 100]
    if (n == 0) return 0;
    const auto rank = std::uint64_t(std::ceil(p / 100.0 * double(n)));
    std::uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += b[i];
      if (seen >= std::max<std::uint64_t>(rank, 1)) return bucketMid(i) / 1000.0;
    }
    return bucketMid(kBuckets - 1) / 1000.0;
  }
};

// Counters of the requests that completed in one second of the run.
struct Second {
  std::atomic<std::uint64_t> ops{0}, errors{0}, nils{0}, hits{0}, misses{0}, loads{0};
  std::atomic<std::uint64_t> hist[kBuckets];
  Second() {
    for (auto& h : hist) h.store(0, std::memory_order_relaxed);
  }
  Hist snapshot() const {
    Hist h;
    for (int i = 0; i < kBuckets; ++i) {
      h.b[i] = hist[i].load(std::memory_order_relaxed);
      h.n += h.b[i];
    }
    return h;
  }
};

// ------------------------------------------------------------------ shared state

struct Shared {
  const Options& opt;
  Zipf zipf;
  Permutation perm;
  std::unique_ptr<Second[]> seconds;
  int nseconds;
  std::vector<std::atomic<std::uint64_t>> seen;  // bitmap of ids asked for
  std::latch ready;
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::atomic<int> failed_clients{0};
  std::atomic<std::uint64_t> issued{0};
  Clock::time_point start{};
  Clock::time_point deadline{};

  explicit Shared(const Options& o)
      : opt(o),
        zipf(o.rows, o.theta, o.gray ? Zipf::Method::Gray : Zipf::Method::RejectionInversion),
        perm(o.rows, o.seed, o.scramble),
        seconds(new Second[std::size_t(o.max_seconds) + 1]),
        nseconds(o.max_seconds),
        seen((o.rows + 64) / 64),
        ready(o.clients) {
    for (auto& w : seen) w.store(0, std::memory_order_relaxed);
  }
  std::uint64_t distinct() const {
    std::uint64_t c = 0;
    for (const auto& w : seen) c += std::uint64_t(std::popcount(w.load(std::memory_order_relaxed)));
    return c;
  }
};

// ------------------------------------------------------------------ connections

redisContext* redisConnectTo(const Options& o, std::string& err) {
  timeval tv{5, 0};
  redisContext* c = redisConnectWithTimeout(o.host.c_str(), o.port, tv);
  if (c == nullptr || c->err) {
    err = c ? c->errstr : "out of memory";
    if (c) redisFree(c);
    return nullptr;
  }
  timeval rw{10, 0};  // a reply slower than this is an error, never a hang
  redisSetTimeout(c, rw);
  return c;
}

constexpr const char* kStmt = "larder_read_bench_get";

PGconn* pgConnectTo(const Options& o, std::string& err) {
  PGconn* pg = PQconnectdb(o.pg.c_str());
  if (PQstatus(pg) != CONNECTION_OK) {
    err = PQerrorMessage(pg);
    PQfinish(pg);
    return nullptr;
  }
  const std::string sql =
      "SELECT name, price, stock, updated_at FROM " + o.table + " WHERE id = $1";
  const Oid types[1] = {20};  // int8
  PGresult* r = PQprepare(pg, kStmt, sql.c_str(), 1, types);
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!ok) err = PQresultErrorMessage(r);
  PQclear(r);
  if (!ok) {
    PQfinish(pg);
    return nullptr;
  }
  return pg;
}

// ------------------------------------------------------------------ one client

enum class Outcome { Hit, Miss, Nil, Error, Plain };

class Client {
 public:
  // Keys and TTL jitter have their own generators: every mode draws the same
  // key sequence in every client thread.
  Client(Shared& sh, int index)
      : sh_(sh),
        o_(sh.opt),
        rng_(sh.opt.seed * 1000003 + std::uint64_t(index) + 1),
        jitter_rng_(~(sh.opt.seed * 1000003 + std::uint64_t(index) + 1)) {}
  ~Client() {
    if (redis_) redisFree(redis_);
    if (pg_) PQfinish(pg_);
  }

  bool connect(std::string& err) {
    if (o_.mode != Mode::Postgres && !(redis_ = redisConnectTo(o_, err))) return false;
    if (o_.mode != Mode::Larder && !(pg_ = pgConnectTo(o_, err))) return false;
    return true;
  }

  void run() {
    int broken = 0;
    while (!sh_.stop.load(std::memory_order_relaxed)) {
      if (o_.requests) {
        if (sh_.issued.fetch_add(1, std::memory_order_relaxed) >= o_.requests) break;
      } else if (Clock::now() >= sh_.deadline) {
        break;
      }
      const std::uint64_t id = sh_.perm(sh_.zipf.next(rng_)) + 1;
      auto& word = sh_.seen[id / 64];
      const std::uint64_t bit = std::uint64_t(1) << (id % 64);
      if (!(word.load(std::memory_order_relaxed) & bit))
        word.fetch_or(bit, std::memory_order_relaxed);

      const auto t0 = Clock::now();
      loaded_ = false;
      const Outcome out = request(id);
      const auto t1 = Clock::now();
      const auto sec = duration_cast<nanoseconds>(t1 - sh_.start).count() / 1'000'000'000;
      if (sec >= sh_.nseconds) break;
      if (!o_.requests && t1 > sh_.deadline) break;  // completed after the end: not counted
      Second& s = sh_.seconds[sec];
      s.ops.fetch_add(1, std::memory_order_relaxed);
      const auto ns = std::uint64_t(duration_cast<nanoseconds>(t1 - t0).count());
      s.hist[bucketOf(ns)].fetch_add(1, std::memory_order_relaxed);
      switch (out) {
        case Outcome::Hit:
          s.hits.fetch_add(1, std::memory_order_relaxed);
          break;
        case Outcome::Miss:
          s.misses.fetch_add(1, std::memory_order_relaxed);
          break;
        case Outcome::Nil:
          s.nils.fetch_add(1, std::memory_order_relaxed);
          break;
        case Outcome::Error:
          s.errors.fetch_add(1, std::memory_order_relaxed);
          break;
        case Outcome::Plain:
          break;
      }
      if (loaded_) s.loads.fetch_add(1, std::memory_order_relaxed);
      if (out == Outcome::Error) {
        if (++broken > 50 || !reconnectIfBroken()) {
          std::fprintf(stderr, "client: giving up after repeated errors: %s\n",
                       last_error_.c_str());
          sh_.failed_clients.fetch_add(1);
          break;
        }
      } else {
        broken = 0;
      }
    }
  }

 private:
  Outcome request(std::uint64_t id) {
    switch (o_.mode) {
      case Mode::Larder: {
        redisReply* r = hgetall(id);
        if (!r) return Outcome::Error;
        const Outcome out = r->type == REDIS_REPLY_ARRAY
                                ? (r->elements ? Outcome::Plain : Outcome::Nil)
                                : replyError(r);
        freeReplyObject(r);
        return out;
      }
      case Mode::CacheAside: {
        redisReply* r = hgetall(id);
        if (!r) return Outcome::Error;
        if (r->type != REDIS_REPLY_ARRAY) {
          const Outcome out = replyError(r);
          freeReplyObject(r);
          return out;
        }
        const bool hit = r->elements > 0;
        freeReplyObject(r);
        if (hit) return Outcome::Hit;
        return loadAndFill(id);
      }
      case Mode::Postgres: {
        PGresult* res = select(id);
        if (!res) return Outcome::Error;
        const bool found = PQntuples(res) == 1;
        PQclear(res);
        return found ? Outcome::Plain : Outcome::Nil;
      }
    }
    return Outcome::Error;
  }

  Outcome replyError(redisReply* r) {
    last_error_ =
        r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "unexpected reply type";
    return Outcome::Error;
  }

  redisReply* hgetall(std::uint64_t id) {
    key_ = o_.key_prefix + std::to_string(id);
    const char* argv[2] = {"HGETALL", key_.c_str()};
    const std::size_t len[2] = {7, key_.size()};
    auto* r = static_cast<redisReply*>(redisCommandArgv(redis_, 2, argv, len));
    if (!r) last_error_ = redis_->errstr;
    return r;
  }

  PGresult* select(std::uint64_t id) {
    loaded_ = true;
    const std::string ids = std::to_string(id);
    const char* vals[1] = {ids.c_str()};
    PGresult* res = PQexecPrepared(pg_, kStmt, 1, vals, nullptr, nullptr, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
      last_error_ = PQresultErrorMessage(res);
      PQclear(res);
      return nullptr;
    }
    return res;
  }

  // Cache-aside miss: SELECT, then HSET + PEXPIRE pipelined (one round trip).
  Outcome loadAndFill(std::uint64_t id) {
    PGresult* res = select(id);
    if (!res) return Outcome::Error;
    if (PQntuples(res) != 1) {
      PQclear(res);
      return Outcome::Nil;  // (no negative caching: every id exists here)
    }
    std::vector<const char*> argv{"HSET", key_.c_str()};
    std::vector<std::size_t> len{4, key_.size()};
    for (int c = 0; c < PQnfields(res); ++c) {
      if (PQgetisnull(res, 0, c)) continue;
      argv.push_back(PQfname(res, c));
      len.push_back(std::strlen(PQfname(res, c)));
      argv.push_back(PQgetvalue(res, 0, c));
      len.push_back(std::size_t(PQgetlength(res, 0, c)));
    }
    const double j = (jitter_rng_.uniform() * 2 - 1) * o_.ttl_jitter;
    const std::string ttl =
        std::to_string(std::max<std::int64_t>(1, std::int64_t(double(o_.ttl_ms) * (1 + j))));
    const char* eargv[3] = {"PEXPIRE", key_.c_str(), ttl.c_str()};
    const std::size_t elen[3] = {7, key_.size(), ttl.size()};
    redisAppendCommandArgv(redis_, int(argv.size()), argv.data(), len.data());
    redisAppendCommandArgv(redis_, 3, eargv, elen);
    PQclear(res);
    Outcome out = Outcome::Miss;
    for (int i = 0; i < 2; ++i) {
      void* p = nullptr;
      if (redisGetReply(redis_, &p) != REDIS_OK || !p) {
        last_error_ = redis_->errstr;
        return Outcome::Error;
      }
      auto* r = static_cast<redisReply*>(p);
      if (r->type == REDIS_REPLY_ERROR) out = replyError(r);
      freeReplyObject(r);
    }
    return out;
  }

  bool reconnectIfBroken() {
    std::string err;
    if (redis_ && redis_->err) {
      redisFree(redis_);
      redis_ = nullptr;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!(redis_ = redisConnectTo(o_, err))) {
        last_error_ = err;
        return false;
      }
    }
    if (pg_ && PQstatus(pg_) != CONNECTION_OK) {
      PQfinish(pg_);
      pg_ = nullptr;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!(pg_ = pgConnectTo(o_, err))) {
        last_error_ = err;
        return false;
      }
    }
    return true;
  }

  Shared& sh_;
  const Options& o_;
  Rng rng_;
  Rng jitter_rng_;
  redisContext* redis_ = nullptr;
  PGconn* pg_ = nullptr;
  std::string key_;
  std::string last_error_;
  bool loaded_ = false;
};

// ------------------------------------------------------------------ stats sources

struct LarderInfo {  // keyspace line of INFO larder
  std::uint64_t hits = 0, misses = 0, queries = 0, keys_queried = 0, joins = 0, fills = 0,
                fills_skipped = 0, errors = 0, timeouts = 0;
};

std::optional<LarderInfo> readLarderInfo(redisContext* c, const std::string& keyspace) {
  if (!c) return std::nullopt;
  auto* r = static_cast<redisReply*>(redisCommand(c, "INFO larder"));
  if (!r) return std::nullopt;
  std::optional<LarderInfo> out;
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
    const std::string text(r->str, r->len);
    const std::string tag = "keyspace_" + keyspace + ":";
    const auto at = text.find(tag);
    if (at != std::string::npos) {
      const auto end = text.find_first_of("\r\n", at);
      const std::string line = text.substr(at + tag.size(), end - at - tag.size());
      auto field = [&](const char* name) -> std::uint64_t {
        const std::string k = std::string(",") + name + "=";
        const std::string l = "," + line;
        const auto p = l.find(k);
        return p == std::string::npos ? 0 : std::strtoull(l.c_str() + p + k.size(), nullptr, 10);
      };
      LarderInfo li;
      li.hits = field("hits");
      li.misses = field("misses");
      li.queries = field("queries");
      li.keys_queried = field("keys_queried");
      li.joins = field("joins");
      li.fills = field("fills");
      li.fills_skipped = field("fills_skipped");
      li.errors = field("load_errors");
      li.timeouts = field("load_timeouts");
      out = li;
    }
  }
  freeReplyObject(r);
  return out;
}

struct PgStats {
  std::int64_t calls = -1, rows = -1;
};

// Statements that read the table, counted by pg_stat_statements (exact and
// immediate, unlike pg_stat_user_tables, whose counters lag by up to seconds).
class PgStatements {
 public:
  explicit PgStatements(const Options& o) {
    if (!o.pg_stats || o.pg_admin.empty()) return;
    conn_ = PQconnectdb(o.pg_admin.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::fprintf(stderr, "pg stats: %s", PQerrorMessage(conn_));
      close();
      return;
    }
    // The table name without schema, as a word, in any statement but our own.
    std::string t =
        o.table.substr(o.table.rfind('.') == std::string::npos ? 0 : o.table.rfind('.') + 1);
    filter_ = "query ~* '\\m" + t + "\\M' AND query !~* 'pg_stat_statements'";
    PGresult* r = PQexec(conn_, "SELECT pg_stat_statements_reset()");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      std::fprintf(stderr,
                   "pg stats: pg_stat_statements unavailable (%s): statements not counted\n",
                   PQresultErrorMessage(r));
      PQclear(r);
      close();
      return;
    }
    PQclear(r);
  }
  ~PgStatements() { close(); }
  PgStats read() {
    PgStats s;
    if (!conn_) return s;
    const std::string sql =
        "SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(rows), 0)::bigint FROM "
        "pg_stat_statements WHERE " +
        filter_;
    PGresult* r = PQexec(conn_, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
      s.calls = std::strtoll(PQgetvalue(r, 0, 0), nullptr, 10);
      s.rows = std::strtoll(PQgetvalue(r, 0, 1), nullptr, 10);
    }
    PQclear(r);
    return s;
  }

 private:
  void close() {
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
  }
  PGconn* conn_ = nullptr;
  std::string filter_;
};

// ------------------------------------------------------------------ report

struct Phase {
  std::uint64_t ops = 0, hits = 0, misses = 0, loads = 0;
  double seconds = 0;
  Hist hist;
};

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parseArgs(argc, argv);
  Shared sh(o);
  std::fprintf(
      stderr,
      "larder_read_bench: mode=%s target=%s rows=%" PRIu64
      " clients=%d theta=%.2f scrambled=%s "
      "hottest key p=%.4f, top 1%% of keys p=%.3f\n",
      o.mode_name.c_str(),
      o.mode == Mode::Postgres ? "postgres" : (o.host + ":" + std::to_string(o.port)).c_str(),
      o.rows, o.clients, o.theta, o.scramble ? "yes" : "no", sh.zipf.probability(0), [&] {
        double p = 0;
        for (std::uint64_t r = 0; r < std::max<std::uint64_t>(1, o.rows / 100); ++r)
          p += sh.zipf.probability(r);
        return p;
      }());

  // Connect every client before the clock starts.
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::thread> threads;
  std::atomic<int> connect_failures{0};
  for (int i = 0; i < o.clients; ++i) clients.push_back(std::make_unique<Client>(sh, i));
  for (int i = 0; i < o.clients; ++i) {
    threads.emplace_back([&, i] {
      std::string err;
      const bool ok = clients[i]->connect(err);
      if (!ok) {
        if (connect_failures.fetch_add(1) == 0)
          std::fprintf(stderr, "connect failed: %s\n", err.c_str());
      }
      sh.ready.count_down();
      sh.go.wait(false);
      if (ok) clients[i]->run();
    });
  }
  sh.ready.wait();
  if (connect_failures.load()) {
    sh.stop = true;
    sh.go = true;
    sh.go.notify_all();
    for (auto& t : threads) t.join();
    std::fprintf(stderr, "%d of %d clients could not connect\n", connect_failures.load(),
                 o.clients);
    return 1;
  }

  std::string err;
  redisContext* info_conn = o.mode == Mode::Larder ? redisConnectTo(o, err) : nullptr;
  std::optional<LarderInfo> info0 = readLarderInfo(info_conn, "items");
  if (o.mode == Mode::Larder && !info0)
    std::fprintf(stderr, "warning: no keyspace_items line in INFO larder: no Larder hit ratio\n");
  PgStatements pgs(o);

  FILE* csv = stdout;
  if (!o.csv.empty() && !(csv = std::fopen(o.csv.c_str(), "w"))) {
    std::perror(o.csv.c_str());
    return 1;
  }
  if (o.csv_header)
    std::fprintf(
        csv,
        "mode,second,ops_per_s,errors,nils,hit_ratio,db_queries,db_keys,p50_us,p99_us,p999_us\n");

  sh.start = Clock::now();
  sh.deadline =
      o.requests
          ? sh.start + std::chrono::seconds(o.max_seconds)
          : sh.start + duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));
  sh.go = true;
  sh.go.notify_all();

  // Done flag, set once every client thread has returned.
  std::atomic<int> running{o.clients};
  std::thread joiner([&] {
    for (auto& t : threads) {
      t.join();
      running.fetch_sub(1);
    }
  });

  // One CSV row per second, written when that second is over.
  const int whole = o.requests ? o.max_seconds : int(std::ceil(o.duration));
  std::optional<LarderInfo> prev = info0;
  std::vector<double> hit_by_second;
  int reported = 0;
  double last_seconds = 0;
  for (int k = 0; k < whole; ++k) {
    const auto boundary = sh.start + std::chrono::seconds(k + 1) + std::chrono::milliseconds(20);
    while (Clock::now() < boundary && running.load() > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const bool finished = running.load() == 0;
    const double elapsed = std::chrono::duration<double>(Clock::now() - sh.start).count();
    // The length of this second that the run covered (the last one may be partial).
    double span = 1.0;
    if (!o.requests)
      span = std::min(1.0, o.duration - k);
    else if (finished)
      span = std::clamp(elapsed - k, 0.0, 1.0);
    if (span <= 0.05 && finished) break;
    const Second& s = sh.seconds[k];
    const Hist h = s.snapshot();
    std::optional<LarderInfo> now = readLarderInfo(info_conn, "items");
    std::string hit = "";
    std::uint64_t dbq = s.loads.load(), dbk = s.loads.load();
    if (o.mode == Mode::Larder) {
      if (now && prev) {
        const auto dh = now->hits - prev->hits, dm = now->misses - prev->misses;
        hit = dh + dm ? fmt("%.4f", double(dh) / double(dh + dm)) : "";
        dbq = now->queries - prev->queries;
        dbk = now->keys_queried - prev->keys_queried;
      }
      prev = now;
    } else if (o.mode == Mode::CacheAside) {
      const auto dh = s.hits.load(), dm = s.misses.load();
      hit = dh + dm ? fmt("%.4f", double(dh) / double(dh + dm)) : "";
    }
    hit_by_second.push_back(hit.empty() ? -1 : std::atof(hit.c_str()));
    std::fprintf(csv,
                 "%s,%d,%.0f,%" PRIu64 ",%" PRIu64 ",%s,%" PRIu64 ",%" PRIu64 ",%.0f,%.0f,%.0f\n",
                 o.mode_name.c_str(), k + 1, double(s.ops.load()) / std::max(span, 0.05),
                 s.errors.load(), s.nils.load(), hit.c_str(), dbq, dbk, h.percentileUs(50),
                 h.percentileUs(99), h.percentileUs(99.9));
    std::fflush(csv);
    std::fprintf(stderr, "  %-11s t=%3ds %8.0f req/s  hit=%-6s  db q/s=%" PRIu64 "  p99=%.0fus\n",
                 o.mode_name.c_str(), k + 1, double(s.ops.load()) / std::max(span, 0.05),
                 hit.empty() ? "-" : hit.c_str(), dbq, h.percentileUs(99));
    reported = k + 1;
    last_seconds = k + span;
    if (finished) break;
  }
  sh.stop = true;
  // Watchdog: clients that do not return within their 10 s I/O timeout + margin.
  const auto give_up = Clock::now() + std::chrono::seconds(30);
  while (running.load() > 0 && Clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (running.load() > 0) {
    std::fprintf(stderr, "watchdog: %d clients did not stop; exiting\n", running.load());
    std::fflush(nullptr);
    std::_Exit(3);
  }
  joiner.join();

  // Totals and phases.
  auto phase = [&](int from, int to) {  // seconds [from, to)
    Phase p;
    from = std::max(from, 0);
    to = std::min(to, reported);
    for (int k = from; k < to; ++k) {
      const Second& s = sh.seconds[k];
      p.ops += s.ops.load();
      p.hits += s.hits.load();
      p.misses += s.misses.load();
      p.loads += s.loads.load();
      p.hist.add(s.snapshot());
    }
    p.seconds = std::max(0.0, std::min(double(to), last_seconds) - from);
    return p;
  };
  const Phase all = phase(0, reported);
  const Phase cold = phase(0, o.cold);
  const Phase warm = phase(reported - o.warm, reported);
  std::uint64_t errors = 0, nils = 0;
  for (int k = 0; k < reported; ++k) {
    errors += sh.seconds[k].errors.load();
    nils += sh.seconds[k].nils.load();
  }
  const std::optional<LarderInfo> info1 = readLarderInfo(info_conn, "items");
  const PgStats pg = pgs.read();
  const std::uint64_t distinct = sh.distinct();

  double hit_end = -1, hit_warm = -1;
  if (!hit_by_second.empty()) hit_end = hit_by_second.back();
  if (o.mode == Mode::CacheAside) {
    if (warm.hits + warm.misses) hit_warm = double(warm.hits) / double(warm.hits + warm.misses);
  } else if (o.mode == Mode::Larder) {
    double sum = 0;
    int n = 0;
    for (int k = std::max(0, int(hit_by_second.size()) - o.warm); k < int(hit_by_second.size());
         ++k)
      if (hit_by_second[k] >= 0) sum += hit_by_second[k], ++n;
    if (n) hit_warm = sum / n;
  }
  auto rate = [](const Phase& p) { return p.seconds > 0 ? double(p.ops) / p.seconds : 0.0; };
  auto opt = [](double v, const char* f) { return v < 0 ? std::string("-") : fmt(f, v); };

  std::string line =
      "SUMMARY mode=" + o.mode_name + " rows=" + std::to_string(o.rows) +
      " clients=" + std::to_string(o.clients) + " theta=" + fmt("%.2f", o.theta) +
      " scrambled=" + (o.scramble ? "yes" : "no") + " sampler=" + (o.gray ? "gray" : "exact") +
      " seconds=" + fmt("%.2f", last_seconds) + " ops=" + std::to_string(all.ops) +
      " errors=" + std::to_string(errors) + " nils=" + std::to_string(nils) +
      " tput=" + fmt("%.0f", rate(all)) + " cold_tput=" + fmt("%.0f", rate(cold)) +
      " warm_tput=" + fmt("%.0f", rate(warm)) +
      " p50_us=" + fmt("%.0f", all.hist.percentileUs(50)) +
      " p99_us=" + fmt("%.0f", all.hist.percentileUs(99)) +
      " p999_us=" + fmt("%.0f", all.hist.percentileUs(99.9)) +
      " cold_p50_us=" + fmt("%.0f", cold.hist.percentileUs(50)) +
      " cold_p99_us=" + fmt("%.0f", cold.hist.percentileUs(99)) +
      " cold_p999_us=" + fmt("%.0f", cold.hist.percentileUs(99.9)) +
      " warm_p50_us=" + fmt("%.0f", warm.hist.percentileUs(50)) +
      " warm_p99_us=" + fmt("%.0f", warm.hist.percentileUs(99)) +
      " warm_p999_us=" + fmt("%.0f", warm.hist.percentileUs(99.9)) +
      " hit_ratio_end=" + opt(hit_end, "%.4f") + " hit_ratio_warm=" + opt(hit_warm, "%.4f") +
      " pg_queries=" + std::to_string(pg.calls) + " pg_rows=" + std::to_string(pg.rows) +
      " distinct_keys=" + std::to_string(distinct) + " client_loads=" + std::to_string(all.loads) +
      " hottest_id=" + std::to_string(sh.perm(0) + 1);
  if (o.mode == Mode::Larder && info0 && info1) {
    line += " larder_hits=" + std::to_string(info1->hits - info0->hits) +
            " larder_misses=" + std::to_string(info1->misses - info0->misses) +
            " larder_queries=" + std::to_string(info1->queries - info0->queries) +
            " larder_keys_queried=" + std::to_string(info1->keys_queried - info0->keys_queried) +
            " larder_joins=" + std::to_string(info1->joins - info0->joins) +
            " larder_fills=" + std::to_string(info1->fills - info0->fills) +
            " larder_fills_skipped=" + std::to_string(info1->fills_skipped - info0->fills_skipped) +
            " larder_load_errors=" + std::to_string(info1->errors - info0->errors) +
            " larder_load_timeouts=" + std::to_string(info1->timeouts - info0->timeouts);
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double cpu = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                     double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  line += " client_cpu_s=" + fmt("%.1f", cpu);
  line += " failed_clients=" + std::to_string(sh.failed_clients.load());
  std::printf("%s\n", line.c_str());
  if (csv != stdout) std::fclose(csv);
  if (info_conn) redisFree(info_conn);
  return sh.failed_clients.load() ? 1 : 0;
}
