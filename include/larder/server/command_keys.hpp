#pragma once
// Where the keys are in a command's arguments (after Redis' key specs), so a
// key of a mapped keyspace is noticed whatever command names it. Pure.
#include <string_view>
#include <vector>

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

}  // namespace larder::server
