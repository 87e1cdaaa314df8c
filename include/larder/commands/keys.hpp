#pragma once
// Where a request's keys are, and how the command uses each: Redis' own
// getKeysFromCommandWithSpecs (db.c), from the key specs of the registry row.
// Commands whose specs cannot say (SORT's STORE, MIGRATE's KEYS, SET and
// BITFIELD's variable flags) and specs that fail on the arguments (an invalid
// numkeys) take the same fallbacks as Redis' getkeys procedures, so the result
// is what `COMMAND GETKEYSANDFLAGS` answers (tests/integration/test_registry.py
// compares them). Pure.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "larder/commands/registry.hpp"

namespace larder::commands {

struct KeyRef {
  std::uint32_t pos;    // index into the request's arguments
  std::uint16_t flags;  // KeyFlag
};

// Appends the keys of `args` (args[0] the command name) to `out`; `out` is
// cleared first. Channels (NOT_KEY specs) are not keys. A request with the
// wrong arity may give fewer keys; Redis refuses it before it runs.
void findKeys(const Command& command, std::span<const std::string_view> args,
              std::vector<KeyRef>& out);

// The route the request takes: the row's, except that XREAD and XREADGROUP
// block only with a BLOCK option, and every other command Redis flags
// `blocking` pins a connection for the call.
Route routeOf(const Command& command, std::span<const std::string_view> args);

}  // namespace larder::commands
