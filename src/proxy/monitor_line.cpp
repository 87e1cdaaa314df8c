// MONITOR lines as redis-server 7.0 writes them (see monitor_line.hpp).
#include "larder/proxy/monitor_line.hpp"

#include <cstdio>

namespace larder::proxy {

namespace {

using commands::equalsLower;

constexpr std::string_view kRedacted = "(redacted)";

// Which arguments Redis replaces by "(redacted)" before feeding monitors.
// Redis redacts while it parses, so an option after a syntax error keeps its
// value; the scans below stop where Redis' parsers stop.
bool isRedacted(const commands::Command* command, std::span<const std::string_view> args,
                std::size_t i) {
  if (command == nullptr || i == 0) return false;
  const std::string_view name = command->name();
  if (name == "auth") {
    // Both forms, checked before anything else; more than 3 arguments is a
    // syntax error that redacts nothing.
    return args.size() <= 3 && (i == 1 || i == 2);
  }
  if (name == "hello") {
    // HELLO <ver> [AUTH user pass] [SETNAME name]: only after a valid version.
    if (args.size() < 2) return false;
    for (std::size_t j = 2; j < args.size(); ++j) {
      const std::size_t more = args.size() - 1 - j;
      if (equalsLower(args[j], "auth") && more >= 2) {
        if (i == j + 1 || i == j + 2) return true;
        j += 2;
      } else if (equalsLower(args[j], "setname") && more >= 1) {
        ++j;
      } else {
        return false;
      }
    }
    return false;
  }
  if (name == "migrate") {
    // MIGRATE host port key db timeout [COPY] [REPLACE] [AUTH pw | AUTH2 user pw] [KEYS ...]
    for (std::size_t j = 6; j < args.size(); ++j) {
      const std::size_t more = args.size() - 1 - j;
      if (equalsLower(args[j], "copy") || equalsLower(args[j], "replace")) continue;
      if (equalsLower(args[j], "auth") && more >= 1) {
        if (i == j + 1) return true;
        j += 1;
      } else if (equalsLower(args[j], "auth2") && more >= 2) {
        if (i == j + 1 || i == j + 2) return true;
        j += 2;
      } else {
        return false;  // KEYS ... or a syntax error
      }
    }
  }
  return false;
}

}  // namespace

void appendRepr(std::string& out, std::string_view bytes) {
  out += '"';
  for (const char c : bytes) {
    switch (c) {
      case '\\':
      case '"':
        out += '\\';
        out += c;
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\a':
        out += "\\a";
        break;
      case '\b':
        out += "\\b";
        break;
      default:
        // isprint() in the C locale, as Redis runs it.
        if (c >= 0x20 && c <= 0x7e) {
          out += c;
        } else {
          char hex[5];
          std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
          out.append(hex, 4);
        }
    }
  }
  out += '"';
}

void appendMonitorArgs(std::string& out, const commands::Command* command,
                       std::span<const std::string_view> args) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (i > 0) out += ' ';
    appendRepr(out, isRedacted(command, args, i) ? kRedacted : args[i]);
  }
}

std::string monitorLine(std::chrono::system_clock::time_point when, long long db,
                        std::string_view client_address, std::string_view args_part) {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(when.time_since_epoch()).count();
  char head[64];
  const int n = std::snprintf(head, sizeof head, "+%lld.%06lld [%lld ",
                              static_cast<long long>(micros / 1000000),
                              static_cast<long long>(micros % 1000000), db);
  std::string line;
  line.reserve(static_cast<std::size_t>(n) + client_address.size() + args_part.size() + 4);
  line.append(head, static_cast<std::size_t>(n));
  line.append(client_address);
  line += "] ";
  line.append(args_part);
  line += "\r\n";
  return line;
}

bool monitorShows(const commands::Command* command) {
  // Redis feeds every command that runs except admin commands; the ones
  // flagged skip_monitor (EVAL, EVALSHA, FCALL and their _RO forms) feed
  // themselves before they run, so they are shown too.
  return command != nullptr && !command->flag(commands::kAdmin);
}

}  // namespace larder::proxy
