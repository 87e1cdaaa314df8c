#include "larder/common/errors.hpp"

#include <algorithm>
#include <cctype>

namespace larder::errors {

namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

std::string arity(std::string_view full_name) {
  return "ERR wrong number of arguments for '" + lower(full_name) + "' command";
}

std::string commandDenied(std::string_view full_name) {
  return "NOPERM this user has no permissions to run the '" + lower(full_name) + "' command";
}

namespace {

// printf's "%.*s" of an sds: up to the first NUL, at most `max` bytes.
std::string_view cString(std::string_view s, std::size_t max) {
  s = s.substr(0, s.find('\0'));
  return s.substr(0, max);
}

// Redis maps CR and LF in an error to spaces (the text comes from the client).
std::string oneLine(std::string text) {
  std::replace(text.begin(), text.end(), '\r', ' ');
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

}  // namespace

std::string unknownCommand(const std::vector<std::string_view>& args) {
  std::string list;
  for (std::size_t i = 1; i < args.size() && list.size() < 128; ++i) {
    const std::size_t room = 128 - list.size();
    list += '\'';
    list += cString(args[i], room);
    list += "' ";
  }
  return oneLine("ERR unknown command '" + std::string(cString(args.empty() ? "" : args[0], 128)) +
                 "', with args beginning with: " + list);
}

std::string unknownSubcommand(std::string_view command, std::string_view subcommand) {
  return oneLine("ERR unknown subcommand '" + std::string(cString(subcommand, 128)) + "'. Try " +
                 upper(cString(command, std::string_view::npos)) + " HELP.");
}

std::string helloOption(std::string_view option) {
  return "ERR Syntax error in HELLO option '" + std::string(option) + "'";
}

std::string unrecognizedOption(std::string_view option) {
  return "ERR Unrecognized option '" + std::string(option) + "'";
}

std::string unknownClientType(std::string_view type) {
  return "ERR Unknown client type '" + std::string(type) + "'";
}

std::string noSuchUser(std::string_view user) {
  return "ERR No such user '" + std::string(user) + "'";
}

std::string unsupported(std::string_view command, std::string_view why) {
  return "ERR Larder: " + upper(command) +
         " is not supported through the proxy: " + std::string(why);
}

std::string notThroughProxy(std::string_view command) {
  return "ERR Larder: " + upper(command) + " is not supported through the proxy";
}

std::string notOnKeyspace(std::string_view command, std::string_view keyspace) {
  return "ERR Larder: " + upper(command) + " is not supported on keys of keyspace '" +
         std::string(keyspace) + "'";
}

std::string writeInMulti(std::string_view keyspace) {
  return "ERR Larder: writes to keyspace '" + std::string(keyspace) + "' cannot run inside MULTI";
}

std::string flushInMulti(std::string_view command) {
  return "ERR Larder: " + upper(command) +
         " inside MULTI would bypass the write queue; run it outside MULTI";
}

std::string notInMulti(std::string_view command) {
  return "ERR Larder: " + upper(command) + " cannot run inside MULTI";
}

std::string refusedWithKeyspaces(std::string_view command, std::string_view why) {
  return "ERR Larder: " + upper(command) +
         " is refused while keyspaces are configured: " + std::string(why);
}

std::string scriptsWithoutClientUser(std::string_view command) {
  return refusedWithKeyspaces(command,
                              "without redis.client_acl_user nothing keeps a script from Larder's "
                              "reserved keys (docs/security.md)");
}

std::string scriptsDenied(std::string_view user) {
  return "NOPERM Larder: user '" + std::string(user) +
         "' may not run scripts: the keys, commands and channels a script touches cannot be "
         "checked against its rules";
}

std::string noKeyspace(std::string_view name) {
  return "ERR Larder: no keyspace named '" + std::string(name) + "'";
}

std::string keyNotInKeyspace(std::string_view key, std::string_view keyspace) {
  return "ERR Larder: key '" + std::string(key) + "' is not in keyspace '" + std::string(keyspace) +
         "'";
}

std::string operatorReply(std::string_view reply) { return "ERR Larder: " + std::string(reply); }

std::string queueNotDrained(long long ms) {
  return "ERR Larder: the write queue did not drain within " + std::to_string(ms) + " ms";
}

std::string postgresRefused(std::string_view message, std::string_view sqlstate) {
  return "ERR Larder: PostgreSQL refused the write: " + std::string(message) + " (SQLSTATE " +
         std::string(sqlstate) + ")";
}

std::string postgresUnavailable(std::string_view message) {
  return "ERR Larder: PostgreSQL unavailable: " + std::string(message);
}

std::string keyspaceDraining(std::string_view keyspace) {
  return "ERR Larder: keyspace '" + std::string(keyspace) +
         "' is still flushing its old write queue; try again shortly";
}

std::string keyspaceStranded(std::string_view keyspace) {
  return "ERR Larder: an old write queue holds writes to keys of keyspace '" +
         std::string(keyspace) + "' that no keyspace flushes any more; see the log";
}

std::string keyspaceUnchecked(std::string_view keyspace) {
  return "ERR Larder: keyspace '" + std::string(keyspace) +
         "' may have an old write queue in Redis, not looked for yet (Redis not reached since "
         "start); try again shortly";
}

std::string rowKeptChanging(std::string_view key) {
  return "ERR Larder: the row of '" + std::string(key) + "' kept changing while writing; try again";
}

std::string queueFull(std::string_view keyspace, long long max_queue) {
  return "ERR Larder: write queue of keyspace '" + std::string(keyspace) + "' is full (max_queue " +
         std::to_string(max_queue) + "); try again later";
}

std::string writeUnconfirmed(long long replicas, long long wanted, long long timeout_ms) {
  const std::string confirmed =
      replicas < 0
          ? std::string("WAIT failed")
          : std::to_string(replicas) + " of " + std::to_string(wanted) + " replica(s) confirmed it";
  return "ERR Larder: the write is queued, but " + confirmed + " within " +
         std::to_string(timeout_ms) + " ms (write_behind.wait_replicas)";
}

std::string postgresRefusedKey(std::string_view message) {
  return "ERR Larder: PostgreSQL refused the key: " + std::string(message);
}

std::string postgresTimeout(long long ms) {
  return "ERR Larder: PostgreSQL did not answer within " + std::to_string(ms) + " ms";
}

std::string loadTimeout(long long ms) {
  return "ERR Larder: loading the key took longer than " + std::to_string(ms) +
         " ms (read_through.load_timeout and redis.cluster.retry_timeout)";
}

std::string invalidKeyValue(std::string_view value, std::string_view column, std::string_view type,
                            std::string_view keyspace) {
  return "ERR Larder: '" + std::string(value) + "' is not a valid " + std::string(column) + " (" +
         std::string(type) + ") for keyspace '" + std::string(keyspace) + "'";
}

std::string nulInText(std::string_view column, std::string_view keyspace) {
  return "ERR Larder: PostgreSQL text cannot hold a NUL byte (column '" + std::string(column) +
         "' of keyspace '" + std::string(keyspace) + "')";
}

std::string invalidColumnValue(std::string_view column, std::string_view keyspace,
                               std::string_view type) {
  return "ERR Larder: value for column '" + std::string(column) + "' of keyspace '" +
         std::string(keyspace) + "' is not a valid " + std::string(type);
}

std::string notNullColumn(std::string_view column, std::string_view keyspace) {
  return "ERR Larder: column '" + std::string(column) + "' of keyspace '" + std::string(keyspace) +
         "' is NOT NULL; HDEL cannot clear it";
}

std::string notAColumn(std::string_view field, std::string_view keyspace) {
  return "ERR Larder: '" + std::string(field) + "' is not a column of keyspace '" +
         std::string(keyspace) + "'";
}

std::string readOnlyKeyspace(std::string_view keyspace) {
  return "READONLY Larder: keyspace '" + std::string(keyspace) + "' is read-only (write: none)";
}

std::string notWriteThrough(std::string_view command, std::string_view keyspace) {
  return "ERR Larder: " + upper(command) +
         " with NX, XX, GET or KEEPTTL is not supported on keyspace '" + std::string(keyspace) +
         "' (write: through)";
}

std::string unknownLogLevel(std::string_view level) {
  return "ERR Larder: unknown log level '" + std::string(level) +
         "' (trace, debug, info, warn, error, critical, off)";
}

std::string aclWithLarderUsers(std::string_view subcommand) {
  return "ERR Larder: ACL " + upper(subcommand) +
         " is not supported through the proxy when users are configured; Larder's users live in "
         "its config file (users:)";
}

std::string reloadRejected(std::string_view why) {
  return "ERR Larder: reload rejected, the running config is kept: " + std::string(why);
}

std::string unknownNode(std::string_view id) { return "ERR Unknown node " + std::string(id); }

std::string clusterRefused(std::string_view subcommand) {
  return "ERR Larder: CLUSTER " + upper(subcommand) +
         " is not supported through the proxy: Larder presents the cluster as one node; run it "
         "on the cluster's nodes";
}

std::string tooManyRedirects(int slot) {
  return "ERR Larder: too many redirects for slot " + std::to_string(slot) +
         " (redis.cluster.redirect_limit)";
}

std::string badSlotEntryId(std::string_view id) {
  // The client's bytes go into an error line: no CR or LF (they would end
  // it early), and not a megabyte of them.
  constexpr std::size_t kShown = 64;
  std::string shown;
  for (char c : id.substr(0, kShown)) {
    const auto u = static_cast<unsigned char>(c);
    shown.push_back(u < 0x20 || u == 0x7f ? '?' : c);
  }
  if (id.size() > kShown) shown.append("...");
  return "ERR Larder: '" + shown +
         "' is not a dead letter id: on a Redis Cluster backend they are <slot>/<stream id>, as "
         "LARDER DEADLETTERS <keyspace> LIST shows them";
}

std::string slotUnreadable(int slot) {
  return "ERR Larder: slot " + std::to_string(slot) +
         "'s write queues could not be read from its owner (a reshard or failover under way?); "
         "try again";
}

}  // namespace larder::errors
