#pragma once
// Every error text the request path answers with, defined once: Redis' own
// words where Redis has them (redis-server 7.0.15), "Larder: ..." for what
// only a proxy refuses. Texts are without the leading '-' and trailing CRLF
// (resp::appendError adds them).
#include <string>
#include <string_view>
#include <vector>

namespace larder::errors {

// ----------------------------------------------------------- Redis' words
inline constexpr std::string_view kNoAuth = "NOAUTH Authentication required.";
inline constexpr std::string_view kNoAuthHello =
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
    "<proto> AUTH <user> <pass> option can be used to authenticate the client and select the "
    "RESP protocol version at the same time";
inline constexpr std::string_view kWrongPass =
    "WRONGPASS invalid username-password pair or user is disabled.";
inline constexpr std::string_view kAuthWithoutPassword =
    "ERR AUTH <password> called without any password configured for the default user. Are you "
    "sure your configuration is correct?";
inline constexpr std::string_view kWrongType =
    "WRONGTYPE Operation against a key holding the wrong kind of value";
inline constexpr std::string_view kSyntax = "ERR syntax error";
inline constexpr std::string_view kNotInteger = "ERR value is not an integer or out of range";
inline constexpr std::string_view kExecAbort =
    "EXECABORT Transaction discarded because of previous errors.";
inline constexpr std::string_view kBadClientName =
    "ERR Client names cannot contain spaces, newlines or special characters.";
inline constexpr std::string_view kProtocolVersion =
    "ERR Protocol version is not an integer or out of range";
inline constexpr std::string_view kNoProto = "NOPROTO unsupported protocol version";
inline constexpr std::string_view kKeyDenied =
    "NOPERM this user has no permissions to access one of the keys used as arguments";
inline constexpr std::string_view kChannelDenied =
    "NOPERM this user has no permissions to access one of the channels used as arguments";
inline constexpr std::string_view kClientIdPositive = "ERR client-id should be greater than 0";
inline constexpr std::string_view kInvalidClientId = "ERR Invalid client ID";
inline constexpr std::string_view kNoSuchClient = "ERR No such client";
inline constexpr std::string_view kPauseMode = "ERR CLIENT PAUSE mode must be WRITE or ALL";
inline constexpr std::string_view kTimeoutNotInteger =
    "ERR timeout is not an integer or out of range";
inline constexpr std::string_view kTimeoutNegative = "ERR timeout is negative";
inline constexpr std::string_view kUnblockReason =
    "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR";
// What Redis answers every command but a few while a script keeps it busy.
inline constexpr std::string_view kBusyScript =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
inline constexpr std::string_view kBusyFunction =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

// ERR wrong number of arguments for 'config|get' command
std::string arity(std::string_view full_name);
// NOPERM this user has no permissions to run the 'get' command
std::string commandDenied(std::string_view full_name);
// ERR unknown command 'foo', with args beginning with: 'a' 'b'  (args[0] the command)
std::string unknownCommand(const std::vector<std::string_view>& args);
// ERR unknown subcommand 'foo'. Try CONFIG HELP.
std::string unknownSubcommand(std::string_view command, std::string_view subcommand);
// ERR Syntax error in HELLO option 'x'
std::string helloOption(std::string_view option);
// ERR Unrecognized option 'x'
std::string unrecognizedOption(std::string_view option);
// ERR Unknown client type 'x'
std::string unknownClientType(std::string_view type);
// ERR No such user 'x'
std::string noSuchUser(std::string_view user);

// ---------------------------------------------------------- Larder's words
inline constexpr std::string_view kReservedKey =
    "ERR Larder: keys under '__larder:' are reserved for Larder";
inline constexpr std::string_view kPinnedLost =
    "ERR Larder: the Redis connection holding this client's state was lost";
inline constexpr std::string_view kNoPinned =
    "ERR Larder: too many dedicated backend connections (redis.max_pinned_per_worker); try "
    "again later";
inline constexpr std::string_view kNoKeyspaces = "ERR Larder: no keyspaces are configured";
inline constexpr std::string_view kNoPostgres = "ERR Larder: PostgreSQL side not running";

// ERR Larder: MONITOR is not supported through the proxy
std::string notThroughProxy(std::string_view command);
// ERR Larder: INCR is not supported on keys of keyspace 'users'
std::string notOnKeyspace(std::string_view command, std::string_view keyspace);
// ERR Larder: writes to keyspace 'users' cannot run inside MULTI
std::string writeInMulti(std::string_view keyspace);
// ERR Larder: FLUSHALL inside MULTI would bypass the write queue; run it outside MULTI
std::string flushInMulti(std::string_view command);
// ERR Larder: AUTH cannot run inside MULTI
std::string notInMulti(std::string_view command);
// ERR Larder: HELLO 2 is not supported through the proxy: <why>
std::string unsupported(std::string_view command, std::string_view why);
// ERR Larder: SWAPDB is refused while keyspaces are configured: <why>
std::string refusedWithKeyspaces(std::string_view command, std::string_view why);
// ERR Larder: EVAL is refused while keyspaces are configured without redis.client_acl_user ...
std::string scriptsWithoutClientUser(std::string_view command);
// NOPERM Larder: user 'x' may not run scripts: ...
std::string scriptsDenied(std::string_view user);

// ------------------------------------- Larder's words: keyspaces and writes
inline constexpr std::string_view kNotNearCacheRead = "ERR Larder: not a near-cache read";
inline constexpr std::string_view kUnexpectedRedisReply = "ERR Larder: unexpected reply from Redis";
inline constexpr std::string_view kRedisNoAnswer = "ERR Larder: Redis did not answer";
inline constexpr std::string_view kNothingRetried =
    "ERR Larder: Redis unavailable; nothing was retried";
inline constexpr std::string_view kKeyspaceNotInvalidated =
    "ERR Larder: Redis unavailable; the keyspace was not invalidated";
inline constexpr std::string_view kKeysNotInvalidated =
    "ERR Larder: Redis unavailable; the keys were not invalidated";
inline constexpr std::string_view kPendingNotFlushed =
    "ERR Larder: pending writes did not reach PostgreSQL in time; nothing was flushed";
inline constexpr std::string_view kFlushUsage =
    "ERR Larder: usage: LARDER FLUSH [keyspace] | PENDING | DEADLETTERS <keyspace> LIST [count] | "
    "RETRY <id|ALL> | DROP <id|ALL>";
inline constexpr std::string_view kDeadLettersUsage =
    "ERR Larder: usage: LARDER DEADLETTERS <keyspace> LIST [count] | RETRY <id|ALL> | DROP "
    "<id|ALL>";
inline constexpr std::string_view kNotDurable =
    "ERR Larder: Redis' persistence cannot keep queued writes "
    "(write_behind.require_durable_redis); see the log";
inline constexpr std::string_view kScriptReplyMismatch =
    "ERR Larder: the write script's reply did not match its writes";

// ERR Larder: no keyspace named 'x'
std::string noKeyspace(std::string_view name);
// ERR Larder: key 'k' is not in keyspace 'x'
std::string keyNotInKeyspace(std::string_view key, std::string_view keyspace);
// ERR Larder: <what Redis answered instead of what an operator script returns>
std::string operatorReply(std::string_view reply);
// ERR Larder: the write queue did not drain within 5000 ms
std::string queueNotDrained(long long ms);
// ERR Larder: PostgreSQL refused the write: <message> (SQLSTATE 23505)
std::string postgresRefused(std::string_view message, std::string_view sqlstate);
// ERR Larder: PostgreSQL unavailable: <message>
std::string postgresUnavailable(std::string_view message);
// ERR Larder: keyspace 'x' is still flushing its old write queue; try again shortly
std::string keyspaceDraining(std::string_view keyspace);
// ERR Larder: an old write queue holds writes to keys of keyspace 'x' that ...
std::string keyspaceStranded(std::string_view keyspace);
// ERR Larder: keyspace 'x' may have an old write queue in Redis, not looked for yet; ...
std::string keyspaceUnchecked(std::string_view keyspace);
// ERR Larder: the row of 'k' kept changing while writing; try again
std::string rowKeptChanging(std::string_view key);
// ERR Larder: write queue of keyspace 'x' is full (max_queue N); try again later
std::string queueFull(std::string_view keyspace, long long max_queue);
// ERR Larder: the write is queued, but 0 of 1 replica(s) confirmed it within
// 100 ms (write_behind.wait_replicas); replicas < 0: "but WAIT failed within"
std::string writeUnconfirmed(long long replicas, long long wanted, long long timeout_ms);
// ERR Larder: PostgreSQL refused the key: <message>
std::string postgresRefusedKey(std::string_view message);
// ERR Larder: PostgreSQL did not answer within 5000 ms
std::string postgresTimeout(long long ms);
// ERR Larder: loading the key took longer than 10000 ms (read_through.load_timeout and
// redis.cluster.retry_timeout)
std::string loadTimeout(long long ms);
// ERR Larder: 'abc' is not a valid id (bigint) for keyspace 'users'
std::string invalidKeyValue(std::string_view value, std::string_view column, std::string_view type,
                            std::string_view keyspace);
// ERR Larder: PostgreSQL text cannot hold a NUL byte (column 'c' of keyspace 'x')
std::string nulInText(std::string_view column, std::string_view keyspace);
// ERR Larder: value for column 'c' of keyspace 'x' is not a valid integer
std::string invalidColumnValue(std::string_view column, std::string_view keyspace,
                               std::string_view type);
// ERR Larder: column 'c' of keyspace 'x' is NOT NULL; HDEL cannot clear it
std::string notNullColumn(std::string_view column, std::string_view keyspace);
// ERR Larder: 'f' is not a column of keyspace 'x'
std::string notAColumn(std::string_view field, std::string_view keyspace);
// READONLY Larder: keyspace 'x' is read-only (write: none)
std::string readOnlyKeyspace(std::string_view keyspace);
// ERR Larder: SET with NX, XX, GET or KEEPTTL is not supported on keyspace 'x' (write: through)
std::string notWriteThrough(std::string_view command, std::string_view keyspace);
// ERR Larder: unknown log level 'x' (trace, debug, info, warn, error, critical, off)
std::string unknownLogLevel(std::string_view level);
// ERR Larder: ACL SETUSER is not supported through the proxy when users are configured; ...
std::string aclWithLarderUsers(std::string_view subcommand);
// ERR Larder: reload rejected, the running config is kept: <why>
std::string reloadRejected(std::string_view why);
// ------------------------------------- Redis Cluster backend (docs/cluster.md)
// Redis' words (cluster.c, db.c):
inline constexpr std::string_view kCrossSlot =
    "CROSSSLOT Keys in request don't hash to the same slot";
inline constexpr std::string_view kSlotNotServed = "CLUSTERDOWN Hash slot not served";
inline constexpr std::string_view kInvalidCursor = "ERR invalid cursor";
// ERR Unknown node <id>
std::string unknownNode(std::string_view id);
// Larder's:
inline constexpr std::string_view kTrackingOnCluster =
    "ERR Larder: CLIENT TRACKING is not supported with a Redis Cluster backend";
inline constexpr std::string_view kScanCursorTooLarge =
    "ERR Larder: a cluster node's SCAN cursor is too large to carry";
inline constexpr std::string_view kNoSlotMap =
    "ERR Larder: the cluster's slot map is not known yet; try again";
inline constexpr std::string_view kClusterUnreadable =
    "ERR Larder: the cluster router could not read the request";
// ERR Larder: CLUSTER MEET is not supported through the proxy: Larder presents the cluster as one
// node
std::string clusterRefused(std::string_view subcommand);
// ERR Larder: too many redirects for slot 3999 (redis.cluster.redirect_limit)
std::string tooManyRedirects(int slot);
// ERR Larder: '42' is not a dead letter id: on a Redis Cluster backend they are
// <slot>/<stream id>, as LARDER DEADLETTERS <keyspace> LIST shows them
std::string badSlotEntryId(std::string_view id);
// ERR Larder: slot 5474's write queues could not be read from its owner (a
// reshard or failover under way?); try again
std::string slotUnreadable(int slot);

}  // namespace larder::errors
