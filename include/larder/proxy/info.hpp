#pragma once
// INFO as Redis clients and dashboards expect it. Larder answers the sections
// that describe the proxy (server, clients, stats) by laying its own fields
// over the backend's (connected_clients is Larder's clients, redis_version
// stays the backend's), keeps the backend's other sections (memory,
// keyspace...), and adds its own "# Larder" section.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace larder::proxy {

using InfoFields = std::vector<std::pair<std::string, std::string>>;

struct InfoSection {
  std::string name;  // as in the header line: "Server", "Clients", "Larder"
  InfoFields fields;
};

// Lays each overlay over the backend section of the same name (a field
// replaces the backend's value in place; a new field goes at the end of the
// section); an overlay the backend did not send is added as a whole section,
// in order, after the backend's. `backend` is INFO's text ("" when Redis is
// unreachable). Lines end in CRLF as Redis' do.
std::string composeInfo(std::string_view backend, const std::vector<InfoSection>& overlays);

// The sections INFO's arguments name, lowercased; {"default"} when none.
std::vector<std::string> infoSectionsAsked(const std::vector<std::string_view>& args);

}  // namespace larder::proxy
