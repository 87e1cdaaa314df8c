#include "larder/cluster/redirect.hpp"

#include <charconv>

namespace larder::cluster {

namespace {

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// "3999 127.0.0.1:6381\r\n" -> slot and address; false when malformed.
bool parseTarget(std::string_view rest, Redirect& out) {
  if (rest.size() >= 2 && rest.substr(rest.size() - 2) == "\r\n") rest.remove_suffix(2);
  const std::size_t space = rest.find(' ');
  if (space == std::string_view::npos) return false;
  int slot = -1;
  auto [p1, e1] = std::from_chars(rest.data(), rest.data() + space, slot);
  if (e1 != std::errc() || p1 != rest.data() + space || slot < 0 || slot >= 16384) return false;
  const std::string_view address = rest.substr(space + 1);
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return false;
  unsigned port = 0;
  const std::string_view digits = address.substr(colon + 1);
  auto [p2, e2] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (e2 != std::errc() || p2 != digits.data() + digits.size() || port == 0 || port > 65535) {
    return false;
  }
  std::string_view host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  out.slot = slot;
  out.to = config::Endpoint{std::string(host), static_cast<std::uint16_t>(port)};
  return true;
}

}  // namespace

Redirect classify(std::string_view frame) {
  Redirect r;
  if (frame.empty() || frame.front() != '-') return r;
  const std::string_view text = frame.substr(1);
  if (startsWith(text, "MOVED ")) {
    if (parseTarget(text.substr(6), r)) r.kind = Redirect::Kind::Moved;
  } else if (startsWith(text, "ASK ")) {
    if (parseTarget(text.substr(4), r)) r.kind = Redirect::Kind::Ask;
  } else if (startsWith(text, "TRYAGAIN")) {
    r.kind = Redirect::Kind::TryAgain;
  } else if (startsWith(text, "CLUSTERDOWN")) {
    r.kind = Redirect::Kind::ClusterDown;
  }
  return r;
}

}  // namespace larder::cluster
