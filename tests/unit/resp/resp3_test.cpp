#include "larder/resp/resp3.hpp"

#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "larder/resp/reply_scanner.hpp"

using larder::resp::pubSubToResp3;
using larder::resp::ReplyForms;
using larder::resp::resp3ShapeOf;
using larder::resp::toResp3;

namespace {

using Args = std::vector<std::string_view>;

// The RESP3 form of `frame`, the reply to `args`.
std::string r3(const Args& args, std::string_view frame) {
  std::string scratch;
  return std::string(toResp3(frame, resp3ShapeOf(args), scratch));
}

// ReplyForms::request as the session calls it, with the request's registry row.
void request(ReplyForms& forms, const Args& args, bool resp3, bool in_multi, std::uint64_t next,
             std::uint64_t head) {
  forms.request(larder::commands::Registry::get().resolve(args).command, args, resp3, in_multi,
                next, head);
}

std::string push(std::string_view frame) {
  std::string scratch;
  return std::string(pubSubToResp3(frame, scratch));
}

struct Case {
  Args args;
  std::string_view resp2;
  std::string_view resp3;
};

void checkAll(const std::vector<Case>& cases) {
  for (const auto& c : cases) {
    INFO("command: " << c.args[0]
                     << (c.args.size() > 1 ? std::string(" ") + std::string(c.args[1]) : ""));
    CHECK(r3(c.args, c.resp2) == c.resp3);
  }
}

}  // namespace

TEST_CASE("resp3: nulls become _, everything else passes as is", "[resp][resp3]") {
  checkAll({
      {{"GET", "k"}, "$-1\r\n", "_\r\n"},
      {{"GET", "k"}, "$1\r\nv\r\n", "$1\r\nv\r\n"},
      {{"LPOP", "k", "2"}, "*-1\r\n", "_\r\n"},
      {{"MGET", "a", "b"}, "*2\r\n$1\r\nv\r\n$-1\r\n", "*2\r\n$1\r\nv\r\n_\r\n"},
      {{"EXISTS", "a"}, ":1\r\n", ":1\r\n"},
      {{"SET", "a", "b"}, "+OK\r\n", "+OK\r\n"},
      {{"GET", "a"}, "-WRONGTYPE Operation\r\n", "-WRONGTYPE Operation\r\n"},
      {{"BLPOP", "k", "0.01"}, "*-1\r\n", "_\r\n"},
      // Nested nulls (GEOPOS of a missing member is a null array).
      {{"EVAL", "s", "0"},
       "*4\r\n:1\r\n$1\r\na\r\n$-1\r\n:1\r\n",
       "*4\r\n:1\r\n$1\r\na\r\n_\r\n:1\r\n"},
      {{"XINFO", "GROUPS", "x"},
       "*1\r\n*4\r\n$4\r\nname\r\n$1\r\ng\r\n$12\r\nentries-read\r\n$-1\r\n",
       "*1\r\n%2\r\n$4\r\nname\r\n$1\r\ng\r\n$12\r\nentries-read\r\n_\r\n"},
      // Unknown commands keep their reply (RESP2 frames are valid RESP3).
      {{"NOSUCH"}, "*2\r\n$1\r\na\r\n$1\r\nb\r\n", "*2\r\n$1\r\na\r\n$1\r\nb\r\n"},
      // Data that looks like a null inside a bulk is data.
      {{"GET", "k"}, "$5\r\n$-1\r\n\r\n", "$5\r\n$-1\r\n\r\n"},
      {{"LRANGE", "k", "0", "-1"}, "*1\r\n$5\r\n$-1\r\n\r\n", "*1\r\n$5\r\n$-1\r\n\r\n"},
  });
}

TEST_CASE("resp3: unchanged replies are not copied", "[resp][resp3]") {
  std::string scratch;
  const std::string_view frame = "*2\r\n$1\r\na\r\n$1\r\nb\r\n";
  CHECK(toResp3(frame, nullptr, scratch).data() == frame.data());
  const std::string_view bulk = "$3\r\nabc\r\n";
  CHECK(toResp3(bulk, resp3ShapeOf({"GET", "k"}), scratch).data() == bulk.data());
  const std::string_view status = "+OK\r\n";
  CHECK(toResp3(status, resp3ShapeOf({"HGETALL", "k"}), scratch).data() == status.data());
}

// Every expected RESP3 frame below is what redis-server 7.0.15 sent for the
// same command after HELLO 3, next to its RESP2 reply.
TEST_CASE("resp3: hashes, sets, config: maps and sets", "[resp][resp3]") {
  checkAll({
      {{"HGETALL", "h"},
       "*4\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\nv2\r\n",
       "%2\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\nv2\r\n"},
      {{"hgetall", "nokey"}, "*0\r\n", "%0\r\n"},
      {{"HRANDFIELD", "h", "2", "WITHVALUES"},
       "*4\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\nv2\r\n",
       "*2\r\n*2\r\n$2\r\nf1\r\n$2\r\nv1\r\n*2\r\n$2\r\nf2\r\n$2\r\nv2\r\n"},
      {{"HRANDFIELD", "h", "-2"},
       "*2\r\n$2\r\nf1\r\n$2\r\nf1\r\n",
       "*2\r\n$2\r\nf1\r\n$2\r\nf1\r\n"},
      {{"HINCRBYFLOAT", "h", "n", "1.5"}, "$3\r\n1.5\r\n", "$3\r\n1.5\r\n"},
      {{"INCRBYFLOAT", "f", "1.5"}, "$3\r\n1.5\r\n", "$3\r\n1.5\r\n"},
      {{"SMEMBERS", "s"},
       "*3\r\n$1\r\na\r\n$1\r\nc\r\n$1\r\nb\r\n",
       "~3\r\n$1\r\na\r\n$1\r\nc\r\n$1\r\nb\r\n"},
      {{"SMEMBERS", "nokey"}, "*0\r\n", "~0\r\n"},
      {{"SINTER", "a", "b"}, "*2\r\n$1\r\nc\r\n$1\r\nb\r\n", "~2\r\n$1\r\nc\r\n$1\r\nb\r\n"},
      {{"SUNION", "a", "b"}, "*1\r\n$1\r\nc\r\n", "~1\r\n$1\r\nc\r\n"},
      {{"SDIFF", "a", "b"}, "*1\r\n$1\r\na\r\n", "~1\r\n$1\r\na\r\n"},
      {{"SPOP", "s", "2"}, "*2\r\n$1\r\nb\r\n$1\r\nc\r\n", "~2\r\n$1\r\nb\r\n$1\r\nc\r\n"},
      {{"SPOP", "s"}, "$-1\r\n", "_\r\n"},
      {{"SPOP", "s"}, "$1\r\nb\r\n", "$1\r\nb\r\n"},
      {{"SRANDMEMBER", "s", "2"}, "*2\r\n$1\r\nc\r\n$1\r\nb\r\n", "*2\r\n$1\r\nc\r\n$1\r\nb\r\n"},
      {{"SMISMEMBER", "s", "a", "z"}, "*2\r\n:1\r\n:0\r\n", "*2\r\n:1\r\n:0\r\n"},
      {{"CONFIG", "GET", "maxmemory"},
       "*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n",
       "%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"},
      {{"config", "get", "nonexist"}, "*0\r\n", "%0\r\n"},
      {{"CONFIG", "SET", "a", "b"}, "+OK\r\n", "+OK\r\n"},
      {{"CLIENT", "TRACKINGINFO"},
       "*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n",
       "%3\r\n$5\r\nflags\r\n~1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n"},
      {{"LCS", "a", "b", "IDX"},
       "*4\r\n$7\r\nmatches\r\n*1\r\n*2\r\n*2\r\n:0\r\n:0\r\n*2\r\n:0\r\n:0\r\n$3\r\nlen\r\n:1\r\n",
       "%2\r\n$7\r\nmatches\r\n*1\r\n*2\r\n*2\r\n:0\r\n:0\r\n*2\r\n:0\r\n:0\r\n$3\r\nlen\r\n:"
       "1\r\n"},
      {{"LCS", "a", "b"}, "$1\r\nv\r\n", "$1\r\nv\r\n"},
  });
}

TEST_CASE("resp3: sorted sets: scores are doubles", "[resp][resp3]") {
  checkAll({
      {{"ZSCORE", "z", "a"}, "$1\r\n1\r\n", ",1\r\n"},
      {{"ZSCORE", "z", "nope"}, "$-1\r\n", "_\r\n"},
      {{"ZSCORE", "inf", "a"}, "$3\r\ninf\r\n", ",inf\r\n"},
      {{"ZINCRBY", "z", "1", "a"}, "$4\r\n-inf\r\n", ",-inf\r\n"},
      {{"ZMSCORE", "z", "a", "nope", "b"},
       "*3\r\n$1\r\n1\r\n$-1\r\n$3\r\n2.5\r\n",
       "*3\r\n,1\r\n_\r\n,2.5\r\n"},
      {{"ZADD", "z", "INCR", "1", "a"}, "$1\r\n4\r\n", ",4\r\n"},
      {{"ZADD", "z", "gt", "CH", "incr", "1", "a"}, "$1\r\n2\r\n", ",2\r\n"},
      {{"ZADD", "z", "XX", "INCR", "1", "nope"}, "$-1\r\n", "_\r\n"},
      {{"ZADD", "z", "1", "incr"}, ":1\r\n", ":1\r\n"},
      {{"ZRANGE", "z", "0", "-1", "WITHSCORES"},
       "*4\r\n$1\r\nb\r\n$3\r\n2.5\r\n$1\r\na\r\n$23\r\n1.0000000000000001e+300\r\n",
       "*2\r\n*2\r\n$1\r\nb\r\n,2.5\r\n*2\r\n$1\r\na\r\n,1.0000000000000001e+300\r\n"},
      {{"zrange", "z", "-inf", "+inf", "BYSCORE", "withscores"},
       "*2\r\n$1\r\na\r\n$1\r\n1\r\n",
       "*1\r\n*2\r\n$1\r\na\r\n,1\r\n"},
      {{"ZRANGE", "z", "0", "-1"}, "*1\r\n$1\r\nb\r\n", "*1\r\n$1\r\nb\r\n"},
      // A key or bound called "withscores" is not the option.
      {{"ZRANGE", "withscores", "0", "-1"},
       "*2\r\n$1\r\na\r\n$1\r\nb\r\n",
       "*2\r\n$1\r\na\r\n$1\r\nb\r\n"},
      {{"ZRANGE", "z", "0", "-1", "WITHSCORES"}, "*0\r\n", "*0\r\n"},
      {{"ZREVRANGE", "z", "0", "-1", "WITHSCORES"},
       "*2\r\n$1\r\na\r\n$1\r\n5\r\n",
       "*1\r\n*2\r\n$1\r\na\r\n,5\r\n"},
      {{"ZRANGEBYSCORE", "z", "-inf", "+inf", "WITHSCORES", "LIMIT", "0", "1"},
       "*2\r\n$1\r\nb\r\n$3\r\n2.5\r\n",
       "*1\r\n*2\r\n$1\r\nb\r\n,2.5\r\n"},
      {{"ZREVRANGEBYSCORE", "z", "+inf", "-inf", "WITHSCORES"},
       "*2\r\n$1\r\na\r\n$1\r\n5\r\n",
       "*1\r\n*2\r\n$1\r\na\r\n,5\r\n"},
      {{"ZUNION", "2", "z", "z2", "WEIGHTS", "1", "2", "AGGREGATE", "MAX", "WITHSCORES"},
       "*2\r\n$1\r\nd\r\n$2\r\n10\r\n",
       "*1\r\n*2\r\n$1\r\nd\r\n,10\r\n"},
      {{"ZINTER", "2", "z", "withscores"}, "*1\r\n$1\r\nb\r\n", "*1\r\n$1\r\nb\r\n"},
      {{"ZDIFF", "2", "z", "z2", "WITHSCORES"},
       "*2\r\n$1\r\nc\r\n$1\r\n3\r\n",
       "*1\r\n*2\r\n$1\r\nc\r\n,3\r\n"},
      {{"ZRANDMEMBER", "z", "-2", "WITHSCORES"},
       "*4\r\n$1\r\na\r\n$1\r\n5\r\n$1\r\na\r\n$1\r\n5\r\n",
       "*2\r\n*2\r\n$1\r\na\r\n,5\r\n*2\r\n$1\r\na\r\n,5\r\n"},
      {{"ZRANDMEMBER", "z", "2"}, "*1\r\n$1\r\na\r\n", "*1\r\n$1\r\na\r\n"},
      {{"ZPOPMIN", "z"}, "*2\r\n$1\r\nb\r\n$1\r\n1\r\n", "*2\r\n$1\r\nb\r\n,1\r\n"},
      {{"ZPOPMIN", "nokey"}, "*0\r\n", "*0\r\n"},
      {{"ZPOPMAX", "z", "1"}, "*2\r\n$1\r\nb\r\n$3\r\n2.5\r\n", "*1\r\n*2\r\n$1\r\nb\r\n,2.5\r\n"},
      {{"BZPOPMAX", "z", "0"},
       "*3\r\n$1\r\nz\r\n$2\r\nzz\r\n$1\r\n3\r\n",
       "*3\r\n$1\r\nz\r\n$2\r\nzz\r\n,3\r\n"},
      {{"BZPOPMIN", "nokey", "0.01"}, "*-1\r\n", "_\r\n"},
      {{"ZMPOP", "1", "z2", "MIN", "COUNT", "1"},
       "*2\r\n$2\r\nz2\r\n*1\r\n*2\r\n$1\r\nb\r\n$1\r\n1\r\n",
       "*2\r\n$2\r\nz2\r\n*1\r\n*2\r\n$1\r\nb\r\n,1\r\n"},
      {{"BZMPOP", "0.01", "1", "nokey", "MIN"}, "*-1\r\n", "_\r\n"},
      {{"ZRANK", "z", "a"}, ":2\r\n", ":2\r\n"},
      {{"ZRANK", "z", "a", "WITHSCORE"}, "*2\r\n:2\r\n$1\r\n5\r\n", "*2\r\n:2\r\n,5\r\n"},
      {{"ZSCAN", "z", "0"},
       "*2\r\n$1\r\n0\r\n*2\r\n$1\r\nb\r\n$3\r\n2.5\r\n",
       "*2\r\n$1\r\n0\r\n*2\r\n$1\r\nb\r\n$3\r\n2.5\r\n"},
  });
}

TEST_CASE("resp3: geo coordinates are doubles", "[resp][resp3]") {
  checkAll({
      {{"GEOPOS", "geo", "Palermo", "nope"},
       "*2\r\n*2\r\n$20\r\n13.36138933897018433\r\n$20\r\n38.11555639549629859\r\n*-1\r\n",
       "*2\r\n*2\r\n,13.36138933897018433\r\n,38.11555639549629859\r\n_\r\n"},
      {{"GEODIST", "geo", "a", "b"}, "$11\r\n166274.1516\r\n", "$11\r\n166274.1516\r\n"},
      {{"GEORADIUS", "geo", "15", "37", "200", "km", "WITHCOORD"},
       "*1\r\n*2\r\n$7\r\nPalermo\r\n*2\r\n$2\r\n13\r\n$2\r\n38\r\n",
       "*1\r\n*2\r\n$7\r\nPalermo\r\n*2\r\n,13\r\n,38\r\n"},
      {{"GEOSEARCH", "geo", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "WITHCOORD",
        "WITHHASH", "WITHDIST"},
       "*1\r\n*4\r\n$7\r\nPalermo\r\n$8\r\n190.4424\r\n:3479099956230698\r\n*2\r\n$2\r\n13\r\n$"
       "2\r\n38\r\n",
       "*1\r\n*4\r\n$7\r\nPalermo\r\n$8\r\n190.4424\r\n:3479099956230698\r\n*2\r\n,13\r\n,38\r\n"},
      {{"GEOSEARCH", "geo", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "WITHDIST",
        "WITHCOORD"},
       "*1\r\n*3\r\n$7\r\nCatania\r\n$7\r\n56.4413\r\n*2\r\n$2\r\n15\r\n$2\r\n37\r\n",
       "*1\r\n*3\r\n$7\r\nCatania\r\n$7\r\n56.4413\r\n*2\r\n,15\r\n,37\r\n"},
      // A member called "withcoord" is an argument of FROMMEMBER, not the option.
      {{"GEOSEARCH", "geo", "FROMMEMBER", "withcoord", "BYRADIUS", "1", "km"},
       "*1\r\n$9\r\nwithcoord\r\n",
       "*1\r\n$9\r\nwithcoord\r\n"},
      {{"GEORADIUSBYMEMBER_RO", "geo", "Palermo", "200", "km", "WITHHASH"},
       "*1\r\n*2\r\n$7\r\nPalermo\r\n:3479099956230698\r\n",
       "*1\r\n*2\r\n$7\r\nPalermo\r\n:3479099956230698\r\n"},
  });
}

TEST_CASE("resp3: streams", "[resp][resp3]") {
  checkAll({
      {{"XREAD", "COUNT", "1", "STREAMS", "x", "0"},
       "*1\r\n*2\r\n$1\r\nx\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
       "%1\r\n$1\r\nx\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"},
      {{"XREADGROUP", "GROUP", "g", "c", "STREAMS", "x", ">"}, "*-1\r\n", "_\r\n"},
      {{"XRANGE", "x", "-", "+"},
       "*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
       "*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"},
      {{"XINFO", "CONSUMERS", "x", "g"},
       "*1\r\n*6\r\n$4\r\nname\r\n$2\r\nc1\r\n$7\r\npending\r\n:1\r\n$4\r\nidle\r\n:9\r\n",
       "*1\r\n%3\r\n$4\r\nname\r\n$2\r\nc1\r\n$7\r\npending\r\n:1\r\n$4\r\nidle\r\n:9\r\n"},
      {{"XINFO", "STREAM", "x"},
       "*6\r\n$6\r\nlength\r\n:0\r\n$6\r\ngroups\r\n:0\r\n$11\r\nfirst-entry\r\n$-1\r\n",
       "%3\r\n$6\r\nlength\r\n:0\r\n$6\r\ngroups\r\n:0\r\n$11\r\nfirst-entry\r\n_\r\n"},
      {{"XINFO", "STREAM", "x", "FULL"},
       "*4\r\n$7\r\nentries\r\n*0\r\n$6\r\ngroups\r\n*1\r\n*6\r\n$4\r\nname\r\n$1\r\ng\r\n"
       "$7\r\npending\r\n*1\r\n*3\r\n$3\r\n1-1\r\n:17\r\n:1\r\n$9\r\nconsumers\r\n*1\r\n*4\r\n"
       "$4\r\nname\r\n$2\r\nc1\r\n$7\r\npending\r\n*0\r\n",
       "%2\r\n$7\r\nentries\r\n*0\r\n$6\r\ngroups\r\n*1\r\n%3\r\n$4\r\nname\r\n$1\r\ng\r\n"
       "$7\r\npending\r\n*1\r\n*3\r\n$3\r\n1-1\r\n:17\r\n:1\r\n$9\r\nconsumers\r\n*1\r\n%2\r\n"
       "$4\r\nname\r\n$2\r\nc1\r\n$7\r\npending\r\n*0\r\n"},
      {{"XINFO", "HELP"}, "*1\r\n+XINFO\r\n", "*1\r\n+XINFO\r\n"},
  });
}

TEST_CASE("resp3: server commands", "[resp][resp3]") {
  checkAll({
      {{"INFO", "server"}, "$9\r\n# Server\n\r\n", "=13\r\ntxt:# Server\n\r\n"},
      {{"CLIENT", "LIST"}, "$0\r\n\r\n", "=4\r\ntxt:\r\n"},
      {{"client", "info"}, "$3\r\nid=\r\n", "=7\r\ntxt:id=\r\n"},
      {{"CLIENT", "GETNAME"}, "$-1\r\n", "_\r\n"},
      {{"MEMORY", "DOCTOR"}, "$2\r\nHi\r\n", "=6\r\ntxt:Hi\r\n"},
      {{"LATENCY", "DOCTOR"}, "$2\r\nHi\r\n", "=6\r\ntxt:Hi\r\n"},
      {{"LOLWUT"}, "$2\r\nHi\r\n", "=6\r\ntxt:Hi\r\n"},
      {{"MEMORY", "STATS"},
       "*6\r\n$14\r\npeak.allocated\r\n:1394520\r\n$4\r\ndb.0\r\n*2\r\n$10\r\nkeys.count\r\n:9\r\n"
       "$18\r\ndataset.percentage\r\n$18\r\n90.697227478027344\r\n",
       "%3\r\n$14\r\npeak.allocated\r\n:1394520\r\n$4\r\ndb.0\r\n%1\r\n$10\r\nkeys.count\r\n:9\r\n"
       "$18\r\ndataset.percentage\r\n,90.697227478027344\r\n"},
      {{"LATENCY", "HISTOGRAM", "get"},
       "*2\r\n$3\r\nget\r\n*4\r\n$5\r\ncalls\r\n:2\r\n$14\r\nhistogram_usec\r\n*4\r\n:1\r\n:1\r\n:"
       "2\r\n:2\r\n",
       "%1\r\n$3\r\nget\r\n%2\r\n$5\r\ncalls\r\n:2\r\n$14\r\nhistogram_usec\r\n%2\r\n:1\r\n:1\r\n:"
       "2\r\n:2\r\n"},
      {{"ACL", "GETUSER", "u1"},
       "*6\r\n$5\r\nflags\r\n*1\r\n$2\r\non\r\n$9\r\npasswords\r\n*0\r\n$9\r\nselectors\r\n*1\r\n*"
       "2\r\n"
       "$4\r\nkeys\r\n$3\r\n~x*\r\n",
       "%3\r\n$5\r\nflags\r\n~1\r\n$2\r\non\r\n$9\r\npasswords\r\n*0\r\n$9\r\nselectors\r\n*1\r\n%"
       "1\r\n"
       "$4\r\nkeys\r\n$3\r\n~x*\r\n"},
      {{"ACL", "LOG"},
       "*1\r\n*4\r\n$5\r\ncount\r\n:2\r\n$11\r\nage-seconds\r\n$21\r\n0.0060000000000000001\r\n",
       "*1\r\n%2\r\n$5\r\ncount\r\n:2\r\n$11\r\nage-seconds\r\n,0.0060000000000000001\r\n"},
      {{"ACL", "LOG", "RESET"}, "+OK\r\n", "+OK\r\n"},
      {{"FUNCTION", "STATS"},
       "*4\r\n$14\r\nrunning_script\r\n$-1\r\n$7\r\nengines\r\n*2\r\n$3\r\nLUA\r\n*4\r\n"
       "$15\r\nlibraries_count\r\n:0\r\n$15\r\nfunctions_count\r\n:0\r\n",
       "%2\r\n$14\r\nrunning_script\r\n_\r\n$7\r\nengines\r\n%1\r\n$3\r\nLUA\r\n%2\r\n"
       "$15\r\nlibraries_count\r\n:0\r\n$15\r\nfunctions_count\r\n:0\r\n"},
      {{"FUNCTION", "LIST"},
       "*1\r\n*4\r\n$12\r\nlibrary_name\r\n$1\r\nl\r\n$9\r\nfunctions\r\n*1\r\n*4\r\n$4\r\nname\r\n"
       "$1\r\nf\r\n$5\r\nflags\r\n*1\r\n$9\r\nno-writes\r\n",
       "*1\r\n%2\r\n$12\r\nlibrary_name\r\n$1\r\nl\r\n$9\r\nfunctions\r\n*1\r\n%2\r\n$4\r\nname\r\n"
       "$1\r\nf\r\n$5\r\nflags\r\n~1\r\n$9\r\nno-writes\r\n"},
      {{"MODULE", "LIST"}, "*0\r\n", "*0\r\n"},
      {{"HELLO"},
       "*4\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nmodules\r\n*0\r\n",
       "%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nmodules\r\n*0\r\n"},
  });
}

TEST_CASE("resp3: COMMAND INFO and COMMAND DOCS nest sets and maps", "[resp][resp3]") {
  checkAll({
      {{"COMMAND", "INFO", "nosuch", "get"},
       "*2\r\n$-1\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n"
       "*1\r\n+@read\r\n*0\r\n*1\r\n*4\r\n$5\r\nflags\r\n*1\r\n+RO\r\n$12\r\nbegin_search\r\n"
       "*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n*0\r\n",
       "*2\r\n_\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n"
       "~1\r\n+@read\r\n~0\r\n~1\r\n%2\r\n$5\r\nflags\r\n~1\r\n+RO\r\n$12\r\nbegin_search\r\n"
       "%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n%1\r\n$5\r\nindex\r\n:1\r\n~0\r\n"},
      // Subcommands that exist stay an array, of command infos.
      {{"COMMAND", "INFO", "config"},
       "*1\r\n*10\r\n$6\r\nconfig\r\n:-2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*1\r\n+@slow\r\n*0\r\n*0\r\n"
       "*1\r\n*10\r\n$10\r\nconfig|get\r\n:-3\r\n*1\r\n+admin\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*"
       "0\r\n*0\r\n",
       "*1\r\n*10\r\n$6\r\nconfig\r\n:-2\r\n~0\r\n:0\r\n:0\r\n:0\r\n~1\r\n+@slow\r\n~0\r\n~0\r\n"
       "*1\r\n*10\r\n$10\r\nconfig|get\r\n:-3\r\n~1\r\n+admin\r\n:0\r\n:0\r\n:0\r\n~0\r\n~0\r\n~"
       "0\r\n~0\r\n"},
      {{"COMMAND", "DOCS", "config"},
       "*2\r\n$6\r\nconfig\r\n*4\r\n$5\r\nsince\r\n$5\r\n2.0.0\r\n$11\r\nsubcommands\r\n*2\r\n"
       "$10\r\nconfig|get\r\n*6\r\n$7\r\nhistory\r\n*1\r\n*2\r\n$5\r\n7.0.0\r\n$1\r\nx\r\n"
       "$9\r\narguments\r\n*1\r\n*6\r\n$4\r\nname\r\n$1\r\np\r\n$5\r\nflags\r\n*1\r\n+multiple\r\n"
       "$9\r\narguments\r\n*1\r\n*2\r\n$4\r\nname\r\n$1\r\nq\r\n$9\r\ndoc_flags\r\n*0\r\n",
       "%1\r\n$6\r\nconfig\r\n%2\r\n$5\r\nsince\r\n$5\r\n2.0.0\r\n$11\r\nsubcommands\r\n%1\r\n"
       "$10\r\nconfig|get\r\n%3\r\n$7\r\nhistory\r\n~1\r\n*2\r\n$5\r\n7.0.0\r\n$1\r\nx\r\n"
       "$9\r\narguments\r\n*1\r\n%3\r\n$4\r\nname\r\n$1\r\np\r\n$5\r\nflags\r\n~1\r\n+multiple\r\n"
       "$9\r\narguments\r\n*1\r\n%1\r\n$4\r\nname\r\n$1\r\nq\r\n$9\r\ndoc_flags\r\n~0\r\n"},
      {{"COMMAND", "GETKEYSANDFLAGS", "set", "a", "b"},
       "*1\r\n*2\r\n$1\r\na\r\n*2\r\n+OW\r\n+update\r\n",
       "*1\r\n*2\r\n$1\r\na\r\n~2\r\n+OW\r\n+update\r\n"},
      {{"COMMAND", "COUNT"}, ":240\r\n", ":240\r\n"},
      {{"COMMAND", "GETKEYS", "set", "a", "b"}, "*1\r\n$1\r\na\r\n", "*1\r\n$1\r\na\r\n"},
  });
}

TEST_CASE("resp3: a reply without the expected structure gets the generic form", "[resp][resp3]") {
  checkAll({
      // A map needs pairs; XREAD needs [key, value] pairs.
      {{"HGETALL", "h"},
       "*3\r\n$1\r\na\r\n$-1\r\n$1\r\nb\r\n",
       "*3\r\n$1\r\na\r\n_\r\n$1\r\nb\r\n"},
      {{"XREAD", "STREAMS", "x", "0"}, "*1\r\n$1\r\nx\r\n", "*1\r\n$1\r\nx\r\n"},
      {{"ZRANGE", "z", "0", "1", "WITHSCORES"}, "*1\r\n$1\r\na\r\n", "*1\r\n$1\r\na\r\n"},
      // A double that is not a number stays a bulk string.
      {{"ZSCORE", "z", "a"}, "$3\r\na b\r\n", "$3\r\na b\r\n"},
      // RESP3 frames pass unchanged.
      {{"HGETALL", "h"}, "%1\r\n$1\r\na\r\n$1\r\nb\r\n", "%1\r\n$1\r\na\r\n$1\r\nb\r\n"},
      {{"MGET", "a"}, "*2\r\n_\r\n$-1\r\n", "*2\r\n_\r\n_\r\n"},
  });
  // Malformed frames come back unchanged.
  std::string scratch;
  CHECK(toResp3("*2\r\n$1\r\na\r\n", resp3ShapeOf({"HGETALL", "h"}), scratch) ==
        "*2\r\n$1\r\na\r\n");
  CHECK(toResp3("*1\r\n$-1\r\n:x\r\n", nullptr, scratch) == "*1\r\n$-1\r\n:x\r\n");
  CHECK(toResp3("*1\r\n$9\r\nab\r\n", resp3ShapeOf({"ZSCORE", "z", "a"}), scratch) ==
        "*1\r\n$9\r\nab\r\n");
  // Deep nesting is bounded: the frame passes unchanged rather than recursing on.
  std::string deep;
  for (int i = 0; i < 200; ++i) deep += "*1\r\n";
  deep += "$-1\r\n";
  CHECK(toResp3(deep, nullptr, scratch) == deep);
}

TEST_CASE("resp3: pub/sub frames become push frames", "[resp][resp3]") {
  CHECK(push("*3\r\n$9\r\nsubscribe\r\n$3\r\nch1\r\n:1\r\n") ==
        ">3\r\n$9\r\nsubscribe\r\n$3\r\nch1\r\n:1\r\n");
  CHECK(push("*3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhello\r\n") ==
        ">3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhello\r\n");
  CHECK(push("*4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$2\r\npx\r\n$2\r\nhi\r\n") ==
        ">4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$2\r\npx\r\n$2\r\nhi\r\n");
  CHECK(push("*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n") ==
        ">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n");
  CHECK(push("*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:0\r\n") ==
        ">3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:0\r\n");
  CHECK(push("*3\r\n$10\r\nssubscribe\r\n$3\r\nsch\r\n:1\r\n") ==
        ">3\r\n$10\r\nssubscribe\r\n$3\r\nsch\r\n:1\r\n");
  CHECK(push("*3\r\n$8\r\nsmessage\r\n$3\r\nsch\r\n$1\r\nm\r\n") ==
        ">3\r\n$8\r\nsmessage\r\n$3\r\nsch\r\n$1\r\nm\r\n");
  // PING while subscribed answers as outside pub/sub in RESP3.
  CHECK(push("*2\r\n$4\r\npong\r\n$0\r\n\r\n") == "+PONG\r\n");
  CHECK(push("*2\r\n$4\r\npong\r\n$1\r\nx\r\n") == "$1\r\nx\r\n");
  // Anything else: the generic form.
  CHECK(push("-ERR Can't execute 'get'\r\n") == "-ERR Can't execute 'get'\r\n");
  CHECK(push("+PONG\r\n") == "+PONG\r\n");
  CHECK(push("*3\r\n$7\r\nmessagE\r\n$1\r\na\r\n$1\r\nb\r\n") ==
        "*3\r\n$7\r\nmessagE\r\n$1\r\na\r\n$1\r\nb\r\n");
  CHECK(push("*3\r\n$8\r\npmessage\r\n$1\r\na\r\n$1\r\nb\r\n") ==
        "*3\r\n$8\r\npmessage\r\n$1\r\na\r\n$1\r\nb\r\n");
  CHECK(push("*4\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n") ==
        "*4\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n_\r\n");
}

TEST_CASE("ReplyForms: replies keep the protocol they were asked in", "[resp][resp3]") {
  ReplyForms forms;
  const std::string_view nil = "$-1\r\n";
  const std::string_view hash = "*2\r\n$1\r\na\r\n$1\r\nb\r\n";
  CHECK_FALSE(forms.active());
  request(forms, {"GET", "k"}, false, false, 1, 1);  // a RESP2 session stays inactive
  CHECK_FALSE(forms.active());

  // Tag 1 (GET, RESP2) is still outstanding when HELLO 3 (tag 2) switches.
  forms.switched(true, 2, 1);
  CHECK(forms.active());
  request(forms, {"HGETALL", "h"}, true, false, 3, 1);
  request(forms, {"GET", "k"}, true, false, 4, 1);
  // Replies arrive out of order.
  CHECK(forms.translate(3, hash, 1) == "%1\r\n$1\r\na\r\n$1\r\nb\r\n");
  CHECK(forms.translate(1, nil, 1) == nil);
  CHECK(forms.translate(2, hash, 2) == "%1\r\n$1\r\na\r\n$1\r\nb\r\n");  // HELLO's own map
  CHECK(forms.translate(4, nil, 4) == "_\r\n");

  // HELLO 2 (tag 6) with an HGETALL (tag 5) still outstanding in RESP3.
  request(forms, {"HGETALL", "h"}, true, false, 5, 5);
  request(forms, {"HELLO", "2"}, true, false, 6, 5);
  forms.switched(false, 6, 5);
  request(forms, {"HGETALL", "h"}, false, false, 7, 5);
  CHECK(forms.translate(7, hash, 5) == hash);
  CHECK(forms.translate(6, hash, 5) == hash);
  CHECK(forms.translate(5, hash, 5) == "%1\r\n$1\r\na\r\n$1\r\nb\r\n");
  CHECK(forms.active());
  // Once no RESP3 reply is outstanding, the session is back to the fast path.
  request(forms, {"GET", "k"}, false, false, 8, 8);
  CHECK_FALSE(forms.active());
}

TEST_CASE("ReplyForms: requests that take no slot share the next request's tag", "[resp][resp3]") {
  ReplyForms forms;
  forms.switched(true, 1, 1);
  request(forms, {"SUBSCRIBE", "ch"}, true, false, 2, 2);  // answered on the stream, no tag
  request(forms, {"ZSCORE", "z", "a"}, true, false, 2, 2);
  CHECK(forms.translate(2, "$1\r\n1\r\n", 2) == ",1\r\n");
}

TEST_CASE("ReplyForms: EXEC's elements take the queued commands' shapes", "[resp][resp3]") {
  ReplyForms forms;
  forms.switched(true, 1, 1);
  request(forms, {"MULTI"}, true, false, 2, 2);
  request(forms, {"GET", "nokey"}, true, true, 3, 3);
  request(forms, {"ZSCORE", "z", "a"}, true, true, 4, 4);
  request(forms, {"HGETALL", "h"}, true, true, 5, 5);
  CHECK(forms.translate(4, "+QUEUED\r\n", 4) == "+QUEUED\r\n");
  request(forms, {"EXEC"}, true, true, 6, 6);
  CHECK(forms.translate(6, "*3\r\n$-1\r\n$1\r\n5\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n", 6) ==
        "*3\r\n_\r\n,5\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n");

  // A discarded transaction leaves nothing for the next EXEC.
  request(forms, {"MULTI"}, true, false, 7, 7);
  request(forms, {"ZSCORE", "z", "a"}, true, true, 8, 8);
  request(forms, {"DISCARD"}, true, true, 9, 9);
  request(forms, {"MULTI"}, true, false, 10, 10);
  request(forms, {"GET", "k"}, true, true, 11, 11);
  request(forms, {"exec"}, true, true, 12, 12);
  CHECK(forms.translate(12, "*1\r\n$1\r\n5\r\n", 12) == "*1\r\n$1\r\n5\r\n");
  // EXEC aborted by WATCH, or by an error while queueing.
  request(forms, {"MULTI"}, true, false, 13, 13);
  request(forms, {"EXEC"}, true, true, 14, 14);
  CHECK(forms.translate(14, "*-1\r\n", 14) == "_\r\n");
}

TEST_CASE("resp3ShapeOf: commands and arguments", "[resp][resp3]") {
  CHECK(resp3ShapeOf({}) == nullptr);
  CHECK(resp3ShapeOf({"GET", "k"}) == nullptr);
  CHECK(resp3ShapeOf({"a-command-name-longer-than-any-real-one-there-is"}) == nullptr);
  CHECK(resp3ShapeOf({"HGETALL", "h"}) != nullptr);
  CHECK(resp3ShapeOf({"hGeTaLl", "h"}) == resp3ShapeOf({"HGETALL", "h"}));
  CHECK(resp3ShapeOf({"CONFIG"}) == nullptr);
  CHECK(resp3ShapeOf({"CONFIG", "SET", "a", "b"}) == nullptr);
  CHECK(resp3ShapeOf({"ZRANGE", "z", "0", "-1"}) == nullptr);
  CHECK(resp3ShapeOf({"ZUNION", "x", "z", "WITHSCORES"}) == nullptr);
  CHECK(resp3ShapeOf({"ZUNION", "2", "z", "withscores"}) == nullptr);  // the second key
  CHECK(resp3ShapeOf({"ZUNION", "1", "z", "withscores"}) != nullptr);
  CHECK(resp3ShapeOf({"SPOP", "s"}) == nullptr);
  CHECK(resp3ShapeOf({"COMMAND"}) == resp3ShapeOf({"COMMAND", "INFO", "get"}));
  CHECK(resp3ShapeOf({"COMMAND", "LIST"}) == nullptr);
}

TEST_CASE("resp3: damaged frames never crash, whole frames stay whole", "[resp][resp3]") {
  // Every output for a complete input frame is exactly one complete frame.
  const std::vector<std::string_view> frames = {
      "*4\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$-1\r\n",
      "*2\r\n*2\r\n$1\r\nx\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n$-1\r\n",
      "*3\r\n$-1\r\n*-1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n",
      "*10\r\n$3\r\nget\r\n:2\r\n*1\r\n+a\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n*1\r\n*2\r\n$"
      "5\r\nflags\r\n*0\r\n",
      "$4\r\n-inf\r\n",
      "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n",
  };
  const std::vector<Args> commands = {
      {"HGETALL", "h"}, {"XREAD", "STREAMS", "x", "0"}, {"ZRANGE", "z", "0", "1", "WITHSCORES"},
      {"COMMAND"},      {"ZSCORE", "z", "a"},           {"MEMORY", "STATS"},
      {"INFO"},         {"ZMPOP", "1", "z", "MIN"},     {"GET", "k"}};
  auto wholeFrame = [](std::string_view s) {
    larder::resp::ReplyScanner scanner;
    return scanner.scan(s) == larder::resp::ScanStatus::Complete && scanner.frameSize() == s.size();
  };
  std::mt19937 rng(7);
  std::string scratch;
  for (std::string_view original : frames) {
    for (int round = 0; round < 2000; ++round) {
      std::string frame(original);
      if (round > 0) {
        const auto at = rng() % frame.size();
        switch (rng() % 3) {
          case 0:
            frame[at] = static_cast<char>(rng() % 256);
            break;
          case 1:
            frame.resize(at);
            break;
          default:
            frame.insert(at, 1, "*$:-_%\r\n0123456789"[rng() % 19]);
        }
      }
      for (const auto& args : commands) {
        const std::string_view out = toResp3(frame, resp3ShapeOf(args), scratch);
        if (wholeFrame(frame)) CHECK(wholeFrame(out));
        const std::string_view pushed = pubSubToResp3(frame, scratch);
        if (wholeFrame(frame)) CHECK(wholeFrame(pushed));
      }
    }
  }
}
