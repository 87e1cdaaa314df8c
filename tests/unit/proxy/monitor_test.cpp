// MONITOR: Redis' line format, redactions, and which commands are shown when.
#include "larder/proxy/monitor_line.hpp"
#include "larder/proxy/subscriptions.hpp"
#include "pipeline_fixture.hpp"

using namespace larder;
using namespace larder::proxy;
using namespace larder::proxy::testing;
using Flow = Pipeline::Flow;

namespace {

std::string argsPart(std::vector<std::string_view> args) {
  std::string out;
  appendMonitorArgs(out, commands::Registry::get().resolve(args).command, args);
  return out;
}

// The lines fed so far, without their timestamps.
std::vector<std::string> fed(Fixture& f) {
  std::vector<std::string> out;
  for (const std::string& line : f.admin.monitor_lines) {
    REQUIRE(line.rfind("+", 0) == 0);
    out.push_back(line.substr(line.find(' ') + 1, line.size() - line.find(' ') - 3));
  }
  f.admin.monitor_lines.clear();
  return out;
}

}  // namespace

TEST_CASE("MONITOR lines quote and escape as sdscatrepr", "[proxy]") {
  std::string out;
  appendRepr(out, std::string_view("a\"b\\c\n\r\t\a\b\x01\x7f\xe9 z", 15));
  CHECK(out == R"m("a\"b\\c\n\r\t\a\b\x01\x7f\xe9 z")m");
  const auto when =
      std::chrono::system_clock::time_point(std::chrono::microseconds(1700000000000042));
  CHECK(monitorLine(when, 3, "127.0.0.1:5", "\"GET\" \"k\"") ==
        "+1700000000.000042 [3 127.0.0.1:5] \"GET\" \"k\"\r\n");
}

TEST_CASE("MONITOR redacts what Redis redacts", "[proxy]") {
  CHECK(argsPart({"AUTH", "pw"}) == R"m("AUTH" "(redacted)")m");
  CHECK(argsPart({"auth", "user", "pw"}) == R"m("auth" "(redacted)" "(redacted)")m");
  CHECK(argsPart({"AUTH", "a", "b", "c"}) == R"m("AUTH" "a" "b" "c")m");  // a syntax error first
  CHECK(argsPart({"HELLO", "3", "SETNAME", "n", "AUTH", "u", "p"}) ==
        R"m("HELLO" "3" "SETNAME" "n" "AUTH" "(redacted)" "(redacted)")m");
  CHECK(argsPart({"HELLO", "3", "BOGUS", "AUTH", "u", "p"}) ==
        R"m("HELLO" "3" "BOGUS" "AUTH" "u" "p")m");
  CHECK(argsPart({"MIGRATE", "h", "1", "k", "0", "5", "COPY", "AUTH2", "u", "p"}) ==
        R"m("MIGRATE" "h" "1" "k" "0" "5" "COPY" "AUTH2" "(redacted)" "(redacted)")m");
  CHECK(argsPart({"MIGRATE", "h", "1", "", "0", "5", "AUTH", "p", "KEYS", "a"}) ==
        R"m("MIGRATE" "h" "1" "" "0" "5" "AUTH" "(redacted)" "KEYS" "a")m");
}

TEST_CASE("MONITOR shows what runs, when Redis would show it", "[proxy]") {
  Fixture f(false);
  f.send({"MONITOR"});
  CHECK(f.client.monitoring);
  CHECK(f.out() == "+OK\r\n");
  f.send({"MONITOR"});  // ignored, no reply
  CHECK(f.out().empty());
  f.admin.monitor_count = 1;
  f.send({"SET", "k", "v"});
  f.replyLast("+OK\r\n");
  f.send({"PING"});
  f.send({"NOSUCHCMD"});           // unknown: refused before it runs
  f.send({"GET"});                 // arity
  f.send({"CONFIG", "GET", "x"});  // admin: never shown
  f.replyLast("*0\r\n");
  CHECK(fed(f) == std::vector<std::string>{R"m([0 127.0.0.1:1234] "SET" "k" "v")m",
                                           R"m([0 127.0.0.1:1234] "PING")m"});
  f.pipeline.monitorLine("+1.000000 [0 x] \"GET\"\r\n");
  CHECK(f.out().find("+1.000000 [0 x] \"GET\"\r\n") != std::string::npos);
  for (const auto& sent : f.backend.sent) f.reply(sent.tag, "+OK\r\n");  // any still open
  CHECK(f.send({"RESET"}) == Pipeline::Flow::Continue);
  CHECK_FALSE(f.client.monitoring);
}

TEST_CASE("MONITOR: SELECT shows its db, EXEC its commands first", "[proxy]") {
  Fixture f(false);
  f.admin.monitor_count = 1;
  f.send({"SELECT", "5"});
  CHECK(fed(f).empty());  // Redis' answer first
  f.replyLast("+OK\r\n");
  CHECK(fed(f) == std::vector<std::string>{R"m([5 127.0.0.1:1234] "SELECT" "5")m"});
  f.send({"MULTI"});
  f.replyLast("+OK\r\n");
  f.send({"INCR", "a"});
  f.replyLast("+QUEUED\r\n");
  CHECK(fed(f) == std::vector<std::string>{R"m([5 127.0.0.1:1234] "MULTI")m"});
  f.send({"EXEC"});
  f.replyLast("*1\r\n:1\r\n");
  CHECK(fed(f) == std::vector<std::string>{R"m([5 127.0.0.1:1234] "INCR" "a")m",
                                           R"m([5 127.0.0.1:1234] "EXEC")m"});
  // A transaction that did not run shows EXEC alone.
  f.send({"MULTI"});
  f.replyLast("+OK\r\n");
  f.send({"INCR", "a"});
  f.replyLast("+QUEUED\r\n");
  f.send({"EXEC"});
  f.replyLast("*-1\r\n");
  CHECK(fed(f) == std::vector<std::string>{R"m([5 127.0.0.1:1234] "MULTI")m",
                                           R"m([5 127.0.0.1:1234] "EXEC")m"});
}

TEST_CASE("subscription counts come from Redis' confirmations", "[proxy]") {
  SubscriptionCounts c;
  CHECK(c.observe("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"));
  CHECK(c.observe(">3\r\n$10\r\npsubscribe\r\n$2\r\nb*\r\n:2\r\n"));
  CHECK(c.observe("*3\r\n$10\r\nssubscribe\r\n$1\r\ns\r\n:1\r\n"));
  CHECK((c.channels == 1 && c.patterns == 1 && c.shard == 1));
  CHECK_FALSE(c.observe("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"));
  CHECK(c.observe("*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n"));
  CHECK(c.observe("*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"));
  CHECK(c.observe(">3\r\n$12\r\nsunsubscribe\r\n_\r\n:0\r\n"));
  CHECK_FALSE(c.any());
}
