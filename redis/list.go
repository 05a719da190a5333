package redis

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/asyncreq/asyncreq"
	goredis "github.com/redis/go-redis/v9"
)

// The operator capabilities a Backend has (see the package documentation
// for what each costs).
var (
	_ asyncreq.Lister         = (*Backend)(nil)
	_ asyncreq.FinishedPurger = (*Backend)(nil)
	_ asyncreq.Requeuer       = (*Backend)(nil)
)

// states are the states a record can be in, in the order of StateCounts.
var states = [...]asyncreq.State{
	asyncreq.StatePending, asyncreq.StateRunning, asyncreq.StateSucceeded, asyncreq.StateFailed, asyncreq.StateCanceled,
}

// finalStates are the final states, in the order of states.
var finalStates = [...]asyncreq.State{asyncreq.StateSucceeded, asyncreq.StateFailed, asyncreq.StateCanceled}

// Bounds of the script calls of PurgeFinished and Purge: the entries one
// call looks at.
const indexBatch = 1000

func (b *Backend) stateIndexKey(st asyncreq.State) string  { return b.base + "ls:" + string(st) }
func (b *Backend) finishedIndexKey() string                { return b.base + "lf" }
func (b *Backend) expiryIndexKey(st asyncreq.State) string { return b.base + "le:" + string(st) }

func (b *Backend) ownerIndexKey(owner string, st asyncreq.State) string {
	return b.base + "lo:" + strconv.Itoa(len(owner)) + ":" + owner + ":" + string(st)
}

// nanos returns t in Unix nanoseconds, clamped to the int64 range (the
// zero time is the smallest).
func nanos(t time.Time) int64 {
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	switch s := t.Unix(); {
	case s > maxSec:
		return math.MaxInt64
	case s < -maxSec:
		return math.MinInt64
	}
	return t.UnixNano()
}

// listPos is the position of a record created at ns with the given id in
// the listing indexes: its members sort by it as a listing does, by
// CreatedAt then ID.
func listPos(ns int64, id string) string {
	var buf [8]byte
	u := uint64(ns) ^ (1 << 63)
	for i := 7; i >= 0; i-- {
		buf[i] = byte(u)
		u >>= 8
	}
	return hex.EncodeToString(buf[:]) + id
}

// cursorOf returns the listing cursor of position m.
func cursorOf(m string) (asyncreq.ListCursor, error) {
	if len(m) < 16 {
		return asyncreq.ListCursor{}, fmt.Errorf("malformed index member %q", m)
	}
	raw, err := hex.DecodeString(m[:16])
	if err != nil {
		return asyncreq.ListCursor{}, fmt.Errorf("malformed index member %q", m)
	}
	var u uint64
	for _, c := range raw {
		u = u<<8 | uint64(c)
	}
	return asyncreq.ListCursor{CreatedAt: time.Unix(0, int64(u^(1<<63))).UTC(), ID: m[16:]}, nil
}

// indexEntry returns rec's entry in the listing indexes (its field i, see
// indexLua) and, when rec is final, its UpdatedAt in Unix microseconds
// ("" otherwise).
func indexEntry(rec *asyncreq.Record) (entry, updated string) {
	m := listPos(nanos(rec.CreatedAt), rec.ID)
	entry = string(rec.State) + "|" + strconv.Itoa(len(m)) + "|" + m + rec.Owner
	if rec.State.Final() {
		updated = strconv.FormatInt(rec.UpdatedAt.UnixMicro(), 10)
	}
	return entry, updated
}

// List returns a page of records, newest first (see asyncreq.Lister). The
// listing indexes are sorted sets kept by the scripts that write records:
// one per state and one per owner and state. A page costs one pipeline
// of a ZREVRANGEBYLEX on each set the query selects (one with a State,
// five without), O(log n + page) each, and one pipeline of an HGET of
// each listed record's field without its bodies. Records Redis expired
// whose entries Purge has not removed yet are skipped, at the cost of
// another round when a page meets them.
func (b *Backend) List(ctx context.Context, q asyncreq.ListQuery) (asyncreq.ListPage, error) {
	if err := b.check(ctx); err != nil {
		return asyncreq.ListPage{}, err
	}
	cur, err := asyncreq.ParseListCursor(q.Cursor)
	if err != nil {
		return asyncreq.ListPage{}, fmt.Errorf("redis: list: %w", err)
	}
	sel := states[:]
	if q.State != "" {
		if !q.State.Valid() {
			return asyncreq.ListPage{}, nil
		}
		sel = []asyncreq.State{q.State}
	}
	keys := make([]string, len(sel))
	for i, st := range sel {
		if q.Owner != "" {
			keys[i] = b.ownerIndexKey(q.Owner, st)
		} else {
			keys[i] = b.stateIndexKey(st)
		}
	}
	limit := q.PageLimit()
	bound := "+"
	if !cur.IsZero() {
		bound = "(" + listPos(cur.CreatedAt.UnixNano(), cur.ID)
	}
	var page asyncreq.ListPage
	var last string // the position of the page's last record
	for {
		// One more than the page needs, to know whether a next page
		// holds anything.
		want := limit - len(page.Records) + 1
		members, err := b.topMembers(ctx, keys, bound, want)
		if err != nil {
			return asyncreq.ListPage{}, err
		}
		recs, err := b.summaries(ctx, members)
		if err != nil {
			return asyncreq.ListPage{}, err
		}
		for i, m := range members {
			bound = "(" + m
			rec := recs[i]
			if rec == nil || !slices.Contains(sel, rec.State) || (q.Owner != "" && rec.Owner != q.Owner) {
				continue // expired, or changed since the indexes were read
			}
			if len(page.Records) == limit {
				c, err := cursorOf(last)
				if err != nil {
					return asyncreq.ListPage{}, fmt.Errorf("redis: list: %w", err)
				}
				page.Next = c.String()
				return page, nil
			}
			page.Records = append(page.Records, rec)
			last = m
		}
		if len(members) < want {
			return page, nil
		}
		if err := ctx.Err(); err != nil {
			return asyncreq.ListPage{}, err
		}
	}
}

// topMembers returns the first n positions below bound (a ZREVRANGEBYLEX
// max) of the union of the sets keys, greatest first.
func (b *Backend) topMembers(ctx context.Context, keys []string, bound string, n int) ([]string, error) {
	cmds := make([]*goredis.StringSliceCmd, len(keys))
	_, err := b.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, key := range keys {
			cmds[i] = p.ZRevRangeByLex(ctx, key, &goredis.ZRangeBy{Max: bound, Min: "-", Count: int64(n)})
		}
		return nil
	})
	if err != nil {
		return nil, wrap(ctx, "list", err)
	}
	var all []string
	for _, c := range cmds {
		all = append(all, c.Val()...)
	}
	if len(keys) > 1 {
		// A record that changed state between two of the reads may be in
		// two of them.
		slices.SortFunc(all, func(a, b string) int { return strings.Compare(b, a) })
		all = slices.Compact(all)
	}
	return all[:min(n, len(all))], nil
}

// summaries reads the records at positions ms without their bodies: nil
// for one that is gone.
func (b *Backend) summaries(ctx context.Context, ms []string) ([]*asyncreq.Record, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	cmds := make([]*goredis.StringCmd, len(ms))
	_, err := b.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, m := range ms {
			cmds[i] = p.HGet(ctx, b.recordKey(m[16:]), "d")
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, wrap(ctx, "list", err)
	}
	recs := make([]*asyncreq.Record, len(ms))
	for i, c := range cmds {
		d, err := c.Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return nil, wrap(ctx, "list", err)
		}
		rec := new(asyncreq.Record)
		if err := rec.UnmarshalBinary([]byte(d)); err != nil {
			return nil, fmt.Errorf("redis: list: decode record %s: %w", ms[i][16:], err)
		}
		recs[i] = rec
	}
	return recs, nil
}

// CountStates counts the records by state (see asyncreq.Lister): one
// script that reads the size of each state's index, O(1), less the records
// Redis expired whose entries Purge has not removed yet, O(log n). The
// counts are exact, not estimates.
func (b *Backend) CountStates(ctx context.Context) (asyncreq.StateCounts, error) {
	if err := b.check(ctx); err != nil {
		return asyncreq.StateCounts{}, err
	}
	keys := make([]string, 0, len(states)+len(finalStates))
	for _, st := range states {
		keys = append(keys, b.stateIndexKey(st))
	}
	for _, st := range finalStates {
		keys = append(keys, b.expiryIndexKey(st))
	}
	res, err := countScript.Run(ctx, b.rdb, keys).Int64Slice()
	if err != nil {
		return asyncreq.StateCounts{}, wrap(ctx, "count states", err)
	}
	if len(res) != len(states) {
		return asyncreq.StateCounts{}, fmt.Errorf("redis: count states: unexpected script reply %v", res)
	}
	var c asyncreq.StateCounts
	for i, st := range states {
		c.Add(st, res[i])
	}
	return c, nil
}

// PurgeFinished deletes up to limit final records last changed before the
// given time, oldest first (see asyncreq.FinishedPurger), through the
// index of final records by UpdatedAt (to the microsecond), in script
// calls that each look at no more than 1000 entries: O(log n) per record.
// It deletes a record as Delete does and removes its index entries in the
// same script.
func (b *Backend) PurgeFinished(ctx context.Context, before time.Time, limit int, tombstone bool) (int, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	total := 0
	for total < limit {
		n := min(limit-total, indexBatch)
		res, err := purgeFinishedScript.Run(ctx, b.rdb, []string{b.finishedIndexKey(), b.unenqueuedKey},
			b.base, before.UnixMicro(), n, boolArg(tombstone), ms(b.opts.TombstoneTTL), indexBatch,
		).Int64Slice()
		if err != nil {
			return total, wrap(ctx, "purge finished", err)
		}
		if len(res) != 2 {
			return total, fmt.Errorf("redis: purge finished: unexpected script reply %v", res)
		}
		total += int(res[0])
		if res[1] == 1 {
			break
		}
	}
	return total, nil
}

// prune removes the index entries of up to limit records Redis expired,
// and returns how many it removed.
func (b *Backend) prune(ctx context.Context, limit int) (int, error) {
	keys := make([]string, len(finalStates))
	for i, st := range finalStates {
		keys[i] = b.expiryIndexKey(st)
	}
	n, err := pruneScript.Run(ctx, b.rdb, keys, b.base, limit).Int()
	if err != nil {
		return 0, wrap(ctx, "purge", err)
	}
	return n, nil
}

// Requeue changes the record with the given id through fn and adds it to
// the stream in the same Lua script, so that the record is stored with
// Enqueued set and the id enqueued, or neither (see asyncreq.Requeuer). It
// is Update otherwise, with an XADD: a queue entry left for the id stays,
// and the Worker drops whichever entry finds the record no longer pending.
func (b *Backend) Requeue(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	return b.update(ctx, "requeue", id, func(r *asyncreq.Record) error {
		if err := fn(r); err != nil {
			return err
		}
		r.Enqueued = true
		return nil
	}, true, nil)
}

// Reindex adds to the listing indexes the records written by a version of
// this package that kept no such indexes, and returns how many it added.
// Until then those records are not listed, counted or purged by
// PurgeFinished (a record that is updated, as a Worker does when it runs
// it, is indexed by that update). Run it once after upgrading; it is
// idempotent and safe beside a running Backend. It walks every key of the
// server (of every master, on Redis Cluster) with SCAN in steps of 1000
// keys, and writes the records of one step in one script: its cost is
// that of a SCAN of the whole keyspace, spread over many short calls.
func (b *Backend) Reindex(ctx context.Context) (int, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	pattern := globEscape(b.base) + "r:*"
	total := 0
	scan := func(ctx context.Context, c goredis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, indexBatch).Result()
			if err != nil {
				return wrap(ctx, "reindex", err)
			}
			n, err := b.reindex(ctx, keys)
			total += n
			if err != nil {
				return err
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	var err error
	if cc, ok := b.rdb.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, b.rdb)
	}
	return total, err
}

// reindex indexes the records under keys that have no index entry.
func (b *Backend) reindex(ctx context.Context, keys []string) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	cmds := make([]*goredis.SliceCmd, len(keys))
	_, err := b.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, key := range keys {
			cmds[i] = p.HMGet(ctx, key, "d", "v", "i")
		}
		return nil
	})
	if err != nil {
		return 0, wrap(ctx, "reindex", err)
	}
	args := []any{b.base}
	for i, c := range cmds {
		v := c.Val()
		if len(v) != 3 || v[0] == nil || v[1] == nil || v[2] != nil {
			continue // gone, or indexed
		}
		d, _ := v[0].(string)
		version, _ := v[1].(string)
		rec := new(asyncreq.Record)
		if err := rec.UnmarshalBinary([]byte(d)); err != nil {
			return 0, fmt.Errorf("redis: reindex: decode %s: %w", keys[i], err)
		}
		if rec.ID != strings.TrimPrefix(keys[i], b.base+"r:") {
			continue // not a record's key
		}
		entry, updated := indexEntry(rec)
		expireAt, _ := b.expiry(rec)
		args = append(args, rec.ID, version, entry, updated, expireAt)
	}
	if len(args) == 1 {
		return 0, nil
	}
	n, err := indexScript.Run(ctx, b.rdb, []string{b.finishedIndexKey()}, args...).Int()
	if err != nil {
		return 0, wrap(ctx, "reindex", err)
	}
	return n, nil
}

// globEscape escapes the characters SCAN's MATCH treats as special.
func globEscape(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			sb.WriteByte('\\')
		}
		sb.WriteRune(r)
	}
	return sb.String()
}
