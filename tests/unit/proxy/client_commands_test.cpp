// CLIENT REPLY, KILL, LIST, PAUSE, MONITOR and the out-of-band SCRIPT KILL,
// without sockets.
#include "larder/proxy/clients.hpp"
#include "pipeline_fixture.hpp"

using namespace larder;
using namespace larder::proxy;
using namespace larder::proxy::testing;
using Flow = Pipeline::Flow;

TEST_CASE("CLIENT REPLY OFF, ON and SKIP drop replies in order, pipelining intact", "[proxy]") {
  Fixture f(false);
  f.send({"SET", "a", "1"});
  CHECK(f.send({"CLIENT", "REPLY", "OFF"}) == Flow::Continue);
  f.send({"SET", "b", "2"});  // still sent to Redis, its reply dropped
  f.send({"PING"});           // answered here, dropped too
  f.send({"CLIENT", "REPLY", "ON"});
  f.send({"GET", "b"});
  f.send({"CLIENT", "REPLY", "SKIP"});
  f.send({"GET", "a"});  // skipped
  f.send({"GET", "b"});
  REQUIRE(f.backend.sent.size() == 5);
  // Redis answers out of the order they were sent in; nothing overtakes.
  f.reply(f.backend.sent[4].tag, "$1\r\n2\r\n");
  f.reply(f.backend.sent[3].tag, "$1\r\n1\r\n");
  f.reply(f.backend.sent[2].tag, "$1\r\n2\r\n");
  CHECK(f.out().empty());
  f.reply(f.backend.sent[1].tag, "+OK\r\n");
  CHECK(f.out().empty());
  f.reply(f.backend.sent[0].tag, "+OK\r\n");
  CHECK(f.out() == "+OK\r\n+OK\r\n$1\r\n2\r\n$1\r\n2\r\n");
  CHECK(f.pipeline.outstanding() == 0);
}

TEST_CASE("CLIENT REPLY ON answers even right after SKIP; RESET clears OFF", "[proxy]") {
  Fixture f(false);
  f.send({"CLIENT", "REPLY", "SKIP"});
  f.send({"CLIENT", "REPLY", "ON"});
  CHECK(f.out() == "+OK\r\n");
  f.send({"CLIENT", "REPLY", "OFF"});
  f.send({"PING"});
  f.send({"RESET"});
  f.send({"PING"});
  CHECK(f.out() == "+RESET\r\n+PONG\r\n");
  f.send({"CLIENT", "REPLY", "MAYBE"});
  CHECK(f.out() == err("ERR syntax error"));
}

TEST_CASE("CLIENT KILL parses Redis' filters and errors; the shell kills", "[proxy]") {
  Fixture f(false);
  f.send({"CLIENT", "KILL", "ID", "0"});
  f.send({"CLIENT", "KILL", "ID", "x"});
  f.send({"CLIENT", "KILL", "TYPE", "bogus"});
  f.send({"CLIENT", "KILL", "USER", "nobody"});
  f.send({"CLIENT", "KILL", "SKIPME", "maybe"});
  f.send({"CLIENT", "KILL", "ID", "10", "extra"});
  CHECK(f.out() == err("ERR client-id should be greater than 0") +
                       err("ERR client-id should be greater than 0") +
                       err("ERR Unknown client type 'bogus'") + err("ERR No such user 'nobody'") +
                       err("ERR syntax error") + err("ERR syntax error"));
  CHECK(f.admin.kills.empty());

  CHECK(f.send({"CLIENT", "KILL", "ADDR", "127.0.0.1:9", "LADDR", "127.0.0.1:6380", "TYPE",
                "pubsub", "USER", "default", "ID", "12"}) == Flow::Continue);
  REQUIRE(f.admin.kills.size() == 1);
  const auto& kill = f.admin.kills.back();
  CHECK(*kill.filter.addr == "127.0.0.1:9");
  CHECK(*kill.filter.laddr == "127.0.0.1:6380");
  CHECK(*kill.filter.type == ClientType::PubSub);
  CHECK(*kill.filter.user == "default");
  CHECK(kill.filter.ids == std::vector<std::uint64_t>{12});
  CHECK(kill.filter.skip == 7);  // the shell never kills the asking client itself
  CHECK_FALSE(kill.self);
  CHECK_FALSE(kill.old_form);
  f.reply(kill.tag, ":0\r\n");
  CHECK(f.out() == ":0\r\n");
}

TEST_CASE("CLIENT KILL of the asking client closes it after the reply", "[proxy]") {
  Fixture f(false);
  // The old form may kill the asking client; the new one only with SKIPME no.
  CHECK(f.send({"CLIENT", "KILL", "ID", "7"}) == Flow::Continue);
  CHECK_FALSE(f.admin.kills.back().self);
  CHECK(f.send({"CLIENT", "KILL", "127.0.0.1:1234"}) == Flow::Stop);
  CHECK(f.admin.kills.back().self);
  CHECK(f.admin.kills.back().old_form);
  CHECK(f.pipeline.end() == Pipeline::End::AfterReplies);
}

TEST_CASE("CLIENT LIST: this client's line now, the others' from the shell", "[proxy]") {
  Fixture f(false);
  f.send({"CLIENT", "SETNAME", "me"});
  f.send({"CLIENT", "LIST", "TYPE", "normal"});
  REQUIRE(f.admin.lists.size() == 1);
  const std::string own = f.admin.lists[0].own;
  CHECK(own.rfind("id=7 addr=127.0.0.1:1234 laddr=127.0.0.1:6380 ", 0) == 0);
  CHECK(own.find(" name=me ") != std::string::npos);
  CHECK(own.find(" flags=N ") != std::string::npos);
  CHECK(own.find(" cmd=client|list ") != std::string::npos);
  CHECK(f.admin.lists[0].filter.skip == 7);
  f.reply(f.admin.lists[0].tag, "$0\r\n\r\n");
  f.send({"CLIENT", "LIST", "TYPE", "pubsub"});
  REQUIRE(f.admin.lists.size() == 2);
  CHECK(f.admin.lists[1].own.empty());  // not a subscriber
  f.reply(f.admin.lists[1].tag, "$0\r\n\r\n");
  f.send({"CLIENT", "LIST", "ID", "x"});
  f.send({"CLIENT", "LIST", "bogus"});
  CHECK(f.out() ==
        "+OK\r\n$0\r\n\r\n$0\r\n\r\n" + err("ERR Invalid client ID") + err("ERR syntax error"));
}

TEST_CASE("CLIENT PAUSE WRITE holds writes and scripts, not reads", "[proxy]") {
  Fixture f(false);
  f.send({"CLIENT", "PAUSE", "60000", "WRITE"});
  CHECK(f.out() == "+OK\r\n");
  CHECK(f.send({"GET", "k"}) == Flow::Continue);
  CHECK(f.send({"EVAL", "return 1", "0"}) == Flow::Paused);  // may replicate
  CHECK(f.pipeline.pauseLeft() > std::chrono::seconds(50));
  CHECK(f.retry() == Flow::Paused);
  f.admin.pause_state.unpause();
  CHECK(f.retry() == Flow::Continue);
  CHECK(f.backend.sent.size() == 2);
}

TEST_CASE("CLIENT PAUSE ALL holds every command; bad arguments are Redis' errors", "[proxy]") {
  Fixture f(false);
  f.send({"CLIENT", "PAUSE", "60000"});
  CHECK(f.send({"PING"}) == Flow::Paused);
  f.admin.pause_state.unpause();
  CHECK(f.retry() == Flow::Continue);
  f.send({"CLIENT", "PAUSE", "x"});
  f.send({"CLIENT", "PAUSE", "-1"});
  f.send({"CLIENT", "PAUSE", "10", "SOME"});
  CHECK(f.out() == "+OK\r\n+PONG\r\n" + err("ERR timeout is not an integer or out of range") +
                       err("ERR timeout is negative") +
                       err("ERR CLIENT PAUSE mode must be WRITE or ALL"));
  CHECK(f.admin.pause_state.idle());
}

TEST_CASE("SCRIPT KILL goes out of band, after the client's own requests", "[proxy]") {
  Fixture f(false);
  f.send({"EVAL", "while true do end", "0"});
  CHECK(f.backend.scripts == std::vector<std::uint64_t>{f.backend.sent.back().tag});
  CHECK(f.send({"SCRIPT", "KILL"}) == Flow::Barrier);  // its own EVAL comes first
  f.replyLast("-ERR Script killed\r\n");
  CHECK(f.retry() == Flow::Continue);
  CHECK(f.backend.sent.back().conn == Conn::OutOfBand);
  f.replyLast("-NOTBUSY No scripts in execution right now.\r\n");
  CHECK(f.out() == err("ERR Script killed") + err("NOTBUSY No scripts in execution right now."));
}

TEST_CASE("while Redis is busy with another client's script, local answers say so", "[proxy]") {
  Fixture f(false);
  f.backend.busy =
      "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
  f.send({"PING"});
  f.send({"ECHO", "x"});
  f.send({"HELLO"});  // allowed while busy in Redis too
  const std::string out = f.out();
  CHECK(out.rfind(err(f.backend.busy) + err(f.backend.busy), 0) == 0);
  CHECK(out.find("%7") == std::string::npos);
  CHECK(out.find("server") != std::string::npos);
}

TEST_CASE("CLIENT UNBLOCK: Redis' checks here, the blocked connection found by the shell",
          "[proxy]") {
  Fixture f(false);
  f.send({"CLIENT", "UNBLOCK", "5", "maybe"});
  CHECK(f.out() == "-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n");
  f.send({"CLIENT", "UNBLOCK", "asd"});
  CHECK(f.out() == "-ERR value is not an integer or out of range\r\n");
  f.send({"CLIENT", "UNBLOCK", "-3"});
  CHECK(f.out() == ":0\r\n");
  CHECK(f.admin.unblocks.empty());
  f.send({"CLIENT", "UNBLOCK", "42", "error"});
  REQUIRE(f.admin.unblocks.size() == 1);
  CHECK(f.admin.unblocks[0].id == 42);
  CHECK(f.admin.unblocks[0].error);
  CHECK(f.backend.sent.empty());  // never on this client's own connections
  f.reply(f.admin.unblocks[0].tag, ":1\r\n");
  CHECK(f.out() == ":1\r\n");
}
