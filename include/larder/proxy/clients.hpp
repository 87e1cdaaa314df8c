#pragma once
// Larder's clients as CLIENT LIST, CLIENT KILL and CLIENT PAUSE see them: the
// clients of every worker, not Redis' (whose clients are Larder's backend
// connections). The I/O shell gathers them across workers
// (server/client_directory.hpp); what a filter means and when a command
// waits for a pause is decided here. Pure, except PauseState, which is the
// one atomic every worker reads.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "larder/commands/registry.hpp"
#include "larder/config/config.hpp"

namespace larder::proxy {

// A client's dedicated connection as Redis knows it (CLIENT UNBLOCK).
struct PinnedConnection {
  std::uint64_t redis_id = 0;  // 0: no such client, or it holds none
  config::Endpoint node;       // on a cluster, the node it is to; else unused
};

// Redis' client types (getClientType). Larder's clients are normal or
// pub/sub; MASTER and REPLICA name none of them.
enum class ClientType : std::uint8_t { Normal, Replica, Master, PubSub };

// "normal" | "slave" | "replica" | "master" | "pubsub", any case.
std::optional<ClientType> parseClientType(std::string_view name);

// What a filter looks at in one client.
struct ClientSummary {
  std::uint64_t id = 0;
  std::string_view addr;   // ip:port of the client
  std::string_view laddr;  // ip:port of Larder's listener
  std::string_view user;   // the authenticated user ("default" without users)
  ClientType type = ClientType::Normal;
};

// CLIENT KILL's and CLIENT LIST's filters; every one given must match.
struct ClientFilter {
  std::vector<std::uint64_t> ids;  // ID (KILL: one; LIST ID: any of them)
  std::optional<ClientType> type;
  std::optional<std::string> addr;
  std::optional<std::string> laddr;
  std::optional<std::string> user;
  std::uint64_t skip = 0;  // SKIPME yes: the requesting client's id

  bool matches(const ClientSummary& c) const;
};

// CLIENT PAUSE for Larder's clients: until a deadline, every command (ALL)
// or the commands that may write (WRITE) wait before they run. Written by
// CLIENT PAUSE / UNPAUSE on any worker, read before every command.
enum class PauseMode : std::uint8_t { None, Write, All };

class PauseState {
 public:
  using Clock = std::chrono::steady_clock;

  void pause(Clock::time_point until, PauseMode mode);
  void unpause() { until_.store(0, std::memory_order_release); }
  // The pause in force now for a command with `write` (Redis: write or
  // may-replicate) and how long until it ends; None when it may run.
  PauseMode pausedFor(bool write, Clock::time_point now, Clock::duration& left) const;
  // Cheap check first: no pause has been requested (the common case).
  bool idle() const { return until_.load(std::memory_order_relaxed) == 0; }

 private:
  // Steady-clock nanoseconds; 0: none (an expired pause is set back to 0 by
  // the first reader, so that later reads stay cheap).
  mutable std::atomic<std::int64_t> until_{0};
  std::atomic<PauseMode> mode_{PauseMode::None};
};

// Redis' string2ll: a whole decimal integer ('-' the only sign), no spaces.
bool parseInteger(std::string_view s, long long& out);
// CLIENT SETNAME / HELLO SETNAME: printable ASCII without spaces.
bool validClientName(std::string_view name);

// Whether a command counts as a write for CLIENT PAUSE WRITE (Redis'
// is_may_replicate_command): write or may-replicate flags.
bool pausedByWrite(const commands::Command* command);

}  // namespace larder::proxy
