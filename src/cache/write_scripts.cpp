#include "larder/cache/write_scripts.hpp"

#include "larder/cache/key_names.hpp"
#include "larder/resp/reply_scanner.hpp"
#include "larder/resp/reply_writer.hpp"
#include "larder/resp/request_parser.hpp"

namespace larder::cache {

namespace {

// Every write of one event-loop turn on one connection, in one call
// (WriteCall builds it). KEYS: key, marker, queue per write.
// ARGV: mode ('b' behind: queue + marker; 'c' cache only, after a write-through
// commit), the invalidation channel ('' none), the queue bound (0: none), then
// per write: op, absent ('1': the Loader found no row and nothing pending),
// TTL in ms for a new cached value, the number of op args, the op args.
// Returns one reply per write, as Redis would answer the command; a write whose
// answer depends on the row, on a key neither cached nor known absent, answers
// LARDERMISS (load the row, then retry); a full queue LARDERFULL.
//
// Cost matters here (docs/benchmarks.md): per plain SET one SET, one XADD and
// one HSET of the marker (PERSIST only when the marker lingered after a
// flush); the queue length is read once per call and counted on.
constexpr const char* kWriteLua = R"lua(
local behind, channel, maxq = ARGV[1] == 'b', ARGV[2], tonumber(ARGV[3])
local MISS, FULL, OK = {ok = 'LARDERMISS'}, {ok = 'LARDERFULL'}, {ok = 'OK'}
local WRONG = {err = 'WRONGTYPE Operation against a key holding the wrong kind of value'}
local qlen, deadkeys = {}, {}

local function full(queue)
  if not behind or maxq <= 0 then return false end
  local n = qlen[queue]
  if n == nil then
    n = redis.call('XLEN', queue)
    qlen[queue] = n
  end
  return n >= maxq
end

-- Queues the change and merges it into the marker: a delete starts it afresh,
-- a column's value replaces its NULL and the other way round. nil when
-- queued, else the reply (FULL, or Redis' error for the first write).
local function enqueue(key, marker, queue, fields, hash)
  if not behind then return nil end
  if full(queue) then return FULL end
  local id = redis.pcall('XADD', queue, '*', 'k', key, unpack(fields))
  if type(id) == 'table' then return id end
  if qlen[queue] then qlen[queue] = qlen[queue] + 1 end
  local set, drop = {'_id', id}, {}
  for i = 1, #fields, 2 do
    local f = fields[i]
    if f == 'd' then
      redis.call('DEL', marker)
      set, drop = {'_id', id, 'd', '1'}, {}
    else
      if hash then drop[#drop + 1] = (string.sub(f, 1, 1) == 'f' and 'z' or 'f') .. string.sub(f, 2) end
      set[#set + 1] = f
      set[#set + 1] = fields[i + 1]
    end
  end
  if #drop > 0 then redis.call('HDEL', marker, unpack(drop)) end
  -- A marker that lingers after a flush has an expiry; a new one has none.
  if redis.call('HSET', marker, unpack(set)) < #set / 2 then redis.call('PERSIST', marker) end
  -- A key written after one of its writes was dead-lettered: a retry of that
  -- dead letter would put the older value over this one. (deadkeys: below.)
  local dk = deadkeys[queue]
  if dk then redis.call('HDEL', dk, key) end
  return nil
end

local function changed(key)
  if channel ~= '' then redis.call('PUBLISH', channel, key) end
end

-- The row is in the cache, or known absent: answers that depend on it are
-- possible. The Loader's "absent" only holds while no write is pending.
local function known(key, marker, absent)
  local resident = redis.call('EXISTS', key) == 1
  if resident or not behind then return true, resident end
  return absent and redis.call('EXISTS', marker) == 0, false
end

local function one(key, marker, queue, op, absent, ttl, a, n)
  if op == 'set' then
    local col, value, cond, get, tk, ms = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
                                          ARGV[a + 4] == '1', ARGV[a + 5], ARGV[a + 6]
    local resident = false
    if cond ~= '' or get or tk == 'k' then
      local ok
      ok, resident = known(key, marker, absent)
      if not ok then return MISS end
    end
    -- Only GET needs the old value and its type (a plain SET replaces any type).
    if get and resident and redis.call('TYPE', key).ok ~= 'string' then return WRONG end
    local old = false
    if get and resident then old = redis.call('GET', key) end
    if (cond == 'nx' and resident) or (cond == 'xx' and not resident) then
      if get then return old end
      return false
    end
    if full(queue) then return FULL end
    -- SET first: if Redis refuses it (OOM), nothing is queued.
    local r
    if tk == 'p' then r = redis.pcall('SET', key, value, 'PX', ms)
    elseif tk == 'a' then r = redis.pcall('SET', key, value, 'PXAT', ms)
    elseif tk == 'k' and resident then r = redis.pcall('SET', key, value, 'KEEPTTL')
    elseif ttl > 0 then r = redis.pcall('SET', key, value, 'PX', ttl)
    else r = redis.pcall('SET', key, value) end
    if r.err then return r end
    enqueue(key, marker, queue, {'f:' .. col, value}, false)
    changed(key)
    if get then return old end
    return OK
  elseif op == 'getdel' or op == 'del' then
    local ok, resident = known(key, marker, absent)
    if not ok then return MISS end
    if not resident then
      if op == 'del' then return 0 end
      return false
    end
    local old
    if op == 'getdel' then
      if redis.call('TYPE', key).ok ~= 'string' then return WRONG end
      old = redis.call('GET', key)
    end
    local e = enqueue(key, marker, queue, {'d', '1'}, false)
    if e then return e end
    redis.call('DEL', key)
    changed(key)
    if op == 'del' then return 1 end
    return old
  elseif op == 'hset' or op == 'hmset' then
    local hm = op == 'hmset'
    local ok, resident = known(key, marker, absent)
    if not ok and not hm then return MISS end
    if resident and redis.call('TYPE', key).ok ~= 'hash' then return WRONG end
    local fields, seen, added = {}, {}, 0
    for i = a + 1, a + n, 2 do
      fields[#fields + 1] = 'f:' .. ARGV[i]
      fields[#fields + 1] = ARGV[i + 1]
      if not seen[ARGV[i]] then
        seen[ARGV[i]] = true
        if not resident or redis.call('HEXISTS', key, ARGV[i]) == 0 then added = added + 1 end
      end
    end
    local e = enqueue(key, marker, queue, fields, true)
    if e then return e end
    -- Cached: the whole row is known (resident, or absent with nothing
    -- pending; after a write-through commit only a resident row is updated).
    if resident or (ok and absent) then
      redis.call('HSET', key, unpack(ARGV, a + 1, a + n))
      if not resident and ttl > 0 then redis.call('PEXPIRE', key, ttl) end
    end
    changed(key)
    if hm then return OK end
    return added
  elseif op == 'hdel' then
    local cols, seen = {}, {}
    for i = a + 1, a + n do
      if not seen[ARGV[i]] then
        seen[ARGV[i]] = true
        cols[#cols + 1] = ARGV[i]
      end
    end
    local ok, resident = known(key, marker, absent)
    if not ok then return MISS end
    if not resident then
      if behind then return 0 end
      return #cols
    end
    if redis.call('TYPE', key).ok ~= 'hash' then return WRONG end
    local fields = {}
    for _, c in ipairs(cols) do
      if redis.call('HEXISTS', key, c) == 1 then
        fields[#fields + 1] = 'z:' .. c
        fields[#fields + 1] = ''
      end
    end
    if #fields == 0 then return 0 end
    local e = enqueue(key, marker, queue, fields, true)
    if e then return e end
    redis.call('HDEL', key, unpack(cols))
    changed(key)
    return #fields / 2
  elseif op == 'ttl' then
    local ok, resident = known(key, marker, absent)
    if not ok then return MISS end
    if not resident then return 0 end
    return redis.pcall(ARGV[a + 1], key, unpack(ARGV, a + 2, a + n))
  end
  return {err = 'ERR Larder: unknown write op ' .. op}
end

-- Each queue's dead-keys hash, or false when there is none, looked at before
-- anything is written. It is not among the declared keys: on a cluster, in a
-- slot being migrated, Redis refuses a script access to a key that is not on
-- this node (it may have moved), and a write cut off there would be half
-- done. So the call writes nothing and answers TRYAGAIN, as Redis answers a
-- command whose keys a migration has split; the router tries again.
if behind then
  for w = 1, #KEYS / 3 do
    local queue = KEYS[3 * w]
    if deadkeys[queue] == nil then
      local dk = '__larder:deadkeys:' .. string.sub(queue, 12)
      local n = redis.pcall('EXISTS', dk)
      if type(n) == 'table' then
        return redis.error_reply('TRYAGAIN Larder: the key\'s slot is being migrated')
      end
      deadkeys[queue] = n == 1 and dk
    end
  end
end

local out, a = {}, 4
for w = 1, #KEYS / 3 do
  local n = tonumber(ARGV[a + 3])
  out[w] = one(KEYS[3 * w - 2], KEYS[3 * w - 1], KEYS[3 * w], ARGV[a], ARGV[a + 1] == '1',
               tonumber(ARGV[a + 2]), a + 3, n)
  a = a + 4 + n
end
return out
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

}  // namespace

WriteCall::WriteCall(char mode, std::string_view channel, std::size_t max_queue) {
  resp::appendBulk(header_args_, std::string_view(&mode, 1));
  resp::appendBulk(header_args_, channel);
  resp::appendBulk(header_args_, std::to_string(max_queue));
}

void WriteCall::add(std::string_view key, std::string_view keyspace, std::string_view op,
                    bool absent, long long ttl_ms, const std::vector<std::string>& op_args) {
  if (writes_ == 0) {  // one allocation for a typical batch, not a doubling per few writes
    keys_.reserve(1024);
    args_.reserve(1024);
  }
  resp::appendBulk(keys_, key);
  if (nameLayout() == NameLayout::Cluster) {  // the names in the key's slot (key_names.hpp)
    resp::appendBulk(keys_, pendingMarker(key));
    resp::appendBulk(keys_, writeQueueKey(keyspace, key));
  } else {
    appendOneRedisNames(key, keyspace);
  }
  resp::appendBulk(args_, op);

  resp::appendBulk(args_, absent ? "1" : "0");
  resp::appendBulk(args_, std::to_string(ttl_ms));
  resp::appendBulk(args_, std::to_string(op_args.size()));
  for (const auto& a : op_args) resp::appendBulk(args_, a);
  ++writes_;
  arg_count_ += 4 + op_args.size();
}

void WriteCall::appendOneRedisNames(std::string_view key, std::string_view keyspace) {
  // __larder:pending:<key> and __larder:q:<keyspace>, without building them.
  const std::string_view prefix = kReservedPrefix;
  resp::appendNumberLine(keys_, '$', static_cast<long long>(prefix.size() + 8 + key.size()));
  keys_.append(prefix).append("pending:").append(key).append("\r\n");
  resp::appendNumberLine(keys_, '$', static_cast<long long>(prefix.size() + 2 + keyspace.size()));
  keys_.append(prefix).append("q:").append(keyspace).append("\r\n");
}

std::string WriteCall::request(bool body) const {
  const Script& script = writeScript();
  std::string out;
  out.reserve(64 + keys_.size() + args_.size() + header_args_.size() +
              (body ? script.body.size() : 40));
  resp::appendArrayHeader(out, 3 + 3 * writes_ + arg_count_);
  resp::appendBulk(out, body ? "EVAL" : "EVALSHA");
  resp::appendBulk(out, body ? std::string_view(script.body) : std::string_view(script.sha1));
  resp::appendBulk(out, std::to_string(3 * writes_));
  out.append(keys_).append(header_args_).append(args_);
  return out;
}

std::vector<std::string_view> splitWriteReplies(std::string_view frame) {
  std::vector<std::string_view> out;
  std::size_t pos = frame.find("\r\n");
  if (frame.empty() || frame.front() != '*' || pos == std::string_view::npos) return out;
  long long n = 0;
  for (std::size_t i = 1; i < pos && frame[i] >= '0' && frame[i] <= '9'; ++i) {
    n = n * 10 + (frame[i] - '0');
  }
  pos += 2;
  for (long long i = 0; i < n; ++i) {
    resp::ReplyScanner scanner;
    if (pos > frame.size() || scanner.scan(frame.substr(pos)) != resp::ScanStatus::Complete) {
      return {};
    }
    out.push_back(frame.substr(pos, scanner.frameSize()));
    pos += scanner.frameSize();
  }
  return out;
}

std::string queueKey(std::string_view keyspace) {
  return std::string(kReservedPrefix).append(kQueue).append(":").append(keyspace);
}

std::string deadLetterKey(std::string_view keyspace) {
  return std::string(kReservedPrefix).append(kDeadLetters).append(":").append(keyspace);
}

std::string deadKeysKey(std::string_view keyspace) {
  return std::string(kReservedPrefix).append(kDeadKeys).append(":").append(keyspace);
}

std::string pendingMarker(std::string_view key) { return internalKey("pending", key); }

const Script& writeScript() {
  static const Script s = redis::makeScript(kWriteLua);
  return s;
}
const Script& fillScript() {
  static const Script s = redis::makeScript(kFillLua);
  return s;
}
std::vector<std::string> preloadRequests(std::initializer_list<const Script*> scripts) {
  std::vector<std::string> out;
  for (const Script* s : scripts) {
    resp::appendMultibulk(out.emplace_back(), {"SCRIPT", "LOAD", s->body});
  }
  return out;
}

}  // namespace larder::cache
