#pragma once
// Where the keys are in a command's arguments (after Redis' key specs), so a
// key of a mapped keyspace is noticed whatever command names it. Pure.
#include <string_view>
#include <vector>

#include "larder/acl/commands.hpp"

namespace larder::server {

enum class MappedAccess {
  None,     // keyless, or a command Larder does not inspect (EVAL, SCAN...)
  Read,     // served through the Loader on a miss (GET, HGETALL...)
  RawRead,  // harmless read of the cache as it is (TYPE, OBJECT, STRLEN...)
  Write,    // changes a key (write modes: behind / through / none)
  Other,    // makes no sense on a mapped key: -WRONGTYPE
};

struct KeyedCommand {
  MappedAccess access = MappedAccess::None;
  std::vector<std::size_t> keys;  // argument indexes of the keys
};

// `name` is lower case. `args` are the whole request.
KeyedCommand keysOf(std::string_view name, const std::vector<std::string_view>& args);

// Every key argument of any Redis 7.0 command, for ACL key checks: the
// command's legacy key range from the generated table and, where keys move
// (EVAL's numkeys, XREAD's STREAMS, SORT's STORE...), the argument that says
// where. Appends indexes to `out`; false when the keys cannot be told (MIGRATE
// ... KEYS, a malformed numkeys): the caller then denies a user without all keys.
bool aclKeysOf(const acl::CommandSpec& spec, const std::vector<std::string_view>& args,
               std::vector<std::size_t>& out);

}  // namespace larder::server
