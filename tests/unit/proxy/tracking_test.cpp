// CLIENT TRACKING through the proxy (src/proxy/tracking.cpp): REDIRECT's
// Larder id mapped to the target's Redis id and back, RESP3 pushes on the
// tracking connection, the redirect target's connection.
#include "pipeline_fixture.hpp"

using namespace larder;
using namespace larder::proxy;
using namespace larder::proxy::testing;
using Flow = Pipeline::Flow;

TEST_CASE("TRACKING REDIRECT: the Larder id is sent as the target's Redis id", "[proxy]") {
  Fixture f(false);
  CHECK(f.send({"CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", "5", "PREFIX", "a"}) ==
        Flow::Barrier);
  CHECK(f.backend.pinned);
  REQUIRE(f.admin.redirects.size() == 1);
  CHECK(f.admin.redirects[0].id == 5);
  CHECK(f.backend.sent.empty());
  f.reply(f.admin.redirects[0].tag, ":42\r\n");
  CHECK(f.out().empty());  // the lookup's answer is Larder's own
  CHECK(f.pipeline.outstanding() == 0);
  CHECK(f.retry() == Flow::Continue);
  CHECK(f.lastSentCommand() == "CLIENT TRACKING on BCAST REDIRECT 42 PREFIX a");
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  f.replyLast("+OK\r\n");
  CHECK(f.out() == "+OK\r\n");
  CHECK(f.pipeline.state().sticky);

  // Redis' id comes back as the Larder id the client named.
  f.send({"CLIENT", "GETREDIR"});
  f.replyLast(":42\r\n");
  CHECK(f.out() == ":5\r\n");
  f.send({"CLIENT", "TRACKINGINFO"});
  f.replyLast(
      "*6\r\n$5\r\nflags\r\n*2\r\n$2\r\non\r\n$5\r\nbcast\r\n$8\r\nredirect\r\n:42\r\n"
      "$8\r\nprefixes\r\n*1\r\n$1\r\na\r\n");
  CHECK(f.out() ==
        "*6\r\n$5\r\nflags\r\n*2\r\n$2\r\non\r\n$5\r\nbcast\r\n$8\r\nredirect\r\n:5\r\n"
        "$8\r\nprefixes\r\n*1\r\n$1\r\na\r\n");
  // -1 and 0 (off, no redirect) are Redis' own.
  f.send({"CLIENT", "GETREDIR"});
  f.replyLast(":-1\r\n");
  CHECK(f.out() == ":-1\r\n");
}

TEST_CASE("TRACKING REDIRECT to no such client: Redis answers with its own text", "[proxy]") {
  Fixture f(false);
  CHECK(f.send({"CLIENT", "TRACKING", "on", "REDIRECT", "99"}) == Flow::Barrier);
  f.reply(f.admin.redirects.at(0).tag, ":0\r\n");
  CHECK(f.retry() == Flow::Continue);
  // An id Redis never gives out, so its checks run in its order.
  CHECK(f.lastSentCommand() == "CLIENT TRACKING on REDIRECT 9223372036854775807");
  // Not an integer, or not positive: no lookup.
  f.replyLast("-ERR The client ID you want redirect to does not exist\r\n");
  f.out();
  CHECK(f.send({"CLIENT", "TRACKING", "on", "REDIRECT", "x"}) == Flow::Continue);
  CHECK(f.lastSentCommand() == "CLIENT TRACKING on REDIRECT x");
  f.replyLast("-ERR value is not an integer or out of range\r\n");
  CHECK(f.send({"CLIENT", "TRACKING", "on", "REDIRECT", "0"}) == Flow::Continue);
  CHECK(f.lastSentCommand() == "CLIENT TRACKING on REDIRECT 9223372036854775807");
  CHECK(f.admin.redirects.size() == 1);
  // A PREFIX called "redirect" is a prefix.
  f.replyLast("-ERR The client ID you want redirect to does not exist\r\n");
  CHECK(f.send({"CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "redirect", "NOLOOP"}) ==
        Flow::Continue);
  CHECK(f.lastSentCommand() == "CLIENT TRACKING on BCAST PREFIX redirect NOLOOP");
}

TEST_CASE("RESP3 tracking: the tracking connection speaks RESP3, pushes stream", "[proxy]") {
  Fixture f(false);
  f.send({"HELLO", "3"});
  f.out();
  CHECK(f.send({"CLIENT", "TRACKING", "on", "REDIRECT", "5"}) == Flow::Barrier);
  REQUIRE(f.backend.sent.size() == 1);
  CHECK(f.backend.sent[0].bytes == kHello3);  // Larder's own, its reply unseen
  CHECK(f.backend.stream_mode == Stream::Pushes);
  f.reply(f.backend.sent[0].tag, "%7\r\n");
  f.reply(f.admin.redirects.at(0).tag, ":42\r\n");
  CHECK(f.retry() == Flow::Continue);
  f.replyLast("+OK\r\n");
  CHECK(f.out() == "+OK\r\n");
  // Replies on it are RESP3 already; pushes go straight through, and the
  // broken redirection names the Larder id.
  f.send({"GET", "k"});
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  f.replyLast("_\r\n");
  f.pipeline.streamFrame(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n");
  f.pipeline.streamFrame(">2\r\n$21\r\ntracking-redir-broken\r\n:42\r\n");
  CHECK(f.out() ==
        "_\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
        ">2\r\n$21\r\ntracking-redir-broken\r\n:5\r\n");

  // HELLO 2: the connection follows; Larder's HELLO reply once Redis switched.
  CHECK(f.send({"HELLO", "2"}) == Flow::Continue);
  CHECK(f.lastSentCommand() == "HELLO 2");
  f.replyLast("*14\r\n");
  CHECK(f.out().find("proto\r\n:2\r\n") != std::string::npos);
  CHECK(f.backend.stream_mode == Stream::Off);
  CHECK_FALSE(f.pipeline.state().push);
  f.send({"GET", "k"});
  f.replyLast("$-1\r\n");
  CHECK(f.out() == "$-1\r\n");
  // And back to RESP3.
  CHECK(f.send({"HELLO", "3"}) == Flow::Continue);
  CHECK(f.lastSentCommand() == "HELLO 3");
  CHECK(f.backend.stream_mode == Stream::Pushes);
  f.replyLast("%7\r\n");
  CHECK(f.out().starts_with("%7\r\n$6\r\nserver"));
  CHECK(f.backend.unpins.empty());
}

TEST_CASE("A redirect target keeps its connection; QUIT goes to Redis", "[proxy]") {
  Fixture f(false);
  // A RESP3 client with no dedicated connection takes one, in RESP3.
  f.send({"HELLO", "3"});
  f.out();
  CHECK(f.pipeline.becomeRedirectTarget());
  CHECK(f.backend.pinned);
  REQUIRE(f.backend.sent.size() == 1);
  CHECK(f.backend.sent[0].bytes == kHello3);
  f.reply(f.backend.sent[0].tag, "%7\r\n");
  CHECK(f.out().empty());
  f.pipeline.streamFrame(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n");
  CHECK(f.out() == ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n");
  f.send({"PING"});
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  f.replyLast("+PONG\r\n");
  CHECK(f.out() == "+PONG\r\n");
  CHECK(f.send({"QUIT"}) == Flow::Stop);
  CHECK(f.lastSentCommand() == "QUIT");
  CHECK(f.pipeline.end() == Pipeline::End::AfterBackend);
  CHECK(f.backend.unpins.empty());
}

TEST_CASE("A subscribed redirect target keeps its connection after UNSUBSCRIBE", "[proxy]") {
  Fixture f(false);
  f.send({"SUBSCRIBE", "__redis__:invalidate"});
  CHECK(f.pipeline.becomeRedirectTarget());
  CHECK(f.backend.pins == 1);
  f.send({"UNSUBSCRIBE"});
  CHECK(f.send({"GET", "k"}) == Flow::Barrier);  // is the stream over?
  REQUIRE(f.backend.streamed.size() == 3);
  const std::string sync = f.backend.streamed.back();
  f.pipeline.streamFrame("*3\r\n$11\r\nunsubscribe\r\n$20\r\n__redis__:invalidate\r\n:0\r\n");
  const std::size_t token = sync.rfind("__larder:sync:");
  const std::string value = sync.substr(token, sync.size() - token - 2);
  f.pipeline.streamFrame("$" + std::to_string(value.size()) + "\r\n" + value + "\r\n");
  CHECK(f.retry() == Flow::Continue);
  CHECK(f.backend.unpins.empty());  // not back to the pool: other clients redirect to it
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
}

TEST_CASE("A client with requests outstanding cannot become a redirect target", "[proxy]") {
  Fixture f(false);
  f.send({"GET", "k"});
  CHECK_FALSE(f.pipeline.becomeRedirectTarget());
  CHECK_FALSE(f.backend.pinned);
  f.replyLast("$-1\r\n");
  CHECK(f.pipeline.becomeRedirectTarget());
  CHECK(f.backend.pinned);
  CHECK(f.backend.sent.size() == 1);  // RESP2: nothing of Larder's own
}
