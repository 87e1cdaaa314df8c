#include "larder/server/command_table.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>
#include <unordered_map>

namespace larder::server {

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

namespace {

using Table = std::unordered_map<std::string_view, CommandInfo>;

const Table& table() {
  static const Table t = [] {
    Table m;
    auto local = [&](std::string_view n, LocalCommand c) { m[n] = {CommandKind::Local, c}; };
    local("ping", LocalCommand::Ping);
    local("echo", LocalCommand::Echo);
    local("quit", LocalCommand::Quit);
    local("reset", LocalCommand::Reset);
    local("hello", LocalCommand::Hello);
    local("auth", LocalCommand::Auth);
    local("select", LocalCommand::Select);
    local("info", LocalCommand::Info);
    local("client", LocalCommand::Client);
    local("exec", LocalCommand::Exec);
    local("discard", LocalCommand::Discard);
    local("unwatch", LocalCommand::Unwatch);
    local("larder", LocalCommand::Larder);
    local("flushall", LocalCommand::FlushAll);
    local("flushdb", LocalCommand::FlushAll);
    local("acl", LocalCommand::Acl);
    for (auto n : {"multi", "watch"}) m[n] = {CommandKind::Transaction, LocalCommand::None};
    for (auto n :
         {"subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"}) {
      m[n] = {CommandKind::PubSub, LocalCommand::None};
    }
    for (auto n : {"blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax",
                   "bzmpop", "wait", "waitaof"}) {
      m[n] = {CommandKind::Blocking, LocalCommand::None};
    }
    for (auto n :
         {"monitor", "sync", "psync", "replconf", "shutdown", "replicaof", "slaveof", "failover"}) {
      m[n] = {CommandKind::Refused, LocalCommand::None};
    }
    return m;
  }();
  return t;
}

// Lower-cases a command name into `buf`; names longer than the buffer are not
// commands we treat specially, so they simply miss the table.
std::string_view lowered(std::string_view name, std::array<char, 32>& buf) {
  if (name.size() > buf.size()) return {};
  for (std::size_t i = 0; i < name.size(); ++i) {
    buf[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
  }
  return {buf.data(), name.size()};
}

bool hasBlockArgument(const std::vector<std::string_view>& args) {
  // XREAD [COUNT n] [BLOCK ms] STREAMS ...: options come before STREAMS.
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (equalsIgnoreCase(args[i], "streams")) return false;
    if (equalsIgnoreCase(args[i], "block")) return true;
  }
  return false;
}

}  // namespace

CommandInfo classify(const std::vector<std::string_view>& args) {
  if (args.empty()) return {};
  std::array<char, 32> buf;
  std::string_view name = lowered(args[0], buf);
  if (name == "xread" || name == "xreadgroup") {
    return {hasBlockArgument(args) ? CommandKind::Blocking : CommandKind::Forward,
            LocalCommand::None};
  }
  if (name == "client" && args.size() >= 2) {
    std::array<char, 32> sub_buf;
    std::string_view sub = lowered(args[1], sub_buf);
    if (sub == "tracking" || sub == "caching" || sub == "no-evict" || sub == "no-touch" ||
        sub == "trackinginfo" || sub == "getredir") {
      return {CommandKind::Sticky, LocalCommand::None};
    }
    if (sub == "reply") return {CommandKind::Refused, LocalCommand::None};
  }
  const auto& t = table();
  auto it = t.find(name);
  return it == t.end() ? CommandInfo{} : it->second;
}

}  // namespace larder::server
