#include "larder/cache/flush_scripts.hpp"

namespace larder::cache {

namespace {

// The first line of a script that touches the keys of several slots of one
// node (Redis 7: only declared keys must share a slot). A script with flags
// and without allow-oom is refused whole while Redis is over maxmemory; the
// ack only shrinks Redis (PEXPIRE, UNLINK, XTRIM), and is what frees it.
constexpr const char* kCrossSlotRead = "#!lua flags=no-writes,allow-cross-slot-keys\n";
constexpr const char* kCrossSlotWrite = "#!lua flags=allow-cross-slot-keys,allow-oom\n";

// KEYS: the instance id key. ARGV: an id to claim if none is set.
constexpr const char* kClaimLua = R"lua(
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
)lua";

// readQueue(queue, instance id key): the queue's state, read right after the
// batch's XRANGE (a native command: Lua turning a thousand entries into tables
// and back cost Redis ~5 us per entry, XRANGE alone ~0.6), so everything it
// reports is at or after what the XRANGE saw.
// Returns {instance id or '', newest id or '', depth, now in ms, the queue's
// last generated id or '', oldest id or ''}.
constexpr const char* kReadQueueLua = R"lua(
local function readQueue(queue, id_key)
  local depth, generated, newest, oldest = 0, '', '', ''
  if redis.call('EXISTS', queue) == 1 then
    local info = redis.call('XINFO', 'STREAM', queue)
    for i = 1, #info, 2 do
      local f, v = info[i], info[i + 1]
      if f == 'length' then depth = v
      elseif f == 'last-generated-id' then generated = v
      elseif f == 'first-entry' and v then oldest = v[1]
      elseif f == 'last-entry' and v then newest = v[1] end
    end
  end
  local t = redis.call('TIME')
  return {redis.call('GET', id_key) or '', newest, depth,
          t[1] * 1000 + math.floor(t[2] / 1000), generated, oldest}
end
)lua";

// KEYS: queue, instance id.
constexpr const char* kReadOneLua = R"lua(
return readQueue(KEYS[1], KEYS[2])
)lua";

// A cluster: KEYS: one slot's queue (it routes the call to the node). ARGV:
// per slot (that one included) its queue and instance id key, all owned by
// this node as Larder's map says. Returns per slot readQueue's array, or the
// error of a slot the node does not serve (moved, or migrating): asked again
// on its own, which follows MOVED and ASK.
constexpr const char* kReadEachLua = R"lua(
local out = {}
for i = 1, #ARGV, 2 do
  local ok, r = pcall(readQueue, ARGV[i], ARGV[i + 1])
  if ok then out[#out + 1] = r
  else out[#out + 1] = redis.error_reply(type(r) == 'table' and r.err or tostring(r)) end
end
return out
)lua";

// "ms-seq" a < b; '' is before everything.
constexpr const char* kOlderLua = R"lua(
local function older(a, b)
  if not a or a == '' then return b ~= '' end
  if b == '' then return false end
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
)lua";

// ackQueue(queue, marker linger ms, a, i): a[i..] is the queue's section
// (flush_plan.hpp, appendAckSection): trim below this id (the batch's last id
// + 1), n rows, then per row: key, its pending marker, its last entry id; m
// replayed keys, then per key: key, marker, its last entry id.
// The markers are named by Larder (key_names.hpp): on a cluster they carry a
// slot tag, the queue's. A replayed key's marker and cached value may come
// from before the newer value PostgreSQL has (Redis went back): both go,
// unless a newer write came. ackSpan(a, i): the index after the section.
constexpr const char* kAckQueueLua = R"lua(
local function ackQueue(queue, linger, a, i)
  local minid, n = a[i], tonumber(a[i + 1])
  i = i + 2
  for _ = 1, n do
    local marker, id = a[i + 1], a[i + 2]
    i = i + 3
    -- Lingers: a load that read the row before the COMMIT still lays it over.
    -- (A load lease saying "absent" dies before the marker: Loader::absentLeaseMs.)
    if redis.call('HGET', marker, '_id') == id then redis.call('PEXPIRE', marker, linger) end
  end
  local m = tonumber(a[i])
  i = i + 1
  for _ = 1, m do
    local key, marker, id = a[i], a[i + 1], a[i + 2]
    i = i + 3
    if redis.call('HGET', marker, '_id') == id then redis.call('UNLINK', marker, key) end
  end
  return redis.call('XTRIM', queue, 'MINID', minid)
end
local function ackSpan(a, i)
  local n = tonumber(a[i + 1])
  return i + 3 + 3 * n + 3 * tonumber(a[i + 2 + 3 * n])
end
)lua";

// KEYS: queue. ARGV: marker linger ms, the queue's section.
constexpr const char* kAckOneLua = R"lua(
return ackQueue(KEYS[1], ARGV[1], ARGV, 2)
)lua";

// A cluster: KEYS: one slot's queue (it routes the call). ARGV: marker linger
// ms, then per slot (that one included): its queue, its section. Returns per
// slot XTRIM's count, or the error of a slot the node does not serve.
constexpr const char* kAckEachLua = R"lua(
local out, i = {}, 2
while i <= #ARGV do
  local ok, r = pcall(ackQueue, ARGV[i], ARGV[1], ARGV, i + 1)
  if ok then out[#out + 1] = r
  else out[#out + 1] = redis.error_reply(type(r) == 'table' and r.err or tostring(r)) end
  i = ackSpan(ARGV, i + 1)
end
return out
)lua";

// KEYS: dead-letter stream, marker, key, dead-keys hash. ARGV: last entry id
// of the key in the batch, bound on dead letters, key, sqlstate, message,
// change fields... The cached value PostgreSQL refused is dropped (unless
// newer writes came), so the next read shows the row PostgreSQL has; the key
// goes into the dead-keys hash, which a later write takes it out of again
// (a retry must not put this change over that write). -1: the bound is reached.
constexpr const char* kDeadLua = R"lua(
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
local id = redis.call('XADD', KEYS[1], '*', 'k', ARGV[3], 'sqlstate', ARGV[4], 'error', ARGV[5],
                      unpack(ARGV, 6))
redis.call('HSET', KEYS[4], ARGV[3], id)
if redis.call('HGET', KEYS[2], '_id') == ARGV[1] then
  redis.call('DEL', KEYS[2])
  redis.call('DEL', KEYS[3])
end
return 1
)lua";

// KEYS: queue. ARGV: PostgreSQL's applied position "ms-seq", the id just
// after it. New entries must get ids above what was applied, or
// the flusher would take them for replays: when the queue's last generated id
// is not above it (Redis went back), an entry with the next id is added and
// deleted at once, which moves the queue's id generator past it.
constexpr const char* kResyncBody = R"lua(
local generated = ''
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then generated = info[i + 1] end
  end
end
local moved = 0
if older(generated, ARGV[2]) then
  redis.call('XDEL', KEYS[1], redis.call('XADD', KEYS[1], ARGV[2], 'k', ''))
  moved = 1
end
return moved
)lua";

// KEYS: marker. ARGV: the entry id it must still name.
constexpr const char* kDropMarkerLua = R"lua(
if redis.call('HGET', KEYS[1], '_id') == ARGV[1] then return redis.call('UNLINK', KEYS[1]) end
return 0
)lua";

// KEYS: one slot's queue. ARGV: the queues of the other slots of the chunk,
// all owned by this node as Larder's map says (a slot it no longer owns
// answers an error to pcall, and is skipped: its new owner's sweep finds it).
// Returns, per queue with entries: its index (0: KEYS[1]), newest id,
// length, oldest id.
constexpr const char* kSweepLua = R"lua(#!lua flags=no-writes,allow-cross-slot-keys
local found = {}
local function look(i, q)
  local n = redis.pcall('XLEN', q)
  if type(n) ~= 'number' then
    -- a slot this node does not serve (moved, or migrating): unknown here
    found[#found + 1] = i
    found[#found + 1] = ''
    found[#found + 1] = -1
    found[#found + 1] = ''
  elseif n > 0 then
    found[#found + 1] = i
    found[#found + 1] = redis.call('XREVRANGE', q, '+', '-', 'COUNT', 1)[1][1]
    found[#found + 1] = n
    found[#found + 1] = redis.call('XRANGE', q, '-', '+', 'COUNT', 1)[1][1]
  end
end
look(0, KEYS[1])
for i = 1, #ARGV do look(i, ARGV[i]) end
return found
)lua";

}  // namespace

const redis::Script& sweepScript() {
  static const redis::Script s = redis::makeScript(kSweepLua);
  return s;
}

const redis::Script& dropMarkerScript() {
  static const redis::Script s = redis::makeScript(kDropMarkerLua);
  return s;
}

const redis::Script& claimIdScript() {
  static const redis::Script s = redis::makeScript(kClaimLua);
  return s;
}
const redis::Script& readBatchScript() {
  static const redis::Script s = redis::makeScript(std::string(kReadQueueLua) + kReadOneLua);
  return s;
}
const redis::Script& readSlotsScript() {
  static const redis::Script s =
      redis::makeScript(std::string(kCrossSlotRead) + kReadQueueLua + kReadEachLua);
  return s;
}
const redis::Script& ackScript() {
  static const redis::Script s = redis::makeScript(std::string(kAckQueueLua) + kAckOneLua);
  return s;
}
const redis::Script& ackSlotsScript() {
  static const redis::Script s =
      redis::makeScript(std::string(kCrossSlotWrite) + kAckQueueLua + kAckEachLua);
  return s;
}
const redis::Script& deadLetterScript() {
  static const redis::Script s = redis::makeScript(kDeadLua);
  return s;
}
const redis::Script& resyncScript() {
  static const redis::Script s = redis::makeScript(std::string(kOlderLua) + kResyncBody);
  return s;
}

}  // namespace larder::cache
