#include "larder/redis/script.hpp"

#include <boost/uuid/detail/sha1.hpp>
#include <cstdio>

#include "larder/resp/request_parser.hpp"

namespace larder::redis {

Script makeScript(std::string body) {
  boost::uuids::detail::sha1 hash;
  hash.process_bytes(body.data(), body.size());
  boost::uuids::detail::sha1::digest_type digest;
  hash.get_digest(digest);
  char hex[41];
  for (int i = 0; i < 5; ++i) std::snprintf(hex + i * 8, 9, "%08x", digest[i]);
  return Script{std::move(body), std::string(hex, 40)};
}

void appendScriptCall(std::string& out, const Script& script, bool body,
                      const std::vector<std::string_view>& keys,
                      const std::vector<std::string_view>& args) {
  std::vector<std::string_view> all;
  all.reserve(3 + keys.size() + args.size());
  const std::string count = std::to_string(keys.size());
  all.push_back(body ? "EVAL" : "EVALSHA");
  all.push_back(body ? std::string_view(script.body) : std::string_view(script.sha1));
  all.push_back(count);
  all.insert(all.end(), keys.begin(), keys.end());
  all.insert(all.end(), args.begin(), args.end());
  resp::appendMultibulk(out, all);
}

}  // namespace larder::redis
