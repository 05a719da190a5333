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

// createScript records requests and, if asked, enqueues them: one record
// after the other, each with its own outcome, as separate calls in that
// order would (see batch.go). It publishes nothing: nobody can be watching
// a record before it exists, since ids are new and callers watch a record
// they have read or created.
//
// KEYS: stream, unenqueued set.
// ARGV: the key prefix with the queue's hash tag (Backend.base), then per
// record: id, flags (the create* constants in batch.go), tombstone TTL ms,
// the record's field d, and as the flags say: expireAt ms, tombAt ms and
// its owner, its score in the unenqueued set, its body, its result's body,
// its idempotency key's key. Only what a record has is sent: each argument costs the server
// a string of its own.
//
// Returns per record: 1 when created, {d, b, r} of the earlier record of a
// duplicate idempotency key, 0 when a record with its id exists, or the
// text of the error that stopped it (what it wrote before the error stays,
// as after a failed script call).
var createScript = goredis.NewScript(expiryLua + `
local base = ARGV[1]

local function create(id, ik, enqueue, ttl, d, expireAt, tombAt, owner, score, body, result)
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
    redis.call('HSET', rec, 'v', 1, 't', ttl, 'd', d, 'b', body)
  else
    redis.call('HSET', rec, 'v', 1, 't', ttl, 'd', d)
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
  return 1
end

local out = {}
local i, n = 2, #ARGV
while i <= n do
  local id, flags, ttl, d = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local expireAt, tombAt, owner, score, body, result, ik = 0, 0, '', false, false, false, false
  if bit.band(flags, 2) ~= 0 then
    expireAt, tombAt, owner = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), ARGV[i + 2]
    i = i + 3
  end
  if bit.band(flags, 4) ~= 0 then score = ARGV[i]; i = i + 1 end
  if bit.band(flags, 8) ~= 0 then body = ARGV[i]; i = i + 1 end
  if bit.band(flags, 16) ~= 0 then result = ARGV[i]; i = i + 1 end
  if bit.band(flags, 32) ~= 0 then ik = ARGV[i]; i = i + 1 end
  local ok, res = pcall(create, id, ik, bit.band(flags, 1) ~= 0, ttl, d, expireAt, tombAt, owner, score, body, result)
  if not ok then
    if type(res) == 'table' and res.err then res = res.err end
    res = tostring(res)
  end
  out[#out + 1] = res
end
return out
`)

// updateScript stores a new version of a record if the version it was read
// at is still current. Only the fields that changed are sent: a large body
// is not written again when the state changes.
//
// KEYS: record, tombstone, unenqueued set.
// ARGV: version read, tombstone TTL ms, expireAt ms, tombAt ms, watch
// channel, the record's owner, number of fields to delete, their names,
// then the fields to set and their values, and last the id and its score in
// the unenqueued set ("": not unenqueued).
//
// Returns {1} when stored, {-1} if the record is gone, and on a version
// conflict {0, d, b, r, v}: the record as it is, so that the caller can try
// again without reading it.
var updateScript = goredis.NewScript(expiryLua + `
local cur = redis.call('HMGET', KEYS[1], 'v', 'k', 'x')
if not cur[1] then return {-1} end
if cur[1] ~= ARGV[1] then
  local now = redis.call('HMGET', KEYS[1], 'd', 'b', 'r')
  return {0, now[1], now[2], now[3], cur[1]}
end
local ndel = tonumber(ARGV[7])
if ndel > 0 then
  redis.call('HDEL', KEYS[1], unpack(ARGV, 8, 7 + ndel))
end
local last = #ARGV
redis.call('HSET', KEYS[1], 'v', tonumber(cur[1]) + 1, 't', ARGV[2], unpack(ARGV, 8 + ndel, last - 2))
if ARGV[last] == '' then
  redis.call('ZREM', KEYS[3], ARGV[last - 1])
else
  redis.call('ZADD', KEYS[3], ARGV[last], ARGV[last - 1])
end
apply_expiry(KEYS[1], KEYS[2], cur[2], cur[3], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[6])
redis.call('PUBLISH', ARGV[5], '')
return {1}
`)

// deleteScript removes a record and its idempotency key, and keeps or
// drops its tombstone, which names the record's owner (read from its field
// d; "1", no owner, if d cannot be read).
//
// KEYS: record, tombstone, unenqueued set.
// ARGV: keep a tombstone (0/1), tombstone TTL ms to use when the record has
// none, watch channel, id.
//
// Returns 1 when deleted, 0 when there was no record.
var deleteScript = goredis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'k', 't', 'd')
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
redis.call('PUBLISH', ARGV[3], '')
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
