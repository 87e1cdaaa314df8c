// The scripts of the operator commands (LARDER PENDING, DEADLETTERS RETRY and
// DROP, FLUSHALL through Larder), and their forms over a cluster's queues per
// slot; declared in write_scripts.hpp.
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

// A cluster: LARDER PENDING over one chunk of slots owned by one node (as
// the flusher's sweep). KEYS: the chunk's first slot's queue and dead
// letters. ARGV: queue and dead letters of each other slot of the chunk.
// Key names come from Larder (key_names.hpp), never built here. Returns what
// kPendingLua does, summed ({depth, oldest entry id or '', now ms, dead
// letters}; the oldest by its ms, all an age needs), then the index (0:
// KEYS) of each slot that could not be read: one this node no longer owns
// answers pcall an error; Larder asks its new owner.
constexpr const char* kPendingSlotsLua = R"lua(#!lua flags=no-writes,allow-cross-slot-keys
local depth, dead, oldest, oldest_ms, failed = 0, 0, '', nil, {}
local function look(i, q, d)
  local n, m = redis.pcall('XLEN', q), redis.pcall('XLEN', d)
  if type(n) ~= 'number' or type(m) ~= 'number' then
    failed[#failed + 1] = i
    return
  end
  depth, dead = depth + n, dead + m
  if n > 0 then
    local id = redis.call('XRANGE', q, '-', '+', 'COUNT', 1)[1][1]
    local ms = tonumber(string.match(id, '^(%d+)'))
    if not oldest_ms or ms < oldest_ms then oldest, oldest_ms = id, ms end
  end
end
look(0, KEYS[1], KEYS[2])
local j = 1
for a = 1, #ARGV, 2 do
  look(j, ARGV[a], ARGV[a + 1])
  j = j + 1
end
local t = redis.call('TIME')
local out = {depth, oldest, t[1] * 1000 + math.floor(t[2] / 1000), dead}
for _, i in ipairs(failed) do out[#out + 1] = i end
return out
)lua";

// A cluster: the dead-letter streams with entries among one chunk of slots
// owned by one node. KEYS: the first slot's stream; ARGV: the other slots'.
// Returns per stream with entries: its index (0: KEYS[1]), length, oldest
// id; a slot that could not be read (moved): index, -1, ''.
constexpr const char* kDeadLetterSlotsLua = R"lua(#!lua flags=no-writes,allow-cross-slot-keys
local found = {}
local function look(i, d)
  local n = redis.pcall('XLEN', d)
  if type(n) ~= 'number' then
    found[#found + 1] = i; found[#found + 1] = -1; found[#found + 1] = ''
  elseif n > 0 then
    found[#found + 1] = i
    found[#found + 1] = n
    found[#found + 1] = redis.call('XRANGE', d, '-', '+', 'COUNT', 1)[1][1]
  end
end
look(0, KEYS[1])
for i = 1, #ARGV do look(i, ARGV[i]) end
return found
)lua";

// KEYS: dead-letter stream, dead-keys hash (one slot's on a cluster). Drops
// every dead letter; returns how many there were.
constexpr const char* kDropDeadLettersLua = R"lua(
local n = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return n
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

// KEYS: dead-letter stream, queue, dead-keys hash. ARGV: per dead letter, oldest
// first: its id, its key, the key's pending marker (named by Larder: on a
// cluster the marker carries a slot tag Lua cannot compute). Puts each back in
// the queue with its change in the marker, unless the key was written since
// (the write script removed it from the dead-keys hash): re-queued after that
// newer write, the older value would win. Those stay listed, and so does a
// dead letter dropped meanwhile or naming another key. Returns {re-queued, skipped}.
constexpr const char* kRequeueLua = R"lua(
local requeued, skipped = 0, 0
for a = 1, #ARGV, 3 do
  local id, key, marker = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
  local named, change = nil, {}
  if entry then
    local f = entry[2]
    for i = 1, #f, 2 do
      if f[i] == 'k' then named = f[i + 1]
      elseif f[i] ~= 'sqlstate' and f[i] ~= 'error' then
        change[#change + 1] = f[i]; change[#change + 1] = f[i + 1]
      end
    end
  end
  if named == key and redis.call('HEXISTS', KEYS[3], key) == 1 then
    local qid = redis.call('XADD', KEYS[2], '*', 'k', key, unpack(change))
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
    redis.call('HSET', marker, '_id', qid)
    redis.call('PERSIST', marker)
    redis.call('DEL', key)
    redis.call('XDEL', KEYS[1], id)
    requeued = requeued + 1
  else
    skipped = skipped + 1
  end
end
if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[3]) end
return {requeued, skipped}
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

const Script& pendingSlotsScript() {
  static const Script s = redis::makeScript(kPendingSlotsLua);
  return s;
}

const Script& deadLetterSlotsScript() {
  static const Script s = redis::makeScript(kDeadLetterSlotsLua);
  return s;
}

const Script& dropDeadLettersScript() {
  static const Script s = redis::makeScript(kDropDeadLettersLua);
  return s;
}

const Script& wipeCacheScript() {
  static const Script s = redis::makeScript(kWipeLua);
  return s;
}

}  // namespace larder::cache
