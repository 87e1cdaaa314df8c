#pragma once
// While keyspaces exist, client traffic runs in Redis as a restricted ACL user
// (redis.client_acl_user, "larder-client" by default) whose key patterns
// cover every key except Larder's reserved ones, so that nothing a client
// sends, scripts and functions included, can reach a reserved key: Redis
// itself refuses. Larder's own requests run as the configured Redis user.
// The user is (re)created by every client connection's handshake with ACL
// SETUSER, its password derived from the configured credentials, so several
// Larder instances and a restarted Redis agree without coordination
// (docs/security.md).
#include <string>
#include <string_view>
#include <vector>

#include "larder/config/config.hpp"

namespace larder::redis {

struct ClientIdentity {
  std::string user;
  std::string password;
  std::string setuser_request;  // the encoded ACL SETUSER
};

// Glob patterns (Redis' stringmatchlen) that together match every key not
// starting with `prefix`: keys that differ from it at some byte, and keys
// that are a proper prefix of it (the empty key included). `prefix` must
// hold no glob special characters.
std::vector<std::string> keyPatternsExcluding(std::string_view prefix);

// The identity for `config` (redis.client_acl_user must be set).
ClientIdentity makeClientIdentity(const config::RedisConfig& config,
                                  std::string_view reserved_prefix);

}  // namespace larder::redis
