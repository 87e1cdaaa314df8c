#pragma once
// SORT's BY and GET patterns name keys that only exist once the sort runs, so
// no key spec covers them. Redis 7.0 therefore refuses them to a user without
// access to every key, while it parses SORT's options (sort.c), and answers
// the first problem it meets in argument order. Pure.
#include <span>
#include <string_view>

namespace larder::acl {

// For a user without access to all keys: Redis' error when its SORT (or
// SORT_RO, `read_only`) parse would reach a BY pattern with '*' or a GET
// before any syntax error; empty when Redis would not refuse it for that.
std::string_view sortPatternDenial(std::span<const std::string_view> args, bool read_only);

}  // namespace larder::acl
