// Reserved and mapped keys in every key position, and the commands whose
// effect on keys their arguments do not show.
#include "pipeline_fixture.hpp"

using namespace larder;
using namespace larder::proxy;
using namespace larder::proxy::testing;

namespace {

// What the client gets for one request on a fresh pipeline with keyspaces,
// and whether anything reached the backend or the write path.
struct Outcome {
  std::string reply;
  bool sent = false;
};

Outcome outcome(std::vector<std::string> args) {
  Fixture f;
  f.send(std::move(args));
  Outcome o;
  o.reply = f.out();
  o.sent = !f.backend.sent.empty() || !f.reads.writes.empty() || !f.reads.reads.empty();
  return o;
}

const std::string kReserved = err("ERR Larder: keys under '__larder:' are reserved for Larder");
const std::string kWrongType =
    err("WRONGTYPE Operation against a key holding the wrong kind of value");

}  // namespace

TEST_CASE("reserved keys are refused in any key position, read or write", "[proxy]") {
  for (auto args : std::vector<std::vector<std::string>>{
           {"ZUNIONSTORE", "__larder:q:notes", "1", "nosuchkey"},
           {"SORT", "nosuch", "STORE", "__larder:q:notes"},
           {"SORT", "nosuch", "LIMIT", "0", "1", "STORE", "__larder:q:notes"},
           {"EVAL", "return 1", "1", "__larder:q:users"},
           {"XADD", "__larder:q:users", "*", "k", "v"},
           {"XRANGE", "__larder:q:users", "-", "+"},
           {"RENAME", "x", "__larder:pending:user:1"},
           {"COPY", "x", "__larder:q:users"},
           {"MIGRATE", "127.0.0.1", "1", "", "0", "10", "KEYS", "a", "__larder:q:users"},
           {"RESTORE", "__larder:q:users", "0", "x"},
           {"MSET", "a", "1", "__larder:x", "2"},
           {"BLPOP", "__larder:q", "0"},
           {"GET", "__larder:lease:note:1"}}) {
    INFO(args[0]);
    const Outcome o = outcome(args);
    CHECK(o.reply == kReserved);
    CHECK_FALSE(o.sent);
  }
  // Not a key position: a value or a pattern may say anything.
  CHECK(outcome({"SET", "plain", "__larder:q:notes"}).sent);
  CHECK(outcome({"PUBLISH", "__larder:x", "m"}).sent);
}

TEST_CASE("commands that would change a mapped key's type are refused", "[proxy]") {
  CHECK(outcome({"ZUNIONSTORE", "user:5", "1", "somezset"}).reply == kWrongType);
  CHECK(outcome({"LPUSH", "note:1", "x"}).reply == kWrongType);
  CHECK(outcome({"SADD", "user:1", "x"}).reply == kWrongType);
  CHECK(outcome({"BITOP", "AND", "note:1", "a", "b"}).reply == kWrongType);
  CHECK(outcome({"PFMERGE", "note:1", "a"}).reply == kWrongType);
  CHECK(outcome({"GETRANGE", "user:1", "0", "1"}).reply == kWrongType);     // a hash keyspace
  CHECK(outcome({"SORT", "list", "STORE", "note:1"}).reply == kWrongType);  // stores a list
}

TEST_CASE("commands that would go around the write path are refused", "[proxy]") {
  for (auto args : std::vector<std::vector<std::string>>{
           {"COPY", "src", "note:1"},
           {"RENAME", "note:1", "other"},
           {"RENAME", "other", "user:1"},
           {"RESTORE", "note:1", "0", "x"},
           {"MOVE", "note:1", "3"},
           {"INCR", "note:1"},
           {"APPEND", "note:1", "x"},
           {"HINCRBY", "user:1", "f", "1"},
           {"EVAL", "redis.call('SET', KEYS[1], 'x')", "1", "note:1"},
           {"FCALL", "f", "1", "user:1"},
           {"MIGRATE", "127.0.0.1", "1", "note:1", "0", "10"}}) {
    INFO(args[0]);
    const Outcome o = outcome(args);
    CHECK((o.reply.rfind("-ERR Larder: ", 0) == 0 || o.reply == kWrongType));
    CHECK(o.reply.find("not supported on keys of keyspace") != std::string::npos);
    CHECK_FALSE(o.sent);
  }
}

TEST_CASE("reads of a mapped key as it is go to Redis", "[proxy]") {
  for (auto args : std::vector<std::vector<std::string>>{{"STRLEN", "note:1"},
                                                         {"TYPE", "user:1"},
                                                         {"DUMP", "note:1"},
                                                         {"OBJECT", "ENCODING", "user:1"},
                                                         {"EVAL_RO", "return 1", "1", "note:1"},
                                                         {"TOUCH", "note:1"}}) {
    INFO(args[0]);
    const Outcome o = outcome(args);
    CHECK(o.reply.empty());
    CHECK(o.sent);
  }
}

TEST_CASE("commands whose effect on keys cannot be seen: each decided", "[proxy]") {
  CHECK(outcome({"SWAPDB", "0", "1"}).reply.find("refused while keyspaces are configured") !=
        std::string::npos);
  CHECK(outcome({"DEBUG", "RELOAD"}).reply.find("refused while keyspaces") != std::string::npos);
  CHECK(outcome({"CONFIG", "SET", "appendonly", "no"}).reply.find("CONFIG SET APPENDONLY") !=
        std::string::npos);
  CHECK(outcome({"CONFIG", "SET", "maxclients", "10", "MAXMEMORY-policy", "allkeys-lru"})
            .reply.find("CONFIG SET MAXMEMORY-POLICY") != std::string::npos);
  CHECK(outcome({"CONFIG", "SET", "maxclients", "10"}).sent);
  CHECK(outcome({"SCRIPT", "FLUSH"}).sent);    // Larder sends its scripts again on NOSCRIPT
  CHECK(outcome({"FUNCTION", "FLUSH"}).sent);  // Larder uses no functions
  // Without keyspaces there is nothing to protect.
  Fixture plain(false);
  plain.send({"SWAPDB", "0", "1"});
  CHECK(plain.backend.sent.size() == 1);
}

TEST_CASE("MOVE or COPY from another db onto a mapped key is refused", "[proxy]") {
  Fixture f;
  f.send({"SELECT", "5"});
  f.replyLast("+OK\r\n");
  f.out();
  f.send({"SET", "user:1", "x"});  // db 5 holds no mapped keys
  CHECK(f.lastSentCommand() == "SET user:1 x");
  f.replyLast("+OK\r\n");
  f.out();
  const std::size_t before = f.backend.sent.size();
  f.send({"MOVE", "user:1", "0"});
  f.send({"COPY", "a", "note:3", "DB", "0"});
  CHECK(f.backend.sent.size() == before);
  const std::string out = f.out();
  CHECK(out.find("MOVE is not supported on keys of keyspace 'users'") != std::string::npos);
  CHECK(out.find("COPY is not supported on keys of keyspace 'notes'") != std::string::npos);
  f.send({"MOVE", "plain", "0"});
  CHECK(f.backend.sent.size() == before + 1);
}

TEST_CASE("FLUSHALL drains the write queues first; inside MULTI it is refused", "[proxy]") {
  Fixture f;
  f.send({"FLUSHALL"});
  REQUIRE(f.admin.commands.size() == 1);
  CHECK(f.admin.commands[0].first == "flushall");
  CHECK(f.backend.sent.empty());
  f.reply(f.admin.commands[0].second, "+OK\r\n");
  f.send({"MULTI"});
  f.replyLast("+OK\r\n");
  f.send({"FLUSHDB"});
  CHECK(f.out().find("would bypass the write queue") != std::string::npos);
  CHECK(f.pipeline.state().multi_aborted);
}
