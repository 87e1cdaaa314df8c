#include "larder/cache/write_plan.hpp"

#include <catch2/catch.hpp>

#include "larder/commands/keys.hpp"
#include "test_keyspaces.hpp"

using namespace larder;
using cache::Combine;
using cache::KeyWrite;
using cache::WritePlan;

namespace {

using Columns = std::map<std::string, std::optional<std::string>, std::less<>>;
using Strings = std::vector<std::string>;

const std::string kWrongType = "WRONGTYPE Operation against a key holding the wrong kind of value";
const std::string kSyntax = "ERR syntax error";
const std::string kNotInteger = "ERR value is not an integer or out of range";
const std::string kSetExpire = "ERR invalid expire time in 'set' command";

const cache::KeyspaceRegistry& registry() {
  static const cache::KeyspaceRegistry r(cache::testing::testKeyspaces());
  return r;
}

const cache::Keyspace* users() { return registry().byName("users"); }
const cache::Keyspace* notes() { return registry().byName("notes"); }

// Plans a request as the session does: the registry row, keys from its key specs.
WritePlan plan(std::vector<std::string_view> args) {
  const commands::Command* command = commands::Registry::get().resolve(args).command;
  REQUIRE(command != nullptr);
  std::vector<commands::KeyRef> refs;
  commands::findKeys(*command, args, refs);
  std::vector<std::size_t> keys;
  for (const auto& k : refs) keys.push_back(k.pos);
  return cache::planWrite(*command, args, keys, registry());
}

// The one write of a plan that must succeed with exactly one write.
KeyWrite only(const WritePlan& p) {
  INFO("error: " << p.error);
  REQUIRE(p.error.empty());
  REQUIRE(p.writes.size() == 1);
  CHECK(p.unmapped.empty());
  CHECK(p.combine == Combine::Single);
  return p.writes[0];
}

std::string errorOf(std::vector<std::string_view> args) { return plan(std::move(args)).error; }

}  // namespace

TEST_CASE("SET on a string keyspace writes its one column", "[server][write_plan]") {
  const KeyWrite w = only(plan({"SET", "note:7", "hello"}));
  CHECK(w.ks == notes());
  CHECK(w.key == "note:7");
  CHECK(w.key_values == Strings{"7"});
  CHECK(w.op == "set");
  // column, value, cond, get, ttl kind, ms
  CHECK(w.op_args == Strings{"body", "hello", "", "0", "d", ""});
  CHECK_FALSE(w.needs_row);  // a plain SET answers OK whatever the row
  CHECK_FALSE(w.cache_only);
  CHECK_FALSE(w.change.reset);
  CHECK(w.change.columns == Columns{{"body", "hello"}});
}

TEST_CASE("SET options become the write script's arguments", "[server][write_plan]") {
  struct Case {
    std::vector<std::string_view> args;
    Strings op_args;
    bool needs_row;
  };
  const std::vector<Case> cases = {
      {{"SET", "note:1", "v", "EX", "10"}, {"body", "v", "", "0", "p", "10000"}, false},
      {{"SET", "note:1", "v", "PX", "1500"}, {"body", "v", "", "0", "p", "1500"}, false},
      {{"SET", "note:1", "v", "EXAT", "1700000000"},
       {"body", "v", "", "0", "a", "1700000000000"},
       false},
      {{"SET", "note:1", "v", "PXAT", "1700000000123"},
       {"body", "v", "", "0", "a", "1700000000123"},
       false},
      {{"SET", "note:1", "v", "KEEPTTL"}, {"body", "v", "", "0", "k", ""}, true},
      {{"SET", "note:1", "v", "NX"}, {"body", "v", "nx", "0", "d", ""}, true},
      {{"SET", "note:1", "v", "XX"}, {"body", "v", "xx", "0", "d", ""}, true},
      {{"SET", "note:1", "v", "GET"}, {"body", "v", "", "1", "d", ""}, true},
      // Options in any case and any order, combined.
      {{"set", "note:1", "v", "nx", "get", "px", "100"},
       {"body", "v", "nx", "1", "p", "100"},
       true},
      {{"SET", "note:1", "v", "KeepTtl", "Xx", "Get"}, {"body", "v", "xx", "1", "k", ""}, true},
  };
  for (const auto& c : cases) {
    std::string request;
    for (auto a : c.args) request += std::string(a) + " ";
    INFO(request);
    const KeyWrite w = only(plan(c.args));
    CHECK(w.op == "set");
    CHECK(w.op_args == c.op_args);
    CHECK(w.needs_row == c.needs_row);
    CHECK(w.change.columns == Columns{{"body", "v"}});
    CHECK_FALSE(w.change.reset);
  }
}

TEST_CASE("SET answers Redis' own errors for bad options", "[server][write_plan]") {
  CHECK(errorOf({"SET", "note:1", "v", "NX", "XX"}) == kSyntax);
  CHECK(errorOf({"SET", "note:1", "v", "XX", "NX"}) == kSyntax);
  CHECK(errorOf({"SET", "note:1", "v", "EX"}) == kSyntax);  // no number
  CHECK(errorOf({"SET", "note:1", "v", "PXAT"}) == kSyntax);
  CHECK(errorOf({"SET", "note:1", "v", "EX", "10", "PX", "10"}) == kSyntax);
  CHECK(errorOf({"SET", "note:1", "v", "EX", "10", "KEEPTTL"}) == kSyntax);
  CHECK(errorOf({"SET", "note:1", "v", "KEEPTTL", "EXAT", "10"}) == kSyntax);
  CHECK(errorOf({"SET", "note:1", "v", "FOREVER"}) == kSyntax);
  CHECK(errorOf({"SET", "note:1", "v", "EX", "abc"}) == kNotInteger);
  CHECK(errorOf({"SET", "note:1", "v", "PX", "1.5"}) == kNotInteger);
  CHECK(errorOf({"SET", "note:1", "v", "EX", "99999999999999999999"}) == kNotInteger);
  CHECK(errorOf({"SET", "note:1", "v", "EX", "0"}) == kSetExpire);
  CHECK(errorOf({"SET", "note:1", "v", "PX", "-1"}) == kSetExpire);
  CHECK(errorOf({"SET", "note:1", "v", "EXAT", "0"}) == kSetExpire);
  CHECK(errorOf({"SET", "note:1", "v", "EX", "9223372036854775807"}) == kSetExpire);
  // An option error writes nothing.
  CHECK(plan({"SET", "note:1", "v", "NX", "XX"}).writes.empty());
  CHECK(plan({"SET", "note:1", "v", "EX", "0"}).writes.empty());
}

TEST_CASE("SET arity", "[server][write_plan]") {
  CHECK(errorOf({"set", "note:1"}) == "ERR wrong number of arguments for 'set' command");
  CHECK(plan({"set", "note:1"}).writes.empty());
}

// Regression (found by these tests, fixed): arity errors quote the command as the client spelt it
// (args[0]), Redis quotes its lower-case name: `SET k` -> "... for 'set' command". The header
// promises Redis' own errors; local_commands.cpp lower-cases for the same reason.
TEST_CASE("arity errors name the command in lower case, as Redis does", "[server][write_plan]") {
  CHECK(errorOf({"SET", "note:1"}) == "ERR wrong number of arguments for 'set' command");
  CHECK(errorOf({"GETSET", "note:1"}) == "ERR wrong number of arguments for 'getset' command");
  CHECK(errorOf({"HSET", "user:1", "name"}) == "ERR wrong number of arguments for 'hset' command");
  CHECK(errorOf({"Mset", "note:1", "a", "note:2"}) ==
        "ERR wrong number of arguments for 'mset' command");
}

// Regression (found by these tests, fixed): a relative expire whose deadline overflows is accepted.
// Redis refuses `SET k v PX 9223372036854775807` and `SET k v EX 9223372036854775` with "invalid
// expire time" (the ms added to now overflow; checked with redis-server 7.0). Larder passes them to
// the write script, which enqueues the change for PostgreSQL and only then fails on
// redis.call('SET', ..., 'PX', ms): the row is written behind while the client gets an error. The
// header says planWrite answers Redis' errors "before anything is written anywhere".
TEST_CASE("a relative expire that overflows is refused before writing", "[server][write_plan]") {
  CHECK(errorOf({"SET", "note:1", "v", "PX", "9223372036854775807"}) == kSetExpire);
  CHECK(errorOf({"SET", "note:1", "v", "EX", "9223372036854775"}) == kSetExpire);
  CHECK(errorOf({"SETEX", "note:1", "9223372036854775", "v"}) ==
        "ERR invalid expire time in 'setex' command");
  CHECK(errorOf({"PSETEX", "note:1", "9223372036854775807", "v"}) ==
        "ERR invalid expire time in 'psetex' command");
}

// Regression (found by these tests, fixed): Redis 7 accepts a repeated identical option (NX NX, GET
// GET, KEEPTTL KEEPTTL, EX 1 EX 2: the last wins) and refuses an integer with a
// leading zero ("010"); planWrite used to answer the opposite for both.
TEST_CASE("SET option edge cases follow Redis", "[server][write_plan]") {
  CHECK(errorOf({"SET", "note:1", "v", "NX", "NX"}).empty());
  CHECK(errorOf({"SET", "note:1", "v", "GET", "GET"}).empty());
  CHECK(errorOf({"SET", "note:1", "v", "KEEPTTL", "KEEPTTL"}).empty());
  CHECK(errorOf({"SET", "note:1", "v", "EX", "010"}) == kNotInteger);
}

TEST_CASE("SETEX and PSETEX", "[server][write_plan]") {
  KeyWrite w = only(plan({"SETEX", "note:3", "10", "v"}));
  CHECK(w.op == "set");
  CHECK(w.op_args == Strings{"body", "v", "", "0", "p", "10000"});
  CHECK_FALSE(w.needs_row);
  CHECK(w.change.columns == Columns{{"body", "v"}});

  w = only(plan({"PSETEX", "note:3", "1500", "v"}));
  CHECK(w.op_args == Strings{"body", "v", "", "0", "p", "1500"});

  CHECK(errorOf({"SETEX", "note:3", "0", "v"}) == "ERR invalid expire time in 'setex' command");
  CHECK(errorOf({"PSETEX", "note:3", "-1", "v"}) == "ERR invalid expire time in 'psetex' command");
  CHECK(errorOf({"SETEX", "note:3", "abc", "v"}) == kNotInteger);
  CHECK(errorOf({"setex", "note:3", "10"}) == "ERR wrong number of arguments for 'setex' command");
  CHECK(errorOf({"SETEX", "user:3", "10", "v"}) == kWrongType);
}

TEST_CASE("GETSET and GETDEL", "[server][write_plan]") {
  KeyWrite w = only(plan({"GETSET", "note:4", "new"}));
  CHECK(w.op == "set");
  CHECK(w.op_args == Strings{"body", "new", "", "1", "d", ""});
  CHECK(w.needs_row);  // the answer is the old value
  CHECK(w.change.columns == Columns{{"body", "new"}});
  CHECK(errorOf({"getset", "note:4"}) == "ERR wrong number of arguments for 'getset' command");

  w = only(plan({"GETDEL", "note:4"}));
  CHECK(w.op == "getdel");
  CHECK(w.op_args.empty());
  CHECK(w.needs_row);
  CHECK(w.change.deletesRow());
  CHECK(errorOf({"getdel", "note:4", "x"}) == "ERR wrong number of arguments for 'getdel' command");
  CHECK(errorOf({"GETDEL", "user:4"}) == kWrongType);
}

TEST_CASE("MSET splits mapped and unmapped pairs", "[server][write_plan]") {
  const WritePlan p = plan({"MSET", "note:1", "a", "plain", "b", "note:2", "c", "other:1", "d"});
  REQUIRE(p.error.empty());
  CHECK(p.combine == Combine::AllOk);
  CHECK(p.unmapped == Strings{"MSET", "plain", "b", "other:1", "d"});
  REQUIRE(p.writes.size() == 2);
  CHECK(p.writes[0].key == "note:1");
  CHECK(p.writes[0].op == "set");
  CHECK(p.writes[0].op_args == Strings{"body", "a", "", "0", "d", ""});
  CHECK_FALSE(p.writes[0].needs_row);
  CHECK(p.writes[0].change.columns == Columns{{"body", "a"}});
  CHECK(p.writes[1].key == "note:2");
  CHECK(p.writes[1].key_values == Strings{"2"});
  CHECK(p.writes[1].change.columns == Columns{{"body", "c"}});

  const WritePlan all = plan({"MSET", "note:1", "a", "note:2", "b"});
  REQUIRE(all.error.empty());
  CHECK(all.unmapped.empty());
  CHECK(all.writes.size() == 2);
  CHECK(all.combine == Combine::AllOk);

  CHECK(errorOf({"mset", "note:1", "a", "note:2"}) ==
        "ERR wrong number of arguments for 'mset' command");
  CHECK(errorOf({"MSET", "plain", "a", "user:1", "b"}) == kWrongType);
  CHECK(errorOf({"MSET", "note:x", "a"}).find("'x' is not a valid id (bigint)") !=
        std::string::npos);
}

TEST_CASE("DEL and UNLINK split mapped and unmapped keys", "[server][write_plan]") {
  for (std::string_view name : {"DEL", "UNLINK"}) {
    INFO(name);
    const WritePlan p = plan({name, "user:1", "plain", "note:2", "other"});
    REQUIRE(p.error.empty());
    CHECK(p.combine == Combine::Sum);
    CHECK(p.unmapped == Strings{std::string(name), "plain", "other"});
    REQUIRE(p.writes.size() == 2);
    CHECK(p.writes[0].ks == users());
    CHECK(p.writes[0].key == "user:1");
    CHECK(p.writes[0].op == "del");
    CHECK(p.writes[0].change.deletesRow());
    CHECK(p.writes[1].ks == notes());
    CHECK(p.writes[1].key == "note:2");
    CHECK(p.writes[1].op == "del");
    CHECK(p.writes[1].change.deletesRow());
  }
  const WritePlan mapped = plan({"DEL", "user:1", "user:2"});
  REQUIRE(mapped.error.empty());
  CHECK(mapped.unmapped.empty());
  CHECK(mapped.writes.size() == 2);
  CHECK(errorOf({"DEL", "plain", "user:007"}) ==
        "ERR Larder: '007' is not a valid id (bigint) for keyspace 'users'");
}

TEST_CASE("HSET and HMSET write the named columns", "[server][write_plan]") {
  KeyWrite w = only(plan({"HSET", "user:9", "name", "Ann", "age", "42"}));
  CHECK(w.ks == users());
  CHECK(w.key_values == Strings{"9"});
  CHECK(w.op == "hset");
  CHECK(w.op_args == Strings{"name", "Ann", "age", "42"});
  CHECK(w.needs_row);  // the answer counts new fields
  CHECK_FALSE(w.cache_only);
  CHECK_FALSE(w.change.reset);
  CHECK(w.change.columns == Columns{{"name", "Ann"}, {"age", "42"}});

  w = only(plan({"HMSET", "user:9", "email", "a@b"}));
  CHECK(w.op == "hmset");
  CHECK(w.op_args == Strings{"email", "a@b"});
  CHECK_FALSE(w.needs_row);  // always +OK
  CHECK(w.change.columns == Columns{{"email", "a@b"}});

  // The same field twice: the change keeps the last value.
  w = only(plan({"HSET", "user:9", "name", "a", "name", "b"}));
  CHECK(w.change.columns == Columns{{"name", "b"}});

  CHECK(errorOf({"HSET", "user:9", "x", "1"}) ==
        "ERR Larder: 'x' is not a column of keyspace 'users'");
  CHECK(errorOf({"HSET", "user:9", "name", "ok", "id", "1"}) ==
        "ERR Larder: 'id' is not a column of keyspace 'users'");
  CHECK(errorOf({"hset", "user:9", "name"}) == "ERR wrong number of arguments for 'hset' command");
  CHECK(errorOf({"hmset", "user:9", "name", "a", "age"}) ==
        "ERR wrong number of arguments for 'hmset' command");
  CHECK(plan({"HSET", "user:9", "x", "1"}).writes.empty());
}

TEST_CASE("HSET checks integer columns as PostgreSQL would parse them", "[server][write_plan]") {
  const std::string bad =
      "ERR Larder: value for column 'age' of keyspace 'users' is not a valid integer";
  CHECK(errorOf({"HSET", "user:9", "age", "abc"}) == bad);
  CHECK(errorOf({"HSET", "user:9", "age", ""}) == bad);
  CHECK(errorOf({"HSET", "user:9", "age", "4.2"}) == bad);
  CHECK(errorOf({"HSET", "user:9", "age", "2147483648"}) == bad);  // beyond integer
  CHECK(errorOf({"HSET", "user:9", "age", "++1"}) == bad);
  CHECK(errorOf({"HSET", "user:9", "age", "abc"}).find("not a valid integer") != std::string::npos);

  // PostgreSQL's int4 input takes blanks around and a '+' sign.
  const KeyWrite w = only(plan({"HSET", "user:9", "age", " +42 "}));
  CHECK(w.change.columns == Columns{{"age", " +42 "}});  // passed on as written
  CHECK(errorOf({"HSET", "user:9", "age", "-2147483648"}).empty());
  CHECK(errorOf({"HSET", "user:9", "age", "\t7\n"}).empty());
  // Text columns take anything but a NUL byte.
  CHECK(errorOf({"HSET", "user:9", "name", "abc"}).empty());
  CHECK(errorOf({"HSET", "user:9", "name", std::string_view("a\0b", 3)}) ==
        "ERR Larder: PostgreSQL text cannot hold a NUL byte (column 'name' of keyspace 'users')");
  CHECK(errorOf({"SET", "note:1", std::string_view("a\0b", 3)}).find("NUL byte") !=
        std::string::npos);
}

// Regression (found by these tests, fixed): plausibleInteger strips a '+' and then lets from_chars
// take a '-':
// "+-5" passes, PostgreSQL refuses it ("invalid input syntax for type
// integer") when the Flusher applies it, after the client was told OK.
TEST_CASE("HSET refuses a sign after a sign", "[server][write_plan]") {
  CHECK(errorOf({"HSET", "user:9", "age", "+-5"}) ==
        "ERR Larder: value for column 'age' of keyspace 'users' is not a valid integer");
}

TEST_CASE("HDEL clears nullable columns only", "[server][write_plan]") {
  const KeyWrite w = only(plan({"HDEL", "user:9", "email", "name"}));
  CHECK(w.op == "hdel");
  CHECK(w.op_args == Strings{"email", "name"});
  CHECK_FALSE(w.change.reset);
  CHECK(w.change.columns == Columns{{"email", std::nullopt}, {"name", std::nullopt}});
  CHECK_FALSE(w.change.empty());

  CHECK(errorOf({"HDEL", "user:9", "age"}) ==
        "ERR Larder: column 'age' of keyspace 'users' is NOT NULL; HDEL cannot clear it");
  CHECK(errorOf({"HDEL", "user:9", "email", "age"}).find("is NOT NULL; HDEL cannot clear it") !=
        std::string::npos);
  CHECK(errorOf({"HDEL", "user:9", "x"}) == "ERR Larder: 'x' is not a column of keyspace 'users'");
  CHECK(errorOf({"hdel", "user:9"}) == "ERR wrong number of arguments for 'hdel' command");
}

TEST_CASE("commands of the wrong shape answer WRONGTYPE", "[server][write_plan]") {
  CHECK(errorOf({"SET", "user:1", "v"}) == kWrongType);
  CHECK(errorOf({"GETSET", "user:1", "v"}) == kWrongType);
  CHECK(errorOf({"HSET", "note:1", "body", "v"}) == kWrongType);
  CHECK(errorOf({"HMSET", "note:1", "body", "v"}) == kWrongType);
  CHECK(errorOf({"HDEL", "note:1", "body"}) == kWrongType);
  CHECK(plan({"SET", "user:1", "v"}).writes.empty());
}

TEST_CASE("a key that cannot name a row is refused", "[server][write_plan]") {
  const std::string abc = "ERR Larder: 'abc' is not a valid id (bigint) for keyspace 'users'";
  CHECK(errorOf({"HSET", "user:abc", "name", "x"}) == abc);
  CHECK(errorOf({"HDEL", "user:abc", "name"}) == abc);
  CHECK(errorOf({"DEL", "user:abc"}) == abc);
  CHECK(errorOf({"SET", "note:+1", "v"}) ==
        "ERR Larder: '+1' is not a valid id (bigint) for keyspace 'notes'");
  CHECK(plan({"HSET", "user:abc", "name", "x"}).writes.empty());
}

TEST_CASE("EXPIRE and friends touch the cache only", "[server][write_plan]") {
  KeyWrite w = only(plan({"EXPIRE", "user:1", "100"}));
  CHECK(w.op == "ttl");
  CHECK(w.cache_only);
  CHECK(w.op_args == Strings{"EXPIRE", "100"});
  CHECK(w.change.empty());

  w = only(plan({"pexpire", "note:1", "100", "NX"}));
  CHECK(w.op == "ttl");
  CHECK(w.cache_only);
  CHECK(w.op_args == Strings{"PEXPIRE", "100", "NX"});

  w = only(plan({"PERSIST", "note:1"}));
  CHECK(w.op == "ttl");
  CHECK(w.cache_only);
  CHECK(w.op_args == Strings{"PERSIST"});
  CHECK(w.change.empty());

  w = only(plan({"EXPIREAT", "user:1", "1700000000"}));
  CHECK(w.op_args == Strings{"EXPIREAT", "1700000000"});

  CHECK(errorOf({"expire", "user:1"}) == "ERR wrong number of arguments for 'expire' command");
}

TEST_CASE("other writes on mapped keys are refused by name", "[server][write_plan]") {
  CHECK(errorOf({"INCR", "user:1"}) ==
        "ERR Larder: INCR is not supported on keys of keyspace 'users'");
  CHECK(errorOf({"append", "note:1", "x"}) ==
        "ERR Larder: APPEND is not supported on keys of keyspace 'notes'");
  CHECK(errorOf({"MSETNX", "plain", "1", "note:1", "x"}) ==
        "ERR Larder: MSETNX is not supported on keys of keyspace 'notes'");
  CHECK(plan({"INCR", "user:1"}).writes.empty());
}
