package redis

import goredis "github.com/redis/go-redis/v9"

// The Lua scripts below run atomically on the Redis server. Every key one
// script touches carries the same hash tag (see keys in redis.go), so each
// script runs on a single slot and works on Redis Cluster.
//
// A record is a hash:
//
//	d  the record without its body and result body, as
//	   Record.MarshalBinary encodes it
//	b  the body, when not nil
//	r  the result's body, when the record has a result with a non-nil body
//	v  a version, incremented by every write (compare-and-set for Update)
//	k  the name of the record's idempotency key, if it has one
//	t  the record's TombstoneTTL in milliseconds
//	x  present once an expiry was set (the record became final)
//	i  the record's entry in the listing indexes (see indexLua)
//
// A queue entry is a stream entry with the fields id (the request id) and n
// (how many deliveries its earlier entries had; an entry handed back by Nack
// is a new entry that keeps counting). A delayed entry is a member of a
// sorted set scored by its due time in milliseconds of the server clock,
// written nonce:n:id.

// expiryLua sets or clears the expiry of a record (KEYS[1]), its
// idempotency key (ik, may be false) and its tombstone (KEYS[2]): expireAt
// and tombAt are Unix milliseconds, 0 for none. The record's field x marks
// that an expiry was set, so that the common write of a record that never
// had one costs nothing here. A tombstone's value is "o:" and the owner of
// its record (tombstones written before they kept the owner hold "1").
const expiryLua = `
local function apply_expiry(rec, tomb, ik, had, expireAt, tombAt, owner)
  if expireAt > 0 then
    redis.call('HSET', rec, 'x', 1)
    redis.call('PEXPIREAT', rec, expireAt)
    if ik then redis.call('PEXPIREAT', ik, expireAt) end
    if tombAt > 0 then
      redis.call('SET', tomb, 'o:' .. owner, 'PXAT', tombAt)
    end
  elseif had then
    redis.call('HDEL', rec, 'x')
    redis.call('PERSIST', rec)
    if ik then redis.call('PERSIST', ik) end
    redis.call('DEL', tomb)
  end
end
`

// indexLua maintains the listing indexes (see list.go). A record's
// position in a listing, M, is 16 hex digits of its CreatedAt in Unix
// nanoseconds (sign bit flipped, so that they sort as the numbers do)
// followed by its id; its entry, kept in its field i, is
// state|len(M)|M owner (the length, so that neither an id nor an owner
// needs escaping). The indexes are sorted sets under the Backend's prefix:
//
//	ls:<state>                 M of every record in the state, all scored 0
//	                           (so that they sort by M: ZREVRANGEBYLEX)
//	lo:<len>:<owner>:<state>   the same per owner, but for the owner ""
//	                           (a listing by owner never asks for it)
//	lf                         the entry of every final record, scored by
//	                           its UpdatedAt in Unix microseconds
//	le:<state>                 the entry of every final record that
//	                           expires, scored by its expiry in Unix
//	                           milliseconds
//
// A record that Redis expires leaves its entries behind; Purge removes
// them (pruneScript), CountStates does not count them and List skips them.
const indexLua = `
local finalStates = {succeeded = true, failed = true, canceled = true}

-- idx_parse returns the position, state and owner of an entry.
local function idx_parse(e)
  local p1 = string.find(e, '|', 1, true)
  if not p1 then return nil end
  local p2 = string.find(e, '|', p1 + 1, true)
  if not p2 then return nil end
  local n = tonumber(string.sub(e, p1 + 1, p2 - 1))
  if not n then return nil end
  return string.sub(e, p2 + 1, p2 + n), string.sub(e, 1, p1 - 1), string.sub(e, p2 + n + 1)
end

local function idx_del(base, e)
  local m, st, owner = idx_parse(e)
  if not m then return end
  redis.call('ZREM', base .. 'ls:' .. st, m)
  if owner ~= '' then
    redis.call('ZREM', base .. 'lo:' .. #owner .. ':' .. owner .. ':' .. st, m)
  end
  if finalStates[st] then
    redis.call('ZREM', base .. 'lf', e)
    redis.call('ZREM', base .. 'le:' .. st, e)
  end
end

-- upd is the UpdatedAt of a final record (false for another), exp its
-- expiry (0: none).
local function idx_add(base, e, upd, exp)
  local m, st, owner = idx_parse(e)
  if not m then return end
  redis.call('ZADD', base .. 'ls:' .. st, 0, m)
  if owner ~= '' then
    redis.call('ZADD', base .. 'lo:' .. #owner .. ':' .. owner .. ':' .. st, 0, m)
  end
  if upd and finalStates[st] then
    redis.call('ZADD', base .. 'lf', upd, e)
    if exp > 0 then redis.call('ZADD', base .. 'le:' .. st, exp, e) end
  end
end
`

// createScript records requests and, if asked, enqueues them: one record
// after the other, each with its own outcome, as separate calls in that
// order would (see batch.go). It publishes nothing: nobody can be watching
// a record before it exists, since ids are new and callers watch a record
// they have read or created.
//
// KEYS: stream, unenqueued set.
// ARGV: the key prefix with the queue's hash tag (Backend.base), then per
// record: id, flags (the create* constants in batch.go), tombstone TTL ms,
// the record's field d, its index entry (field i), and as the flags say:
// expireAt ms, tombAt ms and its owner, its score in the unenqueued set,
// its body, its result's body, its idempotency key's key, its UpdatedAt in
// microseconds when it is final. Only what a record has is sent: each
// argument costs the server a string of its own.
//
// Returns per record: 1 when created, {d, b, r} of the earlier record of a
// duplicate idempotency key, 0 when a record with its id exists, or the
// text of the error that stopped it (what it wrote before the error stays,
// as after a failed script call).
var createScript = goredis.NewScript(expiryLua + indexLua + `
local base = ARGV[1]

local function create(id, ik, enqueue, ttl, d, e, expireAt, tombAt, owner, score, body, result, upd)
  if ik then
    local other = redis.call('GET', ik)
    if other then
      local cur = redis.call('HMGET', base .. 'r:' .. other, 'd', 'b', 'r')
      if cur[1] then return cur end
    end
  end
  local rec = base .. 'r:' .. id
  if redis.call('EXISTS', rec) == 1 then return 0 end
  -- No table is built for unpack: measured, that costs about as much as
  -- the HSET itself. The rarer fields r and k take an HSET of their own.
  if body then
    redis.call('HSET', rec, 'v', 1, 't', ttl, 'd', d, 'i', e, 'b', body)
  else
    redis.call('HSET', rec, 'v', 1, 't', ttl, 'd', d, 'i', e)
  end
  if result then redis.call('HSET', rec, 'r', result) end
  if ik then
    redis.call('HSET', rec, 'k', ik)
    redis.call('SET', ik, id)
  end
  apply_expiry(rec, base .. 't:' .. id, ik, false, expireAt, tombAt, owner)
  if enqueue then
    redis.call('XADD', KEYS[1], '*', 'id', id, 'n', 0)
  end
  if score then
    redis.call('ZADD', KEYS[2], score, id)
  end
  idx_add(base, e, upd, expireAt)
  return 1
end

local out = {}
local i, n = 2, #ARGV
while i <= n do
  local id, flags, ttl, d, e = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local expireAt, tombAt, owner, score, body, result, ik, upd = 0, 0, '', false, false, false, false, false
  if bit.band(flags, 2) ~= 0 then
    expireAt, tombAt, owner = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), ARGV[i + 2]
    i = i + 3
  end
  if bit.band(flags, 4) ~= 0 then score = ARGV[i]; i = i + 1 end
  if bit.band(flags, 8) ~= 0 then body = ARGV[i]; i = i + 1 end
  if bit.band(flags, 16) ~= 0 then result = ARGV[i]; i = i + 1 end
  if bit.band(flags, 32) ~= 0 then ik = ARGV[i]; i = i + 1 end
  if bit.band(flags, 64) ~= 0 then upd = ARGV[i]; i = i + 1 end
  local ok, res = pcall(create, id, ik, bit.band(flags, 1) ~= 0, ttl, d, e, expireAt, tombAt, owner, score, body, result, upd)
  if not ok then
    if type(res) == 'table' and res.err then res = res.err end
    res = tostring(res)
  end
  out[#out + 1] = res
end
return out
`)

// updateScript stores a new version of a record if the version it was read
// at is still current, and keeps the listing indexes and the unenqueued set
// in step. Only the fields that changed are sent: a large body is not
// written again when the state changes. With enqueue set it also adds the
// id to the stream, as Enqueue(id, 0) would (Requeue).
//
// KEYS: record, tombstone, unenqueued set, stream.
// ARGV: 1 version read, 2 tombstone TTL ms, 3 expireAt ms, 4 tombAt ms,
// 5 the writer's origin (Backend.origin, published to the record's watch
// channel, base .. 'w:' .. id), 6 the record's owner, 7 id, 8 its score in the
// unenqueued set ("": not unenqueued), 9 the key prefix (Backend.base),
// 10 its index entry, 11 its UpdatedAt in microseconds when final ("":
// not final), 12 enqueue (0/1), 13 number of fields to delete, their
// names, then the fields to set and their values.
//
// Returns {1} when stored, {-1} if the record is gone, and on a version
// conflict {0, d, b, r, v}: the record as it is, so that the caller can try
// again without reading it.
var updateScript = goredis.NewScript(expiryLua + indexLua + "local o = 13\n" + updateLua + "return {1}\n")

// updateLua is the body of updateScript and completeScript: ARGV[o] is
// the number of fields to delete.
const updateLua = `
local cur = redis.call('HMGET', KEYS[1], 'v', 'k', 'x', 'i')
if not cur[1] then return {-1} end
if cur[1] ~= ARGV[1] then
  local now = redis.call('HMGET', KEYS[1], 'd', 'b', 'r')
  return {0, now[1], now[2], now[3], cur[1]}
end
local ndel = tonumber(ARGV[o])
if ndel > 0 then
  redis.call('HDEL', KEYS[1], unpack(ARGV, o + 1, o + ndel))
end
local e, upd = ARGV[10], ARGV[11]
if upd == '' then upd = false end
if cur[4] ~= e then
  redis.call('HSET', KEYS[1], 'v', tonumber(cur[1]) + 1, 't', ARGV[2], 'i', e, unpack(ARGV, o + 1 + ndel))
else
  redis.call('HSET', KEYS[1], 'v', tonumber(cur[1]) + 1, 't', ARGV[2], unpack(ARGV, o + 1 + ndel))
end
if cur[4] ~= e or upd then
  if cur[4] then idx_del(ARGV[9], cur[4]) end
  idx_add(ARGV[9], e, upd, tonumber(ARGV[3]))
end
if ARGV[8] == '' then
  redis.call('ZREM', KEYS[3], ARGV[7])
else
  redis.call('ZADD', KEYS[3], ARGV[8], ARGV[7])
end
apply_expiry(KEYS[1], KEYS[2], cur[2], cur[3], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[6])
if ARGV[12] == '1' then
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[7], 'n', 0)
end
redis.call('PUBLISH', ARGV[9] .. 'w:' .. ARGV[7], ARGV[5])
`

// completeScript is updateScript, then, once the record is stored, the ack
// of settleScript if the lease still holds: the outcome of a request and
// the settling of its lease in one script (asyncreq.Completer). The caller
// runs it only for a record it made final.
//
// KEYS: as updateScript.
// ARGV: as updateScript up to 12, then 13 group, 14 consumer, 15 entry
// id, 16 delivery count, 17 lease ms, and from 18 on what updateScript
// takes from 13 on.
//
// Returns as updateScript. A lease that no longer holds is left as it is.
var completeScript = goredis.NewScript(expiryLua + indexLua + "local o = 18\n" + updateLua + `
local p = redis.call('XPENDING', KEYS[4], ARGV[13], ARGV[15], ARGV[15], 1, ARGV[14])
if p[1] and p[1][4] == tonumber(ARGV[16]) and p[1][3] < tonumber(ARGV[17]) then
  redis.call('XACK', KEYS[4], ARGV[13], ARGV[15])
  redis.call('XDEL', KEYS[4], ARGV[15])
end
return {1}
`)

// deleteScript removes a record, its idempotency key and its entries in
// the listing indexes, and keeps or drops its tombstone, which names the
// record's owner (read from its field d; "1", no owner, if d cannot be
// read).
//
// KEYS: record, tombstone, unenqueued set.
// ARGV: keep a tombstone (0/1), tombstone TTL ms to use when the record has
// none, the deleter's origin (published to the record's watch channel), id,
// the key prefix (Backend.base).
//
// Returns 1 when deleted, 0 when there was no record.
var deleteScript = goredis.NewScript(indexLua + `
local cur = redis.call('HMGET', KEYS[1], 'k', 't', 'd', 'i')
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
if cur[1] then redis.call('DEL', cur[1]) end
if ARGV[1] == '1' then
  local ttl = tonumber(cur[2] or '0') or 0
  if ttl <= 0 then ttl = tonumber(ARGV[2]) end
  local tomb = '1'
  local ok, rec = pcall(cjson.decode, cur[3] or '')
  if ok and type(rec) == 'table' then
    local owner = rec['owner']
    if owner == nil then owner = '' end
    if type(owner) == 'string' then tomb = 'o:' .. owner end
  end
  redis.call('SET', KEYS[2], tomb, 'PX', ttl)
else
  redis.call('DEL', KEYS[2])
end
redis.call('ZREM', KEYS[3], ARGV[4])
if cur[4] then idx_del(ARGV[5], cur[4]) end
redis.call('PUBLISH', ARGV[5] .. 'w:' .. ARGV[4], ARGV[3])
return 1
`)

// enqueueScript adds an entry to the stream, or to the delayed set when it
// is not due yet.
//
// KEYS: stream, delayed set.
// ARGV: id, delay ms, n, nonce.
var enqueueScript = goredis.NewScript(`
local delay = tonumber(ARGV[2])
if delay <= 0 then
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'n', ARGV[3])
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + delay, ARGV[4] .. ':' .. ARGV[3] .. ':' .. ARGV[1])
return 1
`)

// fetchScript is one non-blocking round of Dequeue: it moves due delayed
// entries to the stream, reclaims entries whose lease ran out (pending
// longer than the lease length) for this consumer, and reads new entries,
// up to count leases in all. On request it also removes consumers that hold
// nothing and were idle for long.
//
// It also reads the record of each lease, so that the worker's claim (an
// Update) finds it in the record cache and needs no read of its own: the
// record's fields d, b and r and its version, unless the record is missing
// or its fields are larger than the cache keeps.
//
// KEYS: stream, delayed set.
// ARGV: group, consumer, count, lease ms, XAUTOCLAIM cursor (empty: do not
// reclaim this round), most entries to promote, consumer idle limit ms (0:
// no cleanup), record key prefix, largest record to return in bytes.
//
// Returns {cursor, ms until the next delayed entry is due (-1: none),
// then per lease: entry id, request id, n, the entry's delivery count, and
// the record as {v, d, b, r} (b and r nil when absent) or {}}.
var fetchScript = goredis.NewScript(`
local stream, delayed = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
for _, m in ipairs(due) do
  local _, n, id = string.match(m, '^([^:]*):([^:]*):(.*)$')
  if id then
    redis.call('XADD', stream, '*', 'id', id, 'n', n)
  end
  redis.call('ZREM', delayed, m)
end

local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local recPrefix, recMax = ARGV[8], tonumber(ARGV[9])
local function record(id)
  if id == nil or id == '' then return {} end
  local key = recPrefix .. id
  local size = redis.call('HSTRLEN', key, 'd') + redis.call('HSTRLEN', key, 'b') + redis.call('HSTRLEN', key, 'r')
  if size == 0 or size > recMax then return {} end
  local f = redis.call('HMGET', key, 'v', 'd', 'b', 'r')
  if not f[1] or not f[2] then return {} end
  return f
end

local out = {'', -1}
local got = 0
local claimed = {'', {}}
if ARGV[5] ~= '' then
  claimed = redis.call('XAUTOCLAIM', stream, group, consumer, tonumber(ARGV[4]), ARGV[5], 'COUNT', count)
  out[1] = claimed[1]
end
for _, e in ipairs(claimed[2]) do
  local fields = e[2]
  if type(fields) ~= 'table' then
    redis.call('XACK', stream, group, e[1])
  else
    local p = redis.call('XPENDING', stream, group, e[1], e[1], 1, consumer)
    local dc = 1
    if p[1] then dc = p[1][4] end
    local id = field(fields, 'id') or ''
    table.insert(out, e[1])
    table.insert(out, id)
    table.insert(out, tonumber(field(fields, 'n') or '0') or 0)
    table.insert(out, dc)
    table.insert(out, record(id))
    got = got + 1
  end
end

if got < count then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - got, 'STREAMS', stream, '>')
  if r then
    for _, e in ipairs(r[1][2]) do
      local fields = e[2]
      local id = field(fields, 'id') or ''
      table.insert(out, e[1])
      table.insert(out, id)
      table.insert(out, tonumber(field(fields, 'n') or '0') or 0)
      table.insert(out, 1)
      table.insert(out, record(id))
    end
  end
end

local nd = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if nd[2] then
  local wait = tonumber(nd[2]) - now
  if wait < 0 then wait = 0 end
  out[2] = wait
end

local idleLimit = tonumber(ARGV[7])
if idleLimit > 0 then
  local cs = redis.call('XINFO', 'CONSUMERS', stream, group)
  for _, c in ipairs(cs) do
    local name = field(c, 'name')
    local pending = tonumber(field(c, 'pending') or '1')
    local idle = tonumber(field(c, 'idle') or '0')
    if name ~= consumer and pending == 0 and idle > idleLimit then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
    end
  end
end
return out
`)

// settleScript extends, acks or nacks a lease after checking that it is
// still held: the entry is pending for the lease's consumer, has been
// delivered as often as when the lease was handed out (a reclaim by another
// consumer counts a delivery), and has been idle for less than the lease
// length.
//
// KEYS: stream, delayed set.
// ARGV: group, consumer, entry id, delivery count, lease ms, mode
// (extend/ack/nack), delay ms, request id, n, nonce.
//
// Returns 1 when done, 0 when the lease is lost.
var settleScript = goredis.NewScript(`
local stream, delayed = KEYS[1], KEYS[2]
local group, consumer, entry = ARGV[1], ARGV[2], ARGV[3]
local p = redis.call('XPENDING', stream, group, entry, entry, 1, consumer)
if not p[1] then return 0 end
if p[1][4] ~= tonumber(ARGV[4]) or p[1][3] >= tonumber(ARGV[5]) then return 0 end
local mode = ARGV[6]
if mode == 'extend' then
  redis.call('XCLAIM', stream, group, consumer, 0, entry, 'JUSTID')
  return 1
end
redis.call('XACK', stream, group, entry)
redis.call('XDEL', stream, entry)
if mode == 'nack' then
  local delay = tonumber(ARGV[7])
  if delay <= 0 then
    redis.call('XADD', stream, '*', 'id', ARGV[8], 'n', ARGV[9])
  else
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZADD', delayed, now + delay, ARGV[10] .. ':' .. ARGV[9] .. ':' .. ARGV[8])
  end
end
return 1
`)

// countScript counts the records by state: the size of each state's
// index, less, for a final state, the entries of records that expired
// (by the server's clock) and that Purge has not removed yet.
//
// KEYS: ls:<state> for pending, running, succeeded, failed and canceled,
// then le:<state> for succeeded, failed and canceled.
//
// Returns the five counts in that order.
var countScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, 5 do out[i] = redis.call('ZCARD', KEYS[i]) end
for i = 3, 5 do
  out[i] = out[i] - redis.call('ZCOUNT', KEYS[i + 3], '-inf', now)
end
return out
`)

// pruneScript removes the index entries of up to limit final records that
// Redis expired, oldest expiry first.
//
// KEYS: le:<state> for succeeded, failed and canceled.
// ARGV: the key prefix (Backend.base), limit.
//
// Returns how many entries it removed.
var pruneScript = goredis.NewScript(indexLua + `
local base, limit = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
for _, key in ipairs(KEYS) do
  if n >= limit then break end
  local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, limit - n)
  for _, e in ipairs(due) do
    local m = idx_parse(e)
    -- A record still there (its expiry is the server's to apply) stays
    -- indexed; so does everything after it.
    if m and redis.call('EXISTS', base .. 'r:' .. string.sub(m, 17)) == 1 then break end
    idx_del(base, e)
    redis.call('ZREM', key, e)
    n = n + 1
  end
end
return n
`)

// purgeFinishedScript deletes up to limit final records whose UpdatedAt is
// before a time, oldest first, as deleteScript would, and drops the index
// entries of records that Redis expired on the way. It looks at no more
// than a bound of entries, so that one call never blocks the server long.
//
// KEYS: lf, unenqueued set.
// ARGV: the key prefix (Backend.base), the time in Unix microseconds
// (exclusive), limit, keep tombstones (0/1), tombstone TTL ms to use when
// a record has none, most entries to look at.
//
// Returns {how many records it deleted, 1 when no entry before the time is
// left (0 when it stopped at limit or at the bound)}.
var purgeFinishedScript = goredis.NewScript(indexLua + `
local base, before, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local tombstone, defTTL, most = ARGV[4] == '1', tonumber(ARGV[5]), tonumber(ARGV[6])
local deleted, seen, exhausted = 0, 0, 0
while deleted < limit and seen < most do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. before, 'LIMIT', 0, math.min(limit - deleted, most - seen))
  if #batch == 0 then exhausted = 1; break end
  for _, e in ipairs(batch) do
    seen = seen + 1
    local m, _, owner = idx_parse(e)
    if m then
      local id = string.sub(m, 17)
      local rec = base .. 'r:' .. id
      local cur = redis.call('HMGET', rec, 'k', 't', 'i')
      if cur[3] == e then
        redis.call('DEL', rec)
        if cur[1] then redis.call('DEL', cur[1]) end
        local tomb = base .. 't:' .. id
        if tombstone then
          local ttl = tonumber(cur[2] or '0') or 0
          if ttl <= 0 then ttl = defTTL end
          redis.call('SET', tomb, 'o:' .. owner, 'PX', ttl)
        else
          redis.call('DEL', tomb)
        end
        redis.call('ZREM', KEYS[2], id)
        redis.call('PUBLISH', base .. 'w:' .. id, '')
        deleted = deleted + 1
      end
      idx_del(base, e)
    end
    redis.call('ZREM', KEYS[1], e)
  end
end
return {deleted, exhausted}
`)

// indexScript adds records written before the listing indexes existed to
// them (Reindex): each record that still has the version read and has no
// index entry yet.
//
// KEYS: lf (for routing: every key shares its hash tag).
// ARGV: the key prefix (Backend.base), then per record: id, version read,
// its index entry, its UpdatedAt in microseconds when final ("": not
// final), its expiry in Unix milliseconds (0: none).
//
// Returns how many records it indexed.
var indexScript = goredis.NewScript(indexLua + `
local base = ARGV[1]
local n = 0
for i = 2, #ARGV, 5 do
  local rec = base .. 'r:' .. ARGV[i]
  local cur = redis.call('HMGET', rec, 'v', 'i')
  if cur[1] == ARGV[i + 1] and not cur[2] then
    local upd = ARGV[i + 3]
    if upd == '' then upd = false end
    redis.call('HSET', rec, 'i', ARGV[i + 2])
    idx_add(base, ARGV[i + 2], upd, tonumber(ARGV[i + 4]))
    n = n + 1
  end
end
return n
`)
