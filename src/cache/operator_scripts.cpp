// The scripts of the operator commands (LARDER PENDING, DEADLETTERS RETRY,
// FLUSHALL through Larder); declared in write_scripts.hpp.
#include "larder/cache/write_scripts.hpp"

namespace larder::cache {

namespace {

// KEYS: queue, dead letters. Returns {depth, oldest entry id or '', now ms, dead letters}.
constexpr const char* kPendingLua = R"lua(
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local t = redis.call('TIME')
local first_id = ''
if #first > 0 then first_id = first[1][1] end
return {redis.call('XLEN', KEYS[1]), first_id, t[1] * 1000 + math.floor(t[2] / 1000),
        redis.call('XLEN', KEYS[2])}
)lua";

// ARGV: SCAN cursor, count. Unlinks every key of one SCAN step except Larder's
// own; returns the next cursor ("0": done).
constexpr const char* kWipeLua = R"lua(
local r = redis.call('SCAN', ARGV[1], 'COUNT', ARGV[2])
for _, k in ipairs(r[2]) do
  if string.sub(k, 1, 9) ~= '__larder:' then redis.call('UNLINK', k) end
end
return r[1]
)lua";

// KEYS: dead-letter stream, queue, dead-keys hash. ARGV: one dead-letter id,
// or '' and then: start ('-' or '(<id>': after it), page size, last id to
// look at. Puts dead letters back in the queue, oldest first, with their
// changes in the markers, unless the key was written since (the write script
// removed it from the dead-keys hash): re-queued after that newer write, the
// older value would win. Those stay listed. One page per call, so Redis is
// never blocked for long. Returns {re-queued, skipped, last id looked at or ''}.
constexpr const char* kRequeueLua = R"lua(
local entries
if ARGV[1] ~= '' then entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
else entries = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[4], 'COUNT', ARGV[3]) end
local requeued, skipped, last = 0, 0, ''
for _, e in ipairs(entries) do
  last = e[1]
  local f, key, change = e[2], nil, {}
  for i = 1, #f, 2 do
    if f[i] == 'k' then key = f[i + 1]
    elseif f[i] ~= 'sqlstate' and f[i] ~= 'error' then
      change[#change + 1] = f[i]; change[#change + 1] = f[i + 1]
    end
  end
  if key and redis.call('HEXISTS', KEYS[3], key) == 1 then
    local marker = '__larder:pending:' .. key
    local id = redis.call('XADD', KEYS[2], '*', 'k', key, unpack(change))
    for i = 1, #change, 2 do
      local name = change[i]
      if name == 'd' then
        redis.call('DEL', marker)
        redis.call('HSET', marker, 'd', '1')
      else
        redis.call('HDEL', marker, (string.sub(name, 1, 1) == 'f' and 'z' or 'f') .. string.sub(name, 2))
        redis.call('HSET', marker, name, change[i + 1])
      end
    end
    redis.call('HSET', marker, '_id', id)
    redis.call('PERSIST', marker)
    redis.call('DEL', key)
    redis.call('XDEL', KEYS[1], e[1])
    requeued = requeued + 1
  else
    skipped = skipped + 1
  end
end
if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[3]) end
return {requeued, skipped, last}
)lua";

}  // namespace

const Script& pendingScript() {
  static const Script s = redis::makeScript(kPendingLua);
  return s;
}

const Script& requeueScript() {
  static const Script s = redis::makeScript(kRequeueLua);
  return s;
}

const Script& wipeCacheScript() {
  static const Script s = redis::makeScript(kWipeLua);
  return s;
}

}  // namespace larder::cache
