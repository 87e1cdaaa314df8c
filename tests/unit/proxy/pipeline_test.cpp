// The request pipeline without sockets: ordering, barriers, state that only
// Redis' replies change, MULTI, pub/sub, refusals, typed failures.
#include "larder/acl/password.hpp"
#include "pipeline_fixture.hpp"

using namespace larder;
using namespace larder::proxy;
using namespace larder::proxy::testing;
using Flow = Pipeline::Flow;

TEST_CASE("pipelined replies leave in request order, whatever order they arrive in", "[proxy]") {
  Fixture f(false);
  for (const char* key : {"a", "b", "c"}) CHECK(f.send({"GET", key}) == Flow::Continue);
  REQUIRE(f.backend.sent.size() == 3);
  for (const Sent& s : f.backend.sent) CHECK(s.conn == Conn::Shared);
  f.reply(f.backend.sent[2].tag, "$1\r\nc\r\n");
  f.reply(f.backend.sent[0].tag, "$1\r\na\r\n");
  CHECK(f.pipeline.heldBytes() == 7);  // c waits for b: held bytes count toward the output limit
  CHECK(f.out() == "$1\r\na\r\n");
  f.reply(f.backend.sent[1].tag, "$1\r\nb\r\n");
  CHECK(f.out() == "$1\r\nb\r\n$1\r\nc\r\n");
  CHECK(f.pipeline.heldBytes() == 0);
  CHECK(f.pipeline.outstanding() == 0);
}

TEST_CASE("a local reply waits for the replies before it", "[proxy]") {
  Fixture f(false);
  f.send({"GET", "a"});
  f.send({"PING"});
  CHECK(f.backend.sent.size() == 1);  // PING is answered here
  CHECK(f.out().empty());
  f.replyLast("$1\r\na\r\n");
  CHECK(f.out() == "$1\r\na\r\n+PONG\r\n");
}

TEST_CASE("moving to a pinned connection waits for the shared one (barrier)", "[proxy]") {
  Fixture f(false);
  f.send({"GET", "a"});
  CHECK(f.send({"BLPOP", "q", "0"}) == Flow::Barrier);
  CHECK(f.backend.pins == 0);
  f.replyLast("$-1\r\n");
  CHECK(f.retry() == Flow::Continue);
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  f.replyLast("*-1\r\n");
  // The blocking call is over: the next command goes back to the shared connection.
  CHECK(f.send({"GET", "b"}) == Flow::Continue);
  CHECK(f.backend.sent.back().conn == Conn::Shared);
  CHECK(f.backend.unpins == std::vector<bool>{true});
}

TEST_CASE("SELECT of an invalid db changes nothing: a mapped write still goes to the queue",
          "[proxy]") {
  Fixture f;
  CHECK(f.send({"SELECT", "99"}) == Flow::Continue);
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  CHECK(f.pipeline.state().db == 0);
  CHECK(f.pipeline.state().unconfirmed == 1);
  // Where SET note:1 goes depends on the db: it waits for SELECT's reply.
  CHECK(f.send({"SET", "note:1", "v"}) == Flow::Barrier);
  f.replyLast("-ERR DB index is out of range\r\n");
  CHECK(f.pipeline.state().db == 0);
  CHECK(f.retry() == Flow::Continue);
  REQUIRE(f.reads.writes.size() == 1);  // the write path, not Redis as it is
  CHECK(f.reads.writes[0].conn == Conn::Shared);
  CHECK(f.backend.unpins == std::vector<bool>{true});
  CHECK(f.out() == err("ERR DB index is out of range"));
}

TEST_CASE("SELECT of another db takes effect when Redis says OK", "[proxy]") {
  Fixture f;
  f.send({"SELECT", "5"});
  CHECK(f.pipeline.state().db == 0);
  // A plain command does not depend on the db: it goes ahead on the pinned connection.
  CHECK(f.send({"GET", "plain"}) == Flow::Continue);
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  f.reply(f.backend.sent[0].tag, "+OK\r\n");
  CHECK(f.pipeline.state().db == 5);
  f.replyLast("$-1\r\n");
  // In db 5 no key is mapped: Redis gets SET note:1 as it is, on the pinned connection.
  CHECK(f.send({"SET", "note:1", "v"}) == Flow::Continue);
  CHECK(f.reads.writes.empty());
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  CHECK(f.lastSentCommand() == "SET note:1 v");
  // FLUSHDB there is Redis' own, not the queue-draining one.
  f.replyLast("+OK\r\n");
  f.send({"FLUSHDB"});
  CHECK(f.lastSentCommand() == "FLUSHDB");
  CHECK(f.admin.commands.empty());
}

TEST_CASE("MULTI: state from the replies; pipelined transactions go straight through", "[proxy]") {
  Fixture f(false);
  CHECK(f.send({"MULTI"}) == Flow::Continue);
  CHECK_FALSE(f.pipeline.state().in_multi);
  CHECK(f.send({"SET", "a", "1"}) == Flow::Continue);  // plain: queued or not, same route
  CHECK(f.send({"EXEC"}) == Flow::Continue);
  REQUIRE(f.backend.sent.size() == 3);
  for (const Sent& s : f.backend.sent) CHECK(s.conn == Conn::Pinned);
  f.reply(f.backend.sent[0].tag, "+OK\r\n");
  CHECK(f.pipeline.state().in_multi);
  f.reply(f.backend.sent[1].tag, "+QUEUED\r\n");
  f.reply(f.backend.sent[2].tag, "*1\r\n+OK\r\n");
  CHECK_FALSE(f.pipeline.state().in_multi);
  CHECK(f.out() == "+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n");
  CHECK(f.send({"GET", "a"}) == Flow::Continue);
  CHECK(f.backend.sent.back().conn == Conn::Shared);
}

TEST_CASE("a MULTI Redis refuses leaves the client outside a transaction", "[proxy]") {
  Fixture f(false);
  f.send({"MULTI"});
  f.replyLast("-ERR MULTI calls can not be nested\r\n");
  CHECK_FALSE(f.pipeline.state().in_multi);
  CHECK(f.pipeline.state().unconfirmed == 0);
  f.send({"GET", "a"});
  CHECK(f.backend.sent.back().conn == Conn::Shared);
}

TEST_CASE("commands Larder refuses inside MULTI make EXEC answer EXECABORT", "[proxy]") {
  Fixture f;
  f.send({"MULTI"});
  f.replyLast("+OK\r\n");
  f.send({"SET", "note:1", "x"});  // would bypass the write queue
  f.send({"ZUNIONSTORE", "__larder:q:notes", "1", "z"});
  f.send({"GET"});  // arity: Redis itself would discard the transaction
  CHECK(f.pipeline.state().multi_aborted);
  CHECK(f.send({"EXEC"}) == Flow::Continue);
  CHECK(f.lastSentCommand() == "DISCARD");
  f.replyLast("+OK\r\n");
  const std::string out = f.out();
  CHECK(out.find("writes to keyspace 'notes' cannot run inside MULTI") != std::string::npos);
  CHECK(out.find("reserved for Larder") != std::string::npos);
  CHECK(out.find("wrong number of arguments for 'get' command") != std::string::npos);
  CHECK(out.substr(out.size() - 62) ==
        err("EXECABORT Transaction discarded because of previous errors."));
  CHECK_FALSE(f.pipeline.state().in_multi);
  CHECK(f.reads.writes.empty());
}

TEST_CASE("WATCH and UNWATCH: the pin is kept while Redis watches", "[proxy]") {
  Fixture f(false);
  f.send({"WATCH", "k"});
  f.replyLast("+OK\r\n");
  CHECK(f.pipeline.state().watching);
  f.send({"GET", "x"});
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  f.replyLast("$-1\r\n");
  f.send({"UNWATCH"});
  CHECK(f.backend.sent.back().conn == Conn::Pinned);
  f.replyLast("+OK\r\n");
  CHECK_FALSE(f.pipeline.state().watching);
  f.send({"GET", "x"});
  CHECK(f.backend.sent.back().conn == Conn::Shared);
}

TEST_CASE("pub/sub: frames stream through; leaving it is asked of Redis", "[proxy]") {
  Fixture f(false);
  CHECK(f.send({"SUBSCRIBE", "ch"}) == Flow::Continue);
  CHECK(f.backend.stream);
  REQUIRE(f.backend.streamed.size() == 1);
  f.pipeline.streamFrame("*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
  f.pipeline.streamFrame("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
  CHECK(f.out().find("message") != std::string::npos);
  f.send({"UNSUBSCRIBE"});
  f.pipeline.streamFrame("*3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n");
  // Any other command first asks whether subscriptions are left (a PING token).
  CHECK(f.send({"GET", "k"}) == Flow::Barrier);
  const std::string ping = f.backend.streamed.back();
  CHECK(ping.find("__larder:sync:") != std::string::npos);
  const std::string token = Fixture::commandOf(ping).substr(5);
  f.pipeline.streamFrame("$" + std::to_string(token.size()) + "\r\n" + token + "\r\n");
  CHECK(f.out().find("__larder:sync") == std::string::npos);  // swallowed
  CHECK(f.retry() == Flow::Continue);
  CHECK_FALSE(f.backend.stream);
  CHECK(f.backend.sent.back().conn == Conn::Shared);
}

TEST_CASE("a mapped read is held in order; a later write waits for it", "[proxy]") {
  Fixture f;
  f.send({"GET", "note:1"});
  REQUIRE(f.reads.reads.size() == 1);
  f.send({"GET", "plain"});
  f.replyLast("$1\r\np\r\n");
  CHECK(f.out().empty());  // the mapped read is still loading
  // A write to the key now could be seen by the load: it waits.
  CHECK(f.send({"SET", "note:1", "v2"}) == Flow::Barrier);
  f.reply(f.reads.reads[0].tag, "$2\r\nv1\r\n");
  CHECK(f.out() == "$2\r\nv1\r\n$1\r\np\r\n");
  CHECK(f.retry() == Flow::Continue);
  CHECK(f.reads.writes.size() == 1);
}

TEST_CASE("a write that may be retried holds everything after it", "[proxy]") {
  Fixture f;
  f.reads.reorder = true;
  f.send({"HSET", "user:1", "name", "x"});
  REQUIRE(f.reads.writes.size() == 1);
  CHECK(f.send({"GET", "plain"}) == Flow::Barrier);
  f.reply(f.reads.writes[0].tag, ":1\r\n");
  CHECK(f.retry() == Flow::Continue);
}

TEST_CASE("the near cache answers a GET it holds without any backend", "[proxy]") {
  Fixture f;
  f.reads.near["note:1"] = "$3\r\nnear\r\n";
  f.send({"GET", "note:1"});
  CHECK(f.out() == "$3\r\nnear\r\n");
  CHECK(f.backend.sent.empty());
  CHECK(f.reads.reads.empty());
}

TEST_CASE("unknown commands: forwarded without keyspaces, Redis' error with them", "[proxy]") {
  Fixture plain(false);
  plain.send({"NOSUCH", "a", "b"});
  CHECK(plain.backend.sent.size() == 1);  // a newer Redis may know it
  Fixture mapped;
  mapped.send({"NOSUCH", "a", "b"});
  CHECK(mapped.backend.sent.empty());  // its keys cannot be known
  CHECK(mapped.out() == err("ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' "));
  mapped.send({"CONFIG", "NOSUCH"});
  CHECK(mapped.out() == err("ERR unknown subcommand 'NOSUCH'. Try CONFIG HELP."));
  mapped.send({"GET"});
  CHECK(mapped.out() == err("ERR wrong number of arguments for 'get' command"));
  mapped.send({"CONFIG", "GET"});
  CHECK(mapped.out() == err("ERR wrong number of arguments for 'config|get' command"));
}

TEST_CASE("without AUTH: arity first, then NOAUTH, as Redis", "[proxy]") {
  FakeBackend backend;
  FakeReads reads;
  FakeAdmin admin;
  FakeClient client;
  // As the loader makes it from requirepass: a default user with that password.
  config::UserConfig user;
  user.name = "default";
  user.passwords = {acl::sha256("pw")};
  std::string error;
  REQUIRE(user.permissions.applyCommandRule("+@all", error));
  REQUIRE(user.permissions.applyKeyRule("~*", error));
  REQUIRE(user.permissions.applyChannelRule("&*", error));
  admin.cfg.users = {user};
  admin.cfg.requirepass = "pw";
  Pipeline p(Ports{backend, reads, admin, client}, 1);
  auto run = [&](std::vector<std::string> args) {
    std::string bytes;
    resp::appendMultibulk(bytes, std::vector<std::string_view>(args.begin(), args.end()));
    resp::RequestParser parser;
    resp::Request r;
    REQUIRE(parser.parse(bytes, r) == resp::ParseStatus::Complete);
    const auto cmd = commands::Registry::get().resolve(r.args);
    p.begin(r, cmd, std::chrono::steady_clock::now());
    p.step(r, cmd);
    return std::exchange(p.output(), {});
  };
  CHECK(run({"GET"}) == err("ERR wrong number of arguments for 'get' command"));
  CHECK(run({"GET", "k"}) == err("NOAUTH Authentication required."));
  CHECK(run({"NOSUCH"}) == err("ERR unknown command 'NOSUCH', with args beginning with: "));
  CHECK(run({"AUTH", "bad"}) ==
        err("WRONGPASS invalid username-password pair or user is disabled."));
  CHECK(run({"AUTH", "pw"}) == "+OK\r\n");
  CHECK(p.state().authenticated);
  CHECK(run({"GET", "k"}).empty());
  CHECK(backend.sent.size() == 1);
}

TEST_CASE("a backend failure is answered in words, in order", "[proxy]") {
  Fixture f(false);
  f.send({"GET", "a"});
  f.send({"GET", "b"});
  f.pipeline.fail(f.backend.sent[0].tag,
                  redis::BackendFailure{redis::BackendFailure::Kind::ConnectionLost, "reset"});
  f.replyLast("$1\r\nb\r\n");
  CHECK(f.out() == err("ERR Larder: Redis backend connection lost: reset") + "$1\r\nb\r\n");
}

TEST_CASE("a full backend connection makes the request wait, nothing reserved", "[proxy]") {
  Fixture f(false);
  f.backend.full = true;
  CHECK(f.send({"GET", "a"}) == Flow::Saturated);
  CHECK(f.pipeline.outstanding() == 0);
  f.backend.full = false;
  CHECK(f.retry() == Flow::Continue);
  CHECK(f.pipeline.outstanding() == 1);
}

TEST_CASE("no dedicated connection to be had: an error, the client stays", "[proxy]") {
  Fixture f(false);
  f.backend.refuse_pin = true;
  CHECK(f.send({"MULTI"}) == Flow::Continue);
  CHECK(f.out().find("max_pinned_per_worker") != std::string::npos);
  CHECK(f.pipeline.end() == Pipeline::End::None);
}

TEST_CASE("QUIT ends after its reply; RESET waits, then starts over", "[proxy]") {
  Fixture f(false);
  f.send({"SELECT", "3"});
  f.replyLast("+OK\r\n");
  f.send({"CLIENT", "SETNAME", "me"});
  f.send({"GET", "x"});
  CHECK(f.send({"RESET"}) == Flow::Barrier);
  f.replyLast("$-1\r\n");
  CHECK(f.retry() == Flow::Continue);
  CHECK(f.pipeline.state().db == 0);
  CHECK(f.pipeline.state().name.empty());
  CHECK_FALSE(f.pipeline.state().pinned);
  CHECK(f.out().substr(0) == "+OK\r\n+OK\r\n$-1\r\n+RESET\r\n");
  CHECK(f.send({"QUIT"}) == Flow::Stop);
  CHECK(f.pipeline.end() == Pipeline::End::AfterReplies);
}

TEST_CASE("a lost pinned connection ends the client: its state is gone", "[proxy]") {
  Fixture f(false);
  f.send({"MULTI"});
  f.replyLast("+OK\r\n");
  f.backend.lost = true;
  CHECK(f.send({"SET", "a", "1"}) == Flow::Stop);
  CHECK(f.out().find("holding this client's state was lost") != std::string::npos);
  CHECK(f.pipeline.end() == Pipeline::End::AfterReplies);
}

TEST_CASE("EXEC refused before it runs is worded as Redis words it, and ends the MULTI",
          "[proxy]") {
  Fixture f(false);
  f.send({"EXEC", "x"});
  CHECK(f.out() == err("EXECABORT Transaction discarded because of: wrong number of arguments "
                       "for 'exec' command"));
  f.send({"MULTI"});
  f.replyLast("+OK\r\n");
  f.send({"SET", "a", "1"});
  f.replyLast("+QUEUED\r\n");
  f.out();
  f.send({"EXEC", "x"});
  CHECK(f.lastSentCommand() == "DISCARD");  // Redis discards the transaction too
  f.replyLast("+OK\r\n");
  CHECK(f.out().rfind("-EXECABORT Transaction discarded because of: wrong number", 0) == 0);
  CHECK_FALSE(f.pipeline.state().in_multi);
}
