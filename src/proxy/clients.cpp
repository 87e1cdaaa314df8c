// Client filters and the pause state (see clients.hpp).
#include "larder/proxy/clients.hpp"

#include <algorithm>
#include <charconv>

namespace larder::proxy {

using commands::equalsLower;

std::optional<ClientType> parseClientType(std::string_view name) {
  if (equalsLower(name, "normal")) return ClientType::Normal;
  if (equalsLower(name, "slave") || equalsLower(name, "replica")) return ClientType::Replica;
  if (equalsLower(name, "master")) return ClientType::Master;
  if (equalsLower(name, "pubsub")) return ClientType::PubSub;
  return std::nullopt;
}

bool ClientFilter::matches(const ClientSummary& c) const {
  if (addr && c.addr != *addr) return false;
  if (laddr && c.laddr != *laddr) return false;
  if (type && c.type != *type) return false;
  if (!ids.empty() && std::find(ids.begin(), ids.end(), c.id) == ids.end()) return false;
  if (user && c.user != *user) return false;
  if (skip != 0 && c.id == skip) return false;
  return true;
}

void PauseState::pause(Clock::time_point until, PauseMode mode) {
  // As Redis: a second pause keeps the later end and the stricter mode.
  const std::int64_t end = until.time_since_epoch().count();
  PauseMode old_mode = mode_.load(std::memory_order_relaxed);
  const bool active = until_.load(std::memory_order_relaxed) != 0;
  PauseMode wanted = active ? std::max(old_mode, mode) : mode;
  mode_.store(wanted, std::memory_order_relaxed);
  std::int64_t old_end = until_.load(std::memory_order_relaxed);
  while (old_end < end && !until_.compare_exchange_weak(old_end, end, std::memory_order_release)) {
  }
}

PauseMode PauseState::pausedFor(bool write, Clock::time_point now, Clock::duration& left) const {
  const std::int64_t end = until_.load(std::memory_order_acquire);
  if (end == 0) return PauseMode::None;
  const Clock::time_point until{Clock::duration(end)};
  if (now >= until) {
    std::int64_t expected = end;
    until_.compare_exchange_strong(expected, 0, std::memory_order_relaxed);
    return PauseMode::None;
  }
  const PauseMode mode = mode_.load(std::memory_order_relaxed);
  if (mode == PauseMode::Write && !write) return PauseMode::None;
  left = until - now;
  return mode;
}

bool parseInteger(std::string_view s, long long& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool validClientName(std::string_view name) {
  for (char c : name) {
    if (c < '!' || c > '~') return false;
  }
  return true;
}

bool pausedByWrite(const commands::Command* command) {
  // Unknown commands are let through: Redis would refuse them anyway.
  return command != nullptr && (command->flag(commands::kWrite) || command->handling.may_replicate);
}

}  // namespace larder::proxy
