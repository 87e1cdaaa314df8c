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

}  // namespace larder::errors
