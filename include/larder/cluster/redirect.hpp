#pragma once
// The replies by which a cluster node says "not here" or "not now", in Redis'
// words (cluster.c clusterRedirectClient):
//
//   -MOVED 3999 127.0.0.1:6381   the slot lives there now: update the map, resend
//   -ASK 3999 127.0.0.1:6381     this key is migrating there: ASKING + resend, map unchanged
//   -TRYAGAIN ...                multi-key request during a migration: retry later
//   -CLUSTERDOWN ...             no quorum or an unserved slot: retry later
//
// Pure; the first byte decides the common case (not an error) at once.
#include <cstdint>
#include <string_view>

#include "larder/config/config.hpp"

namespace larder::cluster {

struct Redirect {
  enum class Kind : std::uint8_t { None, Moved, Ask, TryAgain, ClusterDown };
  Kind kind = Kind::None;
  int slot = -1;        // Moved, Ask
  config::Endpoint to;  // Moved, Ask; an empty host: the node that answered
};

Redirect classify(std::string_view frame);

}  // namespace larder::cluster
