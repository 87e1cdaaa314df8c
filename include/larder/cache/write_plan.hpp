#pragma once
// Turns a write command on mapped keys into one write per mapped key (the
// write script's op and arguments, and the Change PostgreSQL gets), plus the
// part of the command for unmapped keys, which goes to Redis as usual. Pure:
// checks arity, options, shapes, columns and values, and answers with Redis'
// own errors (or Larder's) before anything is written anywhere.
#include <string>
#include <string_view>
#include <vector>

#include "larder/cache/change.hpp"
#include "larder/cache/keyspace.hpp"
#include "larder/commands/registry.hpp"

namespace larder::cache {

struct KeyWrite {
  const cache::Keyspace* ks = nullptr;
  std::string key;
  std::vector<std::string> key_values;
  std::string op;                    // write script op: set getdel del hset hmset hdel ttl
  std::vector<std::string> op_args;  // the script's ARGV after the common ones
  bool needs_row = true;             // its answer depends on the row: may ask for a load
  bool cache_only = false;           // EXPIRE and friends: the row is not touched
  cache::Change change;              // what the row gets
};

enum class Combine {
  Single,  // the one reply
  Sum,     // DEL/UNLINK: integers add up
  AllOk,   // MSET: +OK when every part said so
};

struct WritePlan {
  std::vector<KeyWrite> writes;
  std::vector<std::string> unmapped;  // request for the unmapped keys; empty: none
  Combine combine = Combine::Single;
  std::string error;  // set: answer this, write nothing
};

// `command` is the request's registry row (its write column says which write);
// `keys` are the argument indexes of its keys, at least one of them mapped.
WritePlan planWrite(const commands::Command& command, const std::vector<std::string_view>& args,
                    const std::vector<std::size_t>& keys, const cache::KeyspaceRegistry& registry);

}  // namespace larder::cache
