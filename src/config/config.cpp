#include "larder/config/config.hpp"

namespace larder::config {

std::string Endpoint::toString() const {
  // IPv6 literals need brackets or the port would read as part of the address.
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

}  // namespace larder::config

namespace larder::config {

const UserConfig* findUser(const std::vector<UserConfig>& users, std::string_view name) {
  for (const UserConfig& user : users) {
    if (user.name == name) return &user;
  }
  return nullptr;
}

bool hasAclUsers(const std::vector<UserConfig>& users) {
  return users.size() > 1 || (users.size() == 1 && !users.front().implicit);
}

UserConfig implicitDefaultUser(const std::string& requirepass) {
  UserConfig user;
  user.name = "default";
  user.implicit = true;
  if (requirepass.empty()) {
    user.nopass = true;
  } else {
    user.passwords.push_back(acl::sha256(requirepass));
  }
  user.commands = {"+@all"};
  user.keys = {"*"};
  user.channels = {"*"};
  std::string ignored;
  user.permissions.applyCommandRule("+@all", ignored);
  user.permissions.applyKeyRule("*", ignored);
  user.permissions.applyChannelRule("*", ignored);
  return user;
}

}  // namespace larder::config
