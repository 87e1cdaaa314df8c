#pragma once
// A pipeline with fake ports: requests go in as bytes (parsed by the real
// RequestParser), what the pipeline sends is recorded, and the test answers
// each tag as Redis or the read-through side would. No sockets, no threads.
#include <catch2/catch.hpp>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "../cache/test_keyspaces.hpp"
#include "larder/pg/catalog.hpp"
#include "larder/proxy/pipeline.hpp"
#include "larder/resp/reply_writer.hpp"

namespace larder::proxy::testing {

inline const std::string kHello3 = "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";

struct Sent {
  Conn conn;
  std::string bytes;
  std::uint64_t tag;
};

struct FakeBackend : BackendPort {
  std::vector<Sent> sent;
  std::vector<std::string> streamed;
  bool pinned = false, stream = false, lost = false, refuse_pin = false, full = false;
  Stream stream_mode = Stream::Off;
  int pins = 0;
  std::vector<bool> unpins;            // `clean` of each unpin
  std::vector<std::uint64_t> scripts;  // watchScript tags
  std::string busy;                    // redisBusy()

  void send(Conn conn, std::string_view request, std::uint64_t tag) override {
    REQUIRE((conn != Conn::Pinned || pinned));
    sent.push_back({conn, std::string(request), tag});
  }
  void sendOnStream(std::string_view request) override {
    REQUIRE(pinned);
    streamed.emplace_back(request);
  }
  bool saturated(Conn) const override { return full; }
  bool pin() override {
    if (refuse_pin) return false;
    pinned = true;
    ++pins;
    return true;
  }
  void setStream(Stream mode) override {
    stream_mode = mode;
    stream = mode != Stream::Off;
  }
  void unpin(bool clean) override {
    pinned = stream = false;
    unpins.push_back(clean);
  }
  bool pinLost() const override { return lost; }
  void watchScript(std::uint64_t tag) override { scripts.push_back(tag); }
  std::string_view redisBusy() const override { return busy; }
};

struct FakeReads : ReadThroughPort {
  struct Read {
    Conn conn;
    commands::ReadKind kind;
    std::vector<std::string> args;
    std::uint64_t tag;
  };
  struct Write {
    Conn conn;
    cache::WritePlan plan;
    std::uint64_t tag;
  };
  std::vector<Read> reads;
  std::vector<Write> writes;
  std::map<std::string, std::string, std::less<>> near;
  bool reorder = false;

  void read(Conn conn, commands::ReadKind kind, const std::vector<std::string_view>& args,
            std::vector<MappedKey>, std::uint64_t tag) override {
    reads.push_back({conn, kind, {args.begin(), args.end()}, tag});
  }
  const std::string* nearValue(const cache::Keyspace&, std::string_view key) override {
    auto it = near.find(key);
    return it == near.end() ? nullptr : &it->second;
  }
  void write(Conn conn, cache::WritePlan plan, std::uint64_t tag) override {
    writes.push_back({conn, std::move(plan), tag});
  }
  bool writeMayReorder(const cache::WritePlan&) const override { return reorder; }
};

// users: hash, user:{id}; notes: string, note:{id} (both bigint ids).
inline void addTestKeyspaces(cache::KeyspaceRegistry& registry) {
  for (cache::Keyspace& ks : cache::testing::testKeyspaces()) registry.add(std::move(ks));
}

struct FakeAdmin : AdminPort {
  config::Config cfg;
  cache::KeyspaceRegistry registry;
  WorkerStats worker_stats;
  std::vector<std::pair<std::string, std::uint64_t>> commands;  // what went to the services
  bool services = true;

  explicit FakeAdmin(bool with_keyspaces = false) {
    // Before any pipeline exists, as at start-up: a pipeline reads it once.
    if (with_keyspaces) addTestKeyspaces(registry);
    for (int i = 0; i < 4; ++i) {
      worker_stats.keyspaces.push_back(std::make_unique<KeyspaceCounters>());
    }
  }
  const config::Config& config() const override { return cfg; }
  const cache::KeyspaceRegistry& keyspaces() const override { return registry; }
  WorkerStats& stats() override { return worker_stats; }
  InfoFields infoFields(std::string_view) const override { return {{"x", "1"}}; }
  bool writesCommand(std::vector<std::string> args, std::uint64_t tag) override {
    commands.emplace_back("writes " + args[0], tag);
    return services;
  }
  bool invalidateCommand(std::vector<std::string> args, std::uint64_t tag) override {
    commands.emplace_back("invalidate " + args[0], tag);
    return services;
  }
  bool flushAll(bool all, std::uint64_t tag) override {
    commands.emplace_back(all ? "flushall" : "flushdb", tag);
    return services;
  }
  void reload(std::uint64_t tag) override { commands.emplace_back("reload", tag); }

  std::atomic<int> monitor_count{0};
  std::vector<std::string> monitor_lines;
  PauseState pause_state;
  struct ClientsCall {
    ClientFilter filter;
    std::string own;                      // LIST
    bool self = false, old_form = false;  // KILL
    std::uint64_t tag;
  };
  std::vector<ClientsCall> lists, kills;

  const std::atomic<int>& monitors() const override { return monitor_count; }
  void feedMonitors(std::string line) override { monitor_lines.push_back(std::move(line)); }
  PauseState& pause() override { return pause_state; }
  void clientList(ClientFilter filter, std::string own, std::uint64_t tag) override {
    lists.push_back({std::move(filter), std::move(own), false, false, tag});
  }
  void clientKill(ClientFilter filter, bool self, bool old_form, std::uint64_t tag) override {
    kills.push_back({std::move(filter), {}, self, old_form, tag});
  }
  struct UnblockCall {
    std::uint64_t id;
    bool error;
    std::uint64_t tag;
  };
  std::vector<UnblockCall> unblocks;
  void clientUnblock(std::uint64_t id, bool error, std::uint64_t tag) override {
    unblocks.push_back({id, error, tag});
  }
  struct RedirectCall {
    std::uint64_t id;
    std::uint64_t tag;
  };
  std::vector<RedirectCall> redirects;
  void clientRedirect(std::uint64_t id, std::uint64_t tag) override {
    redirects.push_back({id, tag});
  }
};

struct FakeClient : ClientPort {
  bool monitoring = false;
  ConnectionFacts facts() const override {
    ConnectionFacts f;
    f.peer = "127.0.0.1:1234";
    f.local = "127.0.0.1:6380";
    return f;
  }
  std::string_view peerAddress() const override { return "127.0.0.1:1234"; }
  void monitor(bool on) override { monitoring = on; }
};

class Fixture {
 public:
  explicit Fixture(bool keyspaces = true) : admin(keyspaces) {}

  FakeBackend backend;
  FakeReads reads;
  FakeAdmin admin;
  FakeClient client;
  Pipeline pipeline{Ports{backend, reads, admin, client}, 7};

  // Sends one request; returns its last Flow (Barrier/Saturated are returned
  // as they are: call retry() once the condition is met).
  Pipeline::Flow send(std::vector<std::string> args) {
    std::string bytes;
    std::vector<std::string_view> views(args.begin(), args.end());
    resp::appendMultibulk(bytes, views);
    input_.push_back(std::move(bytes));
    resp::RequestParser parser;
    requests_.emplace_back();
    REQUIRE(parser.parse(input_.back(), requests_.back()) == resp::ParseStatus::Complete);
    resolved_ = commands::Registry::get().resolve(requests_.back().args);
    pipeline.begin(requests_.back(), resolved_, std::chrono::steady_clock::now());
    return pipeline.step(requests_.back(), resolved_);
  }
  // Steps the last request again (after a Barrier or Saturated).
  Pipeline::Flow retry() { return pipeline.step(requests_.back(), resolved_); }

  void reply(std::uint64_t tag, std::string_view frame) { pipeline.complete(tag, frame); }
  // Answers the last request sent to the backend.
  std::uint64_t replyLast(std::string_view frame) {
    REQUIRE_FALSE(backend.sent.empty());
    const std::uint64_t tag = backend.sent.back().tag;
    reply(tag, frame);
    return tag;
  }
  // The output so far, taken.
  std::string out() { return std::exchange(pipeline.output(), {}); }
  std::string lastSentCommand() const {
    REQUIRE_FALSE(backend.sent.empty());
    return commandOf(backend.sent.back().bytes);
  }
  static std::string commandOf(const std::string& bytes) {
    resp::RequestParser parser;
    resp::Request r;
    REQUIRE(parser.parse(bytes, r) == resp::ParseStatus::Complete);
    std::string out;
    for (auto a : r.args) out += (out.empty() ? "" : " ") + std::string(a);
    return out;
  }

 private:
  std::deque<std::string> input_;
  std::deque<resp::Request> requests_;
  commands::Resolved resolved_;
};

inline std::string err(std::string_view text) { return resp::errorReply(text); }

}  // namespace larder::proxy::testing
