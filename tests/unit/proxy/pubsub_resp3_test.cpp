// RESP3 pub/sub: ordinary commands between SUBSCRIBE and UNSUBSCRIBE on a
// RESP3 pinned connection, pushes and replies in Redis' order.
#include "pipeline_fixture.hpp"

using namespace larder;
using namespace larder::proxy;
using namespace larder::proxy::testing;
using Flow = Pipeline::Flow;

namespace {

const std::string kPing = "*1\r\n$4\r\nPING\r\n";

}  // namespace

TEST_CASE("RESP3: a subscribed client runs commands on a RESP3 connection", "[proxy]") {
  Fixture f(false);
  f.send({"HELLO", "3"});
  f.out();
  CHECK(f.send({"SUBSCRIBE", "ch"}) == Flow::Continue);
  CHECK(f.backend.pinned);
  CHECK(f.backend.stream_mode == Stream::Pushes);
  REQUIRE(f.backend.sent.size() == 1);
  CHECK(f.backend.sent[0].bytes == kHello3);  // Larder's own, its reply unseen
  REQUIRE(f.backend.streamed.size() == 1);
  f.reply(f.backend.sent[0].tag, "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n");
  f.pipeline.streamFrame(">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
  CHECK(f.out() == ">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
  CHECK(f.pipeline.state().subscriptions.channels == 1);

  // Ordinary commands run on the same connection; replies are RESP3 already.
  CHECK(f.send({"HGETALL", "h"}) == Flow::Continue);
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  CHECK(f.send({"PING"}) == Flow::Continue);
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  f.reply(f.backend.sent[1].tag, "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");  // not translated again
  f.pipeline.streamFrame(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
  f.reply(f.backend.sent[2].tag, "+PONG\r\n");
  CHECK(f.out() ==
        "%1\r\n$1\r\nf\r\n$1\r\nv\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
        "+PONG\r\n");
  // CLIENT INFO first makes sure every confirmation is in (a PING of its own).
  CHECK(f.send({"CLIENT", "INFO"}) == Flow::Barrier);
  CHECK(f.backend.sent.back().bytes == kPing);
  f.replyLast("+PONG\r\n");
  CHECK(f.retry() == Flow::Continue);
  CHECK(f.out().find(" flags=P ") != std::string::npos);

  // Once nothing is subscribed, a PING of Larder's own makes sure, then the
  // connection goes (it speaks RESP3) and routing is as before.
  f.send({"UNSUBSCRIBE"});
  f.pipeline.streamFrame(">3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n");
  CHECK(f.send({"GET", "k"}) == Flow::Barrier);
  CHECK(f.backend.sent.back().bytes == kPing);
  f.replyLast("+PONG\r\n");
  CHECK(f.out() == ">3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n");
  CHECK(f.retry() == Flow::Continue);
  CHECK(f.backend.unpins == std::vector<bool>{false});
  CHECK(f.backend.sent.back().conn == Conn::Shared);
  f.replyLast("$-1\r\n");
  CHECK(f.out() == "_\r\n");  // the shared connection's RESP2, translated again
}

TEST_CASE("RESP3: still subscribed after the check, commands stay on the connection", "[proxy]") {
  Fixture f(false);
  f.send({"HELLO", "3"});
  f.send({"SUBSCRIBE", "a", "b"});
  f.reply(f.backend.sent[0].tag, "%0\r\n");
  f.pipeline.streamFrame(">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
  f.pipeline.streamFrame(">3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n");
  f.send({"UNSUBSCRIBE", "a"});
  f.pipeline.streamFrame(">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n");
  CHECK(f.send({"GET", "k"}) == Flow::Continue);  // b is left
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  CHECK(f.backend.unpins.empty());
}

TEST_CASE("RESP3: HELLO 2 while subscribed switches the connection to RESP2 pub/sub", "[proxy]") {
  // Redis 7.0 allows it; its messages then come as RESP2 arrays on the same
  // client (CLIENT TRACKING REDIRECT targets in Redis' unit/tracking).
  Fixture f(false);
  f.send({"HELLO", "3"});
  f.send({"SUBSCRIBE", "ch"});
  f.reply(f.backend.sent[0].tag, "%0\r\n");
  f.pipeline.streamFrame(">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
  f.out();
  CHECK(f.send({"HELLO", "2"}) == Flow::Continue);
  CHECK(f.lastSentCommand() == "HELLO 2");
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  CHECK(f.backend.stream_mode == Stream::Pushes);  // RESP3 pushes may still come first
  const std::uint64_t hello = f.backend.sent.back().tag;
  CHECK(f.send({"PING"}) == Flow::Barrier);  // nothing more until Redis has switched
  f.pipeline.streamFrame(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\na\r\n");
  f.reply(hello, "*14\r\n");  // Redis' own HELLO reply is replaced by Larder's
  CHECK(f.backend.stream_mode == Stream::All);
  const std::string out = f.out();
  CHECK(out.starts_with(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\na\r\n*14\r\n$6\r\nserver"));
  CHECK(out.find("proto\r\n:2\r\n") != std::string::npos);
  CHECK(f.pipeline.state().stream);
  CHECK_FALSE(f.pipeline.state().push);
  f.pipeline.streamFrame("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nb\r\n");
  CHECK(f.out() == "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nb\r\n");
  // PING while subscribed in RESP2: on the stream, as Redis allows it.
  CHECK(f.retry() == Flow::Continue);
  CHECK(f.backend.streamed.back() == "*1\r\n$4\r\nPING\r\n");
}
