#include "larder/cache/write_scripts.hpp"

#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace {

// KEYS: key, marker, queue.
// ARGV: op, mode ('b' behind: queue + marker; 'c' cache only, after a
//       write-through commit), absent ('1': the Loader found no row and nothing
//       pending), queue bound (0: none), TTL in ms for a new cached value, op args.
// A write whose answer depends on the row, on a key that is neither cached
// nor known absent, answers LARDERMISS: the caller loads the row and retries.
constexpr const char* kWriteLua = R"lua(
local key, marker, queue = KEYS[1], KEYS[2], KEYS[3]
-- ARGV[3]: '1' when the row is known absent, else '0'; then ':' and the
-- invalidation channel a change is published on, if any.
local op, behind, absent = ARGV[1], ARGV[2] == 'b', string.sub(ARGV[3], 1, 1) == '1'
local channel = string.sub(ARGV[3], 3)
local changed = false
local maxq, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local resident = redis.call('EXISTS', key) == 1
local known = resident or absent or not behind
local MISS = redis.status_reply('LARDERMISS')
local FULL = redis.status_reply('LARDERFULL')
local WRONG = redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
local function wrongType(t)
  return resident and redis.call('TYPE', key).ok ~= t
end
local function full()
  return behind and maxq > 0 and redis.call('XLEN', queue) >= maxq
end
local function enqueue(fields)
  if not behind then
    changed = true
    return true
  end
  if full() then return false end
  changed = true
  local id = redis.call('XADD', queue, '*', 'k', key, unpack(fields))
  -- Merge into the marker: a delete starts it afresh; a column's value
  -- replaces its NULL and the other way round. One HSET for all of it.
  local set, drop = {'_id', id}, {}
  for i = 1, #fields, 2 do
    local f = fields[i]
    if f == 'd' then
      redis.call('DEL', marker)
      drop = {}
      set = {'_id', id, 'd', '1'}
    else
      drop[#drop + 1] = (string.sub(f, 1, 1) == 'f' and 'z' or 'f') .. string.sub(f, 2)
      set[#set + 1] = f
      set[#set + 1] = fields[i + 1]
    end
  end
  if #drop > 0 then redis.call('HDEL', marker, unpack(drop)) end
  redis.call('HSET', marker, unpack(set))
  redis.call('PERSIST', marker)
  return true
end
local function expireNew()
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
local function distinct(from)
  local seen, out = {}, {}
  for i = from, #ARGV do
    if not seen[ARGV[i]] then seen[ARGV[i]] = true; out[#out + 1] = ARGV[i] end
  end
  return out
end

local function run()
if op == 'set' then
  local col, value, cond, get, tk, ms = ARGV[6], ARGV[7], ARGV[8], ARGV[9] == '1', ARGV[10], ARGV[11]
  if (cond ~= '' or get or tk == 'k') and not known then return MISS end
  -- Only GET needs the old value and its type (a plain SET replaces any type).
  if get and wrongType('string') then return WRONG end
  local old = false
  if get and resident then old = redis.call('GET', key) end
  if (cond == 'nx' and resident) or (cond == 'xx' and not resident) then
    if get then return old end
    return false
  end
  if full() then return FULL end
  -- SET first: if Redis refuses it, the script stops with nothing queued.
  if tk == 'p' then redis.call('SET', key, value, 'PX', ms)
  elseif tk == 'a' then redis.call('SET', key, value, 'PXAT', ms)
  elseif tk == 'k' and resident then redis.call('SET', key, value, 'KEEPTTL')
  elseif ttl > 0 then redis.call('SET', key, value, 'PX', ttl)
  else redis.call('SET', key, value) end
  enqueue({'f:' .. col, value})
  if get then return old end
  return redis.status_reply('OK')
elseif op == 'getdel' then
  if not known then return MISS end
  if not resident then return false end
  if wrongType('string') then return WRONG end
  local old = redis.call('GET', key)
  if not enqueue({'d', '1'}) then return FULL end
  redis.call('DEL', key)
  return old
elseif op == 'del' then
  if not known then return MISS end
  if not resident then return 0 end
  if not enqueue({'d', '1'}) then return FULL end
  redis.call('DEL', key)
  return 1
elseif op == 'hset' or op == 'hmset' then
  local hm = op == 'hmset'
  if not known and not hm then return MISS end
  if wrongType('hash') then return WRONG end
  local fields, seen, added = {}, {}, 0
  for i = 6, #ARGV, 2 do
    fields[#fields + 1] = 'f:' .. ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
    if not seen[ARGV[i]] then
      seen[ARGV[i]] = true
      if not resident or redis.call('HEXISTS', key, ARGV[i]) == 0 then added = added + 1 end
    end
  end
  if not enqueue(fields) then return FULL end
  if resident then
    redis.call('HSET', key, unpack(ARGV, 6))
  elseif absent then
    redis.call('HSET', key, unpack(ARGV, 6))
    expireNew()
  end
  if hm then return redis.status_reply('OK') end
  return added
elseif op == 'hdel' then
  local cols = distinct(6)
  if not known then return MISS end
  if not resident then
    if behind then return 0 end
    return #cols
  end
  if wrongType('hash') then return WRONG end
  local fields = {}
  for _, c in ipairs(cols) do
    if redis.call('HEXISTS', key, c) == 1 then
      fields[#fields + 1] = 'z:' .. c
      fields[#fields + 1] = ''
    end
  end
  if #fields == 0 then return 0 end
  if not enqueue(fields) then return FULL end
  redis.call('HDEL', key, unpack(cols))
  return #fields / 2
elseif op == 'ttl' then
  if not known then return MISS end
  if not resident then return 0 end
  return redis.pcall(ARGV[6], key, unpack(ARGV, 7))
end
return redis.error_reply('ERR Larder: unknown write op ' .. op)
end

local reply = run()
if changed then
  -- A lease left saying the row is absent (stampede.hpp) is wrong from now on.
  local lease = '__larder:lease:' .. key
  if redis.call('GET', lease) == 'absent' then redis.call('DEL', lease) end
  if channel ~= '' then redis.call('PUBLISH', channel, key) end
end
return reply
)lua";

// KEYS: key, marker. ARGV: 's'|'h', TTL ms (0: none; -1: answer, store nothing),
// '1' when PostgreSQL has
// the row ('?' when PostgreSQL could not be asked), then column/value pairs
// (NULL columns left out).
// Returns 1: the row was stored as loaded; {2, col, value, ...}: pending
// writes decided the row (no pairs: no row); {3, col, value, ...}: the key
// exists (a write landed since the miss): its value is the answer, nothing is
// stored ('' for the column of a string); 0: nothing to store, nothing pending;
// -1: ('?') the pending writes, if any, do not decide the whole row.
constexpr const char* kFillLua = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then
  local t = redis.call('TYPE', KEYS[1]).ok
  if ARGV[1] == 's' and t == 'string' then return {3, '', redis.call('GET', KEYS[1])} end
  if ARGV[1] == 'h' and t == 'hash' then
    local out = {3}
    for _, x in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = x end
    return out
  end
  return 0
end
local store = tonumber(ARGV[2]) >= 0
local m = redis.call('HGETALL', KEYS[2])
if ARGV[3] == '?' then
  -- ARGV[4]: how many columns the keyspace maps; writes that set them all
  -- decide the row as surely as a delete does.
  local decided, named = false, 0
  for i = 1, #m, 2 do
    local p = string.sub(m[i], 1, 2)
    if m[i] == 'd' then decided = true end
    if p == 'f:' or p == 'z:' then named = named + 1 end
  end
  if not decided and named < tonumber(ARGV[4] or '1') then return -1 end
end
if #m == 0 then
  if ARGV[3] ~= '1' or #ARGV < 5 or not store then return 0 end
  if ARGV[1] == 's' then redis.call('SET', KEYS[1], ARGV[5])
  else redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
  if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  return 1
end
local row = {}
for i = 4, #ARGV, 2 do row[ARGV[i]] = ARGV[i + 1] end
for i = 1, #m, 2 do
  if m[i] == 'd' then row = {} end
end
for i = 1, #m, 2 do
  local p, c = string.sub(m[i], 1, 2), string.sub(m[i], 3)
  if p == 'f:' then row[c] = m[i + 1] elseif p == 'z:' then row[c] = nil end
end
local out, flat = {2}, {}
for c, v in pairs(row) do
  out[#out + 1] = c; out[#out + 1] = v
  flat[#flat + 1] = c; flat[#flat + 1] = v
end
if #flat > 0 and store then
  if ARGV[1] == 's' then redis.call('SET', KEYS[1], flat[2])
  else redis.call('HSET', KEYS[1], unpack(flat)) end
  if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
end
return out
)lua";

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

// KEYS: dead-letter stream, queue. ARGV: dead-letter id, or 'ALL'.
// Puts dead letters back in the queue (and their changes back in the markers);
// returns how many.
constexpr const char* kRequeueLua = R"lua(
local entries
if ARGV[1] == 'ALL' then entries = redis.call('XRANGE', KEYS[1], '-', '+')
else entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) end
for _, e in ipairs(entries) do
  local f, key, change = e[2], nil, {}
  for i = 1, #f, 2 do
    if f[i] == 'k' then key = f[i + 1]
    elseif f[i] ~= 'sqlstate' and f[i] ~= 'error' then
      change[#change + 1] = f[i]; change[#change + 1] = f[i + 1]
    end
  end
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
end
return #entries
)lua";

}  // namespace

std::string queueKey(std::string_view keyspace) {
  return std::string(kReservedPrefix) + "q:" + std::string(keyspace);
}

std::string deadLetterKey(std::string_view keyspace) {
  return std::string(kReservedPrefix) + "dead:" + std::string(keyspace);
}

std::string pendingMarker(std::string_view key) {
  return std::string(kReservedPrefix) + "pending:" + std::string(key);
}

const Script& writeScript() {
  static const Script s = redis::makeScript(kWriteLua);
  return s;
}
const Script& fillScript() {
  static const Script s = redis::makeScript(kFillLua);
  return s;
}
const Script& pendingScript() {
  static const Script s = redis::makeScript(kPendingLua);
  return s;
}
std::vector<std::string> preloadRequests(std::initializer_list<const Script*> scripts) {
  std::vector<std::string> out;
  for (const Script* s : scripts) {
    resp::appendMultibulk(out.emplace_back(), {"SCRIPT", "LOAD", s->body});
  }
  return out;
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
