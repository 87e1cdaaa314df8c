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

}  // namespace larder::errors
