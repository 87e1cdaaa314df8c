#include "larder/proxy/info.hpp"

#include <catch2/catch.hpp>

using namespace larder::proxy;

TEST_CASE("INFO: Larder's fields replace the backend's in place and add the rest", "[info]") {
  const std::string backend =
      "# Server\r\nredis_version:7.0.15\r\nprocess_id:42\r\ntcp_port:6379\r\n\r\n"
      "# Clients\r\nconnected_clients:3\r\nblocked_clients:0\r\n\r\n"
      "# Keyspace\r\ndb0:keys=10,expires=0,avg_ttl=0\r\n";
  const std::string out =
      composeInfo(backend, {InfoSection{"Server", {{"process_id", "7"}, {"larder_version", "1"}}},
                            InfoSection{"Clients", {{"connected_clients", "250"}}},
                            InfoSection{"Larder", {{"keyspaces", "2"}}}});
  CHECK(out ==
        "# Server\r\nredis_version:7.0.15\r\nprocess_id:7\r\ntcp_port:6379\r\nlarder_version:1\r\n"
        "\r\n# Clients\r\nconnected_clients:250\r\nblocked_clients:0\r\n"
        "\r\n# Keyspace\r\ndb0:keys=10,expires=0,avg_ttl=0\r\n"
        "\r\n# Larder\r\nkeyspaces:2\r\n");
}

TEST_CASE("INFO: with no backend text, Larder's sections stand alone", "[info]") {
  CHECK(composeInfo("", {InfoSection{"Stats", {{"total_commands_processed", "5"}}},
                         InfoSection{"Larder", {{"a", "b"}}}}) ==
        "# Stats\r\ntotal_commands_processed:5\r\n\r\n# Larder\r\na:b\r\n");
}

TEST_CASE("INFO: section names match case-insensitively; others pass unchanged", "[info]") {
  CHECK(composeInfo("# Memory\r\nused_memory:100\r\n", {}) == "# Memory\r\nused_memory:100\r\n");
  CHECK(composeInfo("# stats\nx:1\n", {InfoSection{"Stats", {{"x", "2"}}}}) ==
        "# stats\r\nx:2\r\n");
}

TEST_CASE("INFO: the sections asked for, lowercased, without repeats", "[info]") {
  CHECK(infoSectionsAsked({}) == std::vector<std::string>{"default"});
  CHECK(infoSectionsAsked({"Clients", "LARDER", "clients"}) ==
        std::vector<std::string>{"clients", "larder"});
}
