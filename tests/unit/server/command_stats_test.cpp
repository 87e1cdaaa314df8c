#include "larder/server/command_stats.hpp"

#include <catch2/catch.hpp>
#include <string>

using namespace larder::server;

TEST_CASE("commands are counted under their name, in any case", "[metrics]") {
  CHECK(commandLabel(commandIndex("GET")) == "get");
  CHECK(commandLabel(commandIndex("hGetAll")) == "hgetall");
  CHECK(commandLabel(commandIndex("zscore")) == "zscore");
  CHECK(commandLabel(commandIndex("append")) == "append");
  for (std::size_t i = 0; i < kTrackedCommands.size(); ++i) {
    CHECK(commandIndex(kTrackedCommands[i]) == i);
  }
}

TEST_CASE("unknown, long or binary command names all count as other", "[metrics]") {
  CHECK(commandIndex("NOSUCHCOMMAND") == kOtherCommand);
  CHECK(commandIndex("") == kOtherCommand);
  CHECK(commandIndex(std::string(100, 'g')) == kOtherCommand);
  CHECK(commandIndex(std::string("g\0t", 3)) == kOtherCommand);
  CHECK(commandLabel(kOtherCommand) == "other");
}
