#include "larder/server/command_table.hpp"

#include <catch2/catch.hpp>
#include <string_view>
#include <vector>

using namespace larder::server;

namespace {
CommandInfo of(std::vector<std::string_view> args) { return classify(args); }
}  // namespace

TEST_CASE("ordinary commands are forwarded, in any case", "[server]") {
  CHECK(of({"GET", "k"}).kind == CommandKind::Forward);
  CHECK(of({"hset", "h", "f", "v"}).kind == CommandKind::Forward);
  CHECK(of({"XREAD", "COUNT", "1", "STREAMS", "s", "0"}).kind == CommandKind::Forward);
  CHECK(of({"NOSUCHCOMMAND"}).kind == CommandKind::Forward);
  CHECK(of({std::string_view("averyveryveryverylongcommandnamethatislong")}).kind ==
        CommandKind::Forward);
}

TEST_CASE("connection state is answered locally", "[server]") {
  CHECK(of({"ping"}).local == LocalCommand::Ping);
  CHECK(of({"PiNg"}).kind == CommandKind::Local);
  CHECK(of({"AUTH", "x"}).local == LocalCommand::Auth);
  CHECK(of({"select", "1"}).local == LocalCommand::Select);
  CHECK(of({"CLIENT", "SETNAME", "x"}).local == LocalCommand::Client);
  CHECK(of({"QUIT"}).local == LocalCommand::Quit);
}

TEST_CASE("stateful commands pin a backend connection", "[server]") {
  CHECK(of({"MULTI"}).kind == CommandKind::Transaction);
  CHECK(of({"watch", "k"}).kind == CommandKind::Transaction);
  CHECK(of({"SUBSCRIBE", "c"}).kind == CommandKind::PubSub);
  CHECK(of({"punsubscribe"}).kind == CommandKind::PubSub);
  CHECK(of({"BLPOP", "q", "0"}).kind == CommandKind::Blocking);
  CHECK(of({"XREAD", "BLOCK", "0", "STREAMS", "s", "$"}).kind == CommandKind::Blocking);
  CHECK(of({"xreadgroup", "GROUP", "g", "c", "block", "10", "STREAMS", "s", ">"}).kind ==
        CommandKind::Blocking);
  CHECK(of({"CLIENT", "TRACKING", "on"}).kind == CommandKind::Sticky);
}

TEST_CASE("commands that would break multiplexing are refused", "[server]") {
  CHECK(of({"MONITOR"}).kind == CommandKind::Refused);
  CHECK(of({"CLIENT", "REPLY", "OFF"}).kind == CommandKind::Refused);
  CHECK(of({"shutdown"}).kind == CommandKind::Refused);
}
