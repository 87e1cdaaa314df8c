#include <catch2/catch.hpp>
#include <string>

#include "larder/cache/write_batch.hpp"
#include "larder/cache/write_scripts.hpp"

using namespace larder::cache;

// The rule both WAITs follow (one Redis's batch, a cluster's per node and
// turn): a write's reply stands only when enough replicas confirmed it.
TEST_CASE("WAIT's count decides what a write's client hears", "[cache][wait]") {
  CHECK(waitRequest(1, 300) == "*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$3\r\n300\r\n");
  CHECK(waitCount(":2\r\n") == 2);
  CHECK(waitCount(":0\r\n") == 0);
  CHECK(waitCount("-ERR Larder: Redis backend connection lost\r\n") == -1);
  CHECK(waitCount("") == -1);

  CHECK(unconfirmedError(1, 1, 300).empty());
  CHECK(unconfirmedError(2, 1, 300).empty());
  const std::string unconfirmed = unconfirmedError(0, 1, 300);
  CHECK(unconfirmed ==
        "-ERR Larder: the write is queued, but 0 of 1 replica(s) confirmed it within 300 ms "
        "(write_behind.wait_replicas)\r\n");
  CHECK(unconfirmedError(-1, 1, 300) ==
        "-ERR Larder: the write is queued, but WAIT failed within 300 ms "
        "(write_behind.wait_replicas)\r\n");

  // A write that changed something is unconfirmed; one that wrote nothing
  // (an error, a row to load first, a full queue) is answered as it is.
  CHECK(afterWait(":1\r\n", unconfirmed) == unconfirmed);
  CHECK(afterWait("+OK\r\n", unconfirmed) == unconfirmed);
  CHECK(afterWait("-WRONGTYPE x\r\n", unconfirmed) == "-WRONGTYPE x\r\n");
  CHECK(afterWait(kMissReply, unconfirmed) == kMissReply);
  CHECK(afterWait(kFullReply, unconfirmed) == kFullReply);
  CHECK(afterWait(":1\r\n", "") == ":1\r\n");
}
