#pragma once
// MONITOR's line for one command, byte for byte as redis-server 7.0 writes it
// (replicationFeedMonitors):
//
//   +1700000000.123456 [0 127.0.0.1:51234] "SET" "k" "v\x00"\r\n
//    seconds.micros     db client address   each argument quoted as sdscatrepr
//
// with the arguments Redis redacts replaced by "(redacted)": AUTH's, HELLO's
// AUTH user and password, MIGRATE's AUTH / AUTH2. Which commands are shown at
// all follows Redis too (monitorShows): not admin commands, not those flagged
// skip_monitor. Pure: no I/O.
#include <chrono>
#include <span>
#include <string>
#include <string_view>

#include "larder/commands/registry.hpp"

namespace larder::proxy {

// Appends `bytes` quoted and escaped as Redis' sdscatrepr does.
void appendRepr(std::string& out, std::string_view bytes);

// Appends `"a" "b" ...` with redactions: the part of the line that depends
// only on the request (formatted once, when the request is routed).
void appendMonitorArgs(std::string& out, const commands::Command* command,
                       std::span<const std::string_view> args);

// The whole line, from the arguments' part.
std::string monitorLine(std::chrono::system_clock::time_point when, long long db,
                        std::string_view client_address, std::string_view args_part);

// Whether Redis shows the command in MONITOR at all (EVAL and friends are
// flagged skip_monitor but fed by their own implementation, before they run).
bool monitorShows(const commands::Command* command);

}  // namespace larder::proxy
