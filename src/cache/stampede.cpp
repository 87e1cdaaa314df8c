#include "larder/cache/stampede.hpp"

#include <algorithm>
#include <cmath>

#include "larder/cache/key_names.hpp"
#include "larder/cache/write_scripts.hpp"

namespace larder::cache {

namespace {

constexpr const char* kLeaseLua = R"lua(
local token, px, n = ARGV[1], ARGV[2], #KEYS / 3
local out = {}
for i = 1, n do
  local key, lease, marker = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  -- ARGV[2 + i]: 'l' a reader's load, 'w' a writer's, 'r' a refresh.
  if ARGV[2 + i] ~= 'r' and redis.call('EXISTS', key) == 1 then
    out[i] = 3
  elseif redis.call('SET', lease, token, 'NX', 'PX', px) then
    out[i] = 1
  elseif redis.call('GET', lease) == 'absent' then
    if redis.call('EXISTS', marker) == 1 then
      -- Pending writes since: the fill lays them over whatever is loaded.
      redis.call('SET', lease, token, 'PX', px)
      out[i] = 1
    else
      -- A writer's write follows at once and makes "absent" wrong; its
      -- marker may be flushed and gone before this lease would expire.
      if ARGV[2 + i] == 'w' then redis.call('DEL', lease) end
      out[i] = 2
    end
  else
    out[i] = 0
  end
end
return out
)lua";

constexpr const char* kAwaitFillLua = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then
  local out = {1, redis.call('PTTL', KEYS[1])}
  local t = redis.call('TYPE', KEYS[1]).ok
  if ARGV[1] == 's' and t == 'string' then
    out[3] = redis.call('GET', KEYS[1])
  elseif ARGV[1] == 'h' and t == 'hash' then
    for _, x in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = x end
  else
    return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
  end
  return out
end
local holder = redis.call('GET', KEYS[2])
if holder == 'absent' then
  if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
  return 2
end
if holder then return 0 end
return -1
)lua";

constexpr const char* kLeaseDoneLua = R"lua(
if ARGV[2] == 'stored' and tonumber(ARGV[3]) > 0 and tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  -- A write that landed since the load makes "absent" wrong: let go instead.
  local since = redis.call('EXISTS', KEYS[3], KEYS[4]) > 0
  if ARGV[2] == 'absent' and tonumber(ARGV[5]) > 0 and not since then
    redis.call('SET', KEYS[1], 'absent', 'PX', ARGV[5])
  else
    redis.call('DEL', KEYS[1])
  end
end
return 1
)lua";

constexpr const char* kRefreshLua = R"lua(
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[3] ~= '1' then
  redis.call('UNLINK', KEYS[1])
  return 2
end
if ARGV[1] == 's' then
  redis.call('SET', KEYS[1], ARGV[5])
else
  redis.call('DEL', KEYS[1])
  if #ARGV >= 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
)lua";

}  // namespace

std::string leaseKey(std::string_view key) { return internalKey("lease", key); }

std::string deltaKey(std::string_view key) { return internalKey("delta", key); }

const redis::Script& leaseScript() {
  static const redis::Script s = redis::makeScript(kLeaseLua);
  return s;
}
const redis::Script& awaitFillScript() {
  static const redis::Script s = redis::makeScript(kAwaitFillLua);
  return s;
}
const redis::Script& leaseDoneScript() {
  static const redis::Script s = redis::makeScript(kLeaseDoneLua);
  return s;
}
const redis::Script& refreshScript() {
  static const redis::Script s = redis::makeScript(kRefreshLua);
  return s;
}

bool shouldRefresh(long long pttl_ms, long long stale_ms, double delta_ms, double beta, double u) {
  if (pttl_ms < 0) return false;  // no expiry (-1) or no key (-2)
  const double soft = static_cast<double>(pttl_ms - std::max(0LL, stale_ms));
  if (soft <= 0) return stale_ms > 0;  // in the stale window: serve it, refresh once
  if (beta <= 0 || delta_ms <= 0 || u <= 0 || u > 1) return false;
  // XFetch: refresh when now - delta * beta * ln(u) >= expiry.
  return -delta_ms * beta * std::log(u) >= soft;
}

}  // namespace larder::cache
