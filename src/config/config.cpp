#include "larder/config/config.hpp"

namespace larder::config {

std::string Endpoint::toString() const {
  // IPv6 literals need brackets or the port would read as part of the address.
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

}  // namespace larder::config
