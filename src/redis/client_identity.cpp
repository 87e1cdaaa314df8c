#include "larder/redis/client_identity.hpp"

#include <stdexcept>

#include "larder/acl/password.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::redis {

std::vector<std::string> keyPatternsExcluding(std::string_view prefix) {
  for (char c : prefix) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\' || c == '^') {
      throw std::logic_error("keyPatternsExcluding: glob character in the prefix");
    }
  }
  std::vector<std::string> patterns;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    // The same first i bytes, then any other byte, then anything.
    patterns.push_back(std::string(prefix.substr(0, i)) + "[^" + prefix[i] + "]*");
    // Exactly the first i bytes (a key that stops short of the prefix).
    patterns.emplace_back(prefix.substr(0, i));
  }
  return patterns;
}

ClientIdentity makeClientIdentity(const config::RedisConfig& config,
                                  std::string_view reserved_prefix) {
  ClientIdentity id;
  id.user = config.client_acl_user;
  // Derived, not random: every Larder with the same credentials sets the same
  // password, so their connections never lock each other out.
  id.password = acl::hexDigest(acl::sha256("larder-client:" + config.username + ":" +
                                           config.password + ":" + config.client_acl_user));
  std::vector<std::string> args{"ACL",   "SETUSER", id.user,
                                "reset", "on",      "#" + acl::hexDigest(acl::sha256(id.password))};
  for (const std::string& p : keyPatternsExcluding(reserved_prefix)) args.push_back("~" + p);
  args.push_back("&*");
  args.push_back("+@all");
  // Nor may it lift its own restrictions (Larder refuses these too).
  for (const char* rule : {"-acl|setuser", "-acl|deluser", "-acl|load"}) args.emplace_back(rule);
  resp::appendMultibulk(id.setuser_request,
                        std::vector<std::string_view>(args.begin(), args.end()));
  return id;
}

}  // namespace larder::redis
