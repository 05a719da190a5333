package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/asyncreq/asyncreq"
)

var _ asyncreq.QueueStater = (*Backend)(nil)

// statsScript reads the queue's counters in one atomic step, in O(log n)
// of the entries: XLEN of the stream, the summary of the group's pending
// entries list (the leased entries), ZCOUNT of the delayed set before and
// after now, the first stream entry the group has not delivered yet (whose
// id holds the time it was added) and the earliest due delayed entry. It
// writes nothing.
//
// KEYS: stream, delayed set.
// ARGV: group.
//
// Returns {now ms, stream length, leased, delayed due, delayed not due,
// ms of the oldest pending entry (-1: none)}.
var statsScript = goredis.NewScript(`
local stream, delayed, group = KEYS[1], KEYS[2], ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local len = redis.call('XLEN', stream)
local leased = 0
local last = nil
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
if ok then
  for _, g in ipairs(groups) do
    local name, lastID = nil, nil
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'last-delivered-id' then lastID = g[i + 1] end
    end
    if name == group then
      last = lastID
      leased = redis.call('XPENDING', stream, group)[1]
    end
  end
end
local oldest = -1
local first
if last then
  first = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', 1)
else
  first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
end
if first[1] then
  oldest = tonumber(string.match(first[1][1], '^(%d+)-'))
end
local dueNow = redis.call('ZCOUNT', delayed, '-inf', now)
local later = redis.call('ZCOUNT', delayed, '(' .. now, '+inf')
if dueNow > 0 then
  local d = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  local score = math.floor(tonumber(d[2]))
  if oldest < 0 or score < oldest then oldest = score end
end
return {now, len, leased, dueNow, later, oldest}
`)

// QueueStats implements asyncreq.QueueStater with one read-only Lua script
// (one round trip, atomic, O(log n) in the entries of the queue, so its
// cost does not grow with the backlog; docs/stats.md has figures for a
// million entries):
//
//   - Running is the length of the group's pending entries list: the
//     entries delivered and not yet acknowledged. An entry whose lease ran
//     out stays there, counted as running, until a Dequeue reclaims it
//     (within 250ms while a worker dequeues), and is leased again then.
//   - Pending is the stream's other entries, those not yet delivered, plus
//     the delayed entries already due that no Dequeue has moved to the
//     stream yet. OldestPending is the time the first undelivered stream
//     entry was added (a stream id holds it), or an earlier due time of a
//     delayed entry, by the Redis server's clock in milliseconds.
//   - Delayed is the delayed entries not yet due.
//
// At is the Redis server's clock. Records are not counted by state, which
// would read every record: Succeeded, Failed and Canceled are
// asyncreq.Uncounted. Queue is Options.Queue.
func (b *Backend) QueueStats(ctx context.Context) (asyncreq.QueueStats, error) {
	if err := b.check(ctx); err != nil {
		return asyncreq.QueueStats{}, err
	}
	r, err := statsScript.Run(ctx, b.rdb, []string{b.streamKey, b.delayedKey}, b.opts.Group).Int64Slice()
	if err != nil {
		return asyncreq.QueueStats{}, wrap(ctx, "queue stats", err)
	}
	if len(r) != 6 {
		return asyncreq.QueueStats{}, fmt.Errorf("redis: queue stats: the script returned %d values, want 6", len(r))
	}
	s := asyncreq.QueueStats{
		Queue:     b.opts.Queue,
		At:        time.UnixMilli(r[0]),
		Pending:   r[1] - r[2] + r[3],
		Delayed:   r[4],
		Running:   r[2],
		Succeeded: asyncreq.Uncounted,
		Failed:    asyncreq.Uncounted,
		Canceled:  asyncreq.Uncounted,
	}
	if r[5] >= 0 {
		s.OldestPending = time.UnixMilli(r[5])
	}
	return s, nil
}
