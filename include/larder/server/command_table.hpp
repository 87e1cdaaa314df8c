#pragma once
// What the proxy does with each command, decided by name alone (and, for a few
// commands, by one argument). Pure: no I/O, unit-tested directly.
#include <string_view>
#include <vector>

namespace larder::server {

enum class CommandKind {
  Forward,      // multiplexed on the worker's shared backend connection
  Local,        // answered by Larder itself (PING, AUTH, CLIENT SETNAME, ...)
  Transaction,  // MULTI / WATCH: pin a backend connection until EXEC/DISCARD/UNWATCH
  PubSub,       // SUBSCRIBE family: pin, and stream every frame to the client
  Blocking,     // BLPOP, XREAD BLOCK, WAIT...: pin for the duration of the call
  Sticky,       // changes connection state for good (CLIENT TRACKING): pin until RESET
  Refused,      // MONITOR, SYNC, SHUTDOWN...: answered with -ERR, connection kept
};

enum class LocalCommand {
  None,
  Ping,
  Echo,
  Quit,
  Reset,
  Hello,
  Auth,
  Select,
  Info,
  Client,
  Exec,
  Discard,
  Unwatch,   // end transaction state (forwarded when pinned)
  Larder,    // LARDER FLUSH | PENDING | DEADLETTERS
  FlushAll,  // FLUSHALL / FLUSHDB: pending writes first when keyspaces exist
  Acl,       // ACL WHOAMI answered here; the rest refused when users are configured
};

struct CommandInfo {
  CommandKind kind = CommandKind::Forward;
  LocalCommand local = LocalCommand::None;
};

// Classifies a request; `args[0]` is the command name in any case.
CommandInfo classify(const std::vector<std::string_view>& args);

// ASCII case-insensitive comparison with an upper- or lower-case literal.
bool equalsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace larder::server
