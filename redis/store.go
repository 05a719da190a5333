package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/asyncreq/asyncreq"
	goredis "github.com/redis/go-redis/v9"
)

// errImmutable is returned by Update when fn changed a field that
// identifies the record.
var errImmutable = errors.New("redis: update must not change ID, Owner or IdempotencyKey")

// Create records rec. See asyncreq.Store. The record and its idempotency
// key are written together or not at all, by one Lua script that concurrent
// Creates and Accepts share (see batch.go).
func (b *Backend) Create(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	return b.create(ctx, "create", rec, false)
}

// Accept records rec with Enqueued set and adds it to the queue, in one Lua
// script, so that a request is never recorded but unqueued or queued but
// unrecorded. See asyncreq.Accepter. Concurrent Accepts share a script call
// (see batch.go).
func (b *Backend) Accept(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	return b.create(ctx, "accept", rec, true)
}

func (b *Backend) create(ctx context.Context, op string, rec *asyncreq.Record, enqueue bool) (*asyncreq.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if rec == nil || rec.ID == "" {
		return nil, fmt.Errorf("redis: %s: record without id", op)
	}
	c := rec
	if enqueue && !rec.Enqueued {
		cp := *rec
		cp.Enqueued = true
		c = &cp
	}
	meta, err := encodeMeta(c)
	if err != nil {
		return nil, fmt.Errorf("redis: %s %s: %w", op, rec.ID, err)
	}
	call := &createCall{op: op, rec: c, meta: meta, enqueue: enqueue}
	call.t.size = len(meta) + len(c.Body)
	if c.IdempotencyKey != "" {
		call.ik = b.idemKey(c.Owner, c.IdempotencyKey)
	}
	if c.Result != nil {
		call.t.size += len(c.Result.Body)
	}
	return b.submit(ctx, call)
}

// Get returns the record with the given id. See asyncreq.Store.
func (b *Backend) Get(ctx context.Context, id string) (*asyncreq.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	now := time.Now()
	if st, ok := b.polls.Get(id, now); ok {
		if rec, err := st.decode(); err == nil {
			return rec, nil
		}
	}
	b.listenPolls()
	mark := b.polls.Begin(id, now)
	rec, st, err := b.read(ctx, id)
	switch {
	case mark == nil:
	case err != nil:
		b.polls.Changed(id)
	default:
		st.expires = rec.ExpiresAt
		b.polls.Read(id, mark, st)
	}
	return rec, err
}

// stored is a record as Redis holds it: its version and its raw fields.
type stored struct {
	version string
	meta    string    // d
	body    *string   // b; nil when absent
	result  *string   // r; nil when absent
	expires time.Time // the record's ExpiresAt; set for the poll cache
}

// storedOf makes a stored of the hash fields d, b and r as HMGET returns
// them (nil when absent) and the version.
func storedOf(fields []any, version any) (stored, error) {
	var st stored
	var ok bool
	if st.meta, ok = fields[0].(string); !ok {
		return st, fmt.Errorf("unexpected record value of type %T", fields[0])
	}
	if body, ok := fields[1].(string); ok {
		st.body = &body
	}
	if body, ok := fields[2].(string); ok {
		st.result = &body
	}
	switch v := version.(type) {
	case string:
		st.version = v
	case int64:
		st.version = strconv.FormatInt(v, 10)
	default:
		return st, fmt.Errorf("unexpected record version of type %T", version)
	}
	return st, nil
}

// newStored is what Redis holds after rec was written with the given
// version and encoded meta.
func newStored(version string, meta []byte, rec *asyncreq.Record) stored {
	st := stored{version: version, meta: string(meta), expires: rec.ExpiresAt}
	if rec.Body != nil {
		body := string(rec.Body)
		st.body = &body
	}
	if rec.Result != nil && rec.Result.Body != nil {
		body := string(rec.Result.Body)
		st.result = &body
	}
	return st
}

// size is the memory st takes, roughly.
func (st stored) size() int {
	n := len(st.meta) + len(st.version) + 64
	if st.body != nil {
		n += len(*st.body)
	}
	if st.result != nil {
		n += len(*st.result)
	}
	return n
}

// decode makes a new record of st.
func (st stored) decode() (*asyncreq.Record, error) {
	rec := new(asyncreq.Record)
	if err := rec.UnmarshalBinary([]byte(st.meta)); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	if st.body != nil {
		rec.Body = []byte(*st.body)
	}
	if st.result != nil && rec.Result != nil {
		rec.Result.Body = []byte(*st.result)
	}
	return rec, nil
}

// read returns the record with the given id as stored, or ErrNotFound /
// ErrGone.
func (b *Backend) read(ctx context.Context, id string) (*asyncreq.Record, stored, error) {
	// One command, pipelined with those of other callers (see
	// pipeline.go); the tombstone is looked up only when the record is
	// missing.
	cmd, err := b.piped(ctx, func(ctx context.Context, c goredis.Cmdable, _ bool) goredis.Cmder {
		return c.HMGet(ctx, b.recordKey(id), "d", "b", "r", "v")
	})
	var v []any
	if err == nil {
		v, err = cmd.(*goredis.SliceCmd).Result()
	}
	if err != nil {
		return nil, stored{}, wrap(ctx, "get "+id, err)
	}
	if len(v) != 4 || v[0] == nil || v[3] == nil {
		b.cache.Drop(id)
		tomb, err := b.rdb.Get(ctx, b.tombstoneKey(id)).Result()
		switch {
		case errors.Is(err, goredis.Nil):
			return nil, stored{}, asyncreq.ErrNotFound
		case err != nil:
			return nil, stored{}, wrap(ctx, "get "+id, err)
		}
		// A tombstone written before tombstones kept their owner ("1")
		// names none.
		if owner, ok := strings.CutPrefix(tomb, "o:"); ok {
			return nil, stored{}, &asyncreq.GoneError{Owner: owner}
		}
		return nil, stored{}, asyncreq.ErrGone
	}
	st, err := storedOf(v[:3], v[3])
	if err != nil {
		return nil, stored{}, fmt.Errorf("redis: get %s: %w", id, err)
	}
	rec, err := st.decode()
	if err != nil {
		return nil, stored{}, fmt.Errorf("redis: get %s: %w", id, err)
	}
	b.cache.Put(id, st)
	return rec, st, nil
}

// Update changes the record with the given id through fn. See
// asyncreq.Store. It calls fn on the record as last read or written by this
// Backend (or reads it), and stores the result with a Lua compare-and-set
// on the record's version; on a conflict with another writer the script
// answers with the current record and fn is called again. An error of fn
// is returned only when fn ran on the record as read from Redis, not on a
// cached copy that may be stale.
func (b *Backend) Update(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	return b.update(ctx, "update", id, fn, false, nil)
}

// Complete implements asyncreq.Completer: Update and, when the record it
// stores is final, the ack of l in the same Lua script, if l still holds
// its lease (the checks of Ack). A lease that no longer holds, or that this
// Backend did not make, is left as it is and the record written. A
// request's outcome and its ack so take one script, and one place in a
// pipeline, instead of two.
func (b *Backend) Complete(ctx context.Context, l *asyncreq.Lease, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	if l == nil {
		return nil, asyncreq.ErrLeaseLost
	}
	h, _ := l.Handle.(*handle)
	return b.update(ctx, "complete", l.ID, fn, false, h)
}

// update is Update, which also adds id to the stream in the same script
// when enqueue is true (Requeue), and acks ack, if not nil, in the same
// script when the record it stores is final (Complete); op names the call
// in errors.
func (b *Backend) update(ctx context.Context, op, id string, fn func(*asyncreq.Record) error, enqueue bool, ack *handle) (*asyncreq.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	st, cached := b.cache.Get(id)
	var rec *asyncreq.Record
	var err error
	if cached {
		rec, err = st.decode()
	}
	if !cached || err != nil {
		if rec, st, err = b.read(ctx, id); err != nil {
			return nil, err
		}
	}
	for {
		owner, key := rec.Owner, rec.IdempotencyKey
		if err := fn(rec); err != nil {
			if !cached {
				return nil, err
			}
			// fn may refuse because the cached record is stale: only
			// its answer on the record as it is now counts.
			cached = false
			if rec, st, err = b.read(ctx, id); err != nil {
				return nil, err
			}
			continue
		}
		if rec.ID != id || rec.Owner != owner || rec.IdempotencyKey != key {
			return nil, errImmutable
		}
		meta, err := encodeMeta(rec)
		if err != nil {
			return nil, fmt.Errorf("redis: %s %s: %w", op, id, err)
		}
		var del []any
		set := []any{"d", meta}
		var resultBody []byte
		if rec.Result != nil {
			resultBody = rec.Result.Body
		}
		for _, f := range []struct {
			name string
			now  []byte
			was  *string
		}{{"b", rec.Body, st.body}, {"r", resultBody, st.result}} {
			switch {
			case f.now == nil && f.was != nil:
				del = append(del, f.name)
			case f.now != nil && (f.was == nil || string(f.now) != *f.was):
				set = append(set, f.name, f.now)
			}
		}
		expireAt, tombAt := b.expiry(rec)
		entry, upd := indexEntry(rec)
		args := []any{st.version, ms(b.tombstoneTTL(rec)), expireAt, tombAt, b.origin, rec.Owner,
			id, unenqueuedScore(rec), b.base, entry, upd, boolArg(enqueue)}
		script := updateScript
		if ack != nil && rec.State.Final() {
			script = completeScript
			args = append(args, b.opts.Group, ack.consumer, ack.entry, ack.count, ms(ack.leaseTTL()))
		}
		args = append(args, len(del))
		args = append(args, del...)
		args = append(args, set...)
		mark := b.polls.Begin(id, time.Now())
		res, err := goredis.NewCmdResult(b.runScript(ctx, script,
			[]string{b.recordKey(id), b.tombstoneKey(id), b.unenqueuedKey, b.streamKey}, args...)).Slice()
		code, _ := firstInt(res)
		if err != nil || code != 1 {
			// Not stored, or not known to be: what the poll cache held
			// of the record is older than what Redis holds now.
			b.polls.Changed(id)
		}
		if err != nil {
			b.cache.Drop(id)
			return nil, wrap(ctx, op+" "+id, err)
		}
		switch {
		case code == 1:
			v, err := strconv.ParseInt(st.version, 10, 64)
			if err != nil || !fits(meta, rec) {
				b.cache.Drop(id)
				b.polls.Changed(id)
				return rec.Clone(), nil
			}
			now := newStored(strconv.FormatInt(v+1, 10), meta, rec)
			b.cache.Put(id, now)
			b.polls.Wrote(id, mark, now)
			return rec.Clone(), nil
		case code == -1:
			// Deleted or expired: answer as Get would.
			b.cache.Drop(id)
			cached = false
			if rec, st, err = b.read(ctx, id); err != nil {
				return nil, err
			}
		case code == 0 && len(res) == 5:
			// A conflict: try again on the record as it is now.
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			cached = false
			st, err = storedOf(res[1:4], res[4])
			if err == nil {
				rec, err = st.decode()
			}
			if err != nil {
				b.cache.Drop(id)
				return nil, fmt.Errorf("redis: %s %s: %w", op, id, err)
			}
		default:
			return nil, fmt.Errorf("redis: %s %s: unexpected script reply %v", op, id, res)
		}
	}
}

// Delete removes the record with the given id. See asyncreq.Store.
func (b *Backend) Delete(ctx context.Context, id string, tombstone bool) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	b.cache.Drop(id)
	b.polls.Changed(id) // a read of id in flight is not kept
	n, err := deleteScript.Run(ctx, b.rdb,
		[]string{b.recordKey(id), b.tombstoneKey(id), b.unenqueuedKey},
		boolArg(tombstone), ms(b.opts.TombstoneTTL), b.origin, id, b.base,
	).Int()
	b.polls.Changed(id)
	if err != nil {
		return wrap(ctx, "delete "+id, err)
	}
	if n == 0 {
		return asyncreq.ErrNotFound
	}
	return nil
}

// Purge returns 0: Redis expires a final record at its ExpiresAt by itself
// (the record and its idempotency key carry that expiry), and its
// tombstone at ExpiresAt plus TombstoneTTL. What Purge does is remove the
// listing-index entries of records Redis expired (see Lister in the package
// documentation), in script calls of up to limit entries each, until none
// is left or ctx ends.
func (b *Backend) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	for {
		n, err := b.prune(ctx, limit)
		if err != nil {
			return 0, err
		}
		if n < limit {
			return 0, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}

// ListUnenqueued returns the ids of up to limit records created with
// Enqueued false, not final, and created before the given time. See
// asyncreq.UnenqueuedLister. Such records are kept in a sorted set by
// creation time, which Create, Update and Delete maintain in the same
// script as the record.
func (b *Backend) ListUnenqueued(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	ids, err := b.rdb.ZRangeArgs(ctx, goredis.ZRangeArgs{
		Key:     b.unenqueuedKey,
		Start:   "-inf",
		Stop:    "(" + strconv.FormatInt(before.UnixMicro(), 10),
		ByScore: true,
		Count:   int64(limit),
	}).Result()
	if err != nil {
		return nil, wrap(ctx, "list unenqueued", err)
	}
	return ids, nil
}

// unenqueuedScore is rec's score in the set of unenqueued records (its
// creation time in Unix microseconds), or "" when it does not belong there.
func unenqueuedScore(rec *asyncreq.Record) string {
	if rec.Enqueued || rec.State.Final() {
		return ""
	}
	return strconv.FormatInt(rec.CreatedAt.UnixMicro(), 10)
}

// expiry returns when rec's keys expire and when its tombstone does, in
// Unix milliseconds: both 0 unless rec is final with an ExpiresAt.
func (b *Backend) expiry(rec *asyncreq.Record) (expireAt, tombAt int64) {
	if !rec.State.Final() || rec.ExpiresAt.IsZero() {
		return 0, 0
	}
	expireAt = unixMS(rec.ExpiresAt)
	return expireAt, expireAt + ms(b.tombstoneTTL(rec))
}

func (b *Backend) tombstoneTTL(rec *asyncreq.Record) time.Duration {
	if rec.TombstoneTTL > 0 {
		return rec.TombstoneTTL
	}
	return b.opts.TombstoneTTL
}

// encodeMeta encodes rec without its body and its result's body, which
// are stored as fields of their own.
func encodeMeta(rec *asyncreq.Record) ([]byte, error) {
	return rec.WithoutBodies().MarshalBinary()
}

func boolArg(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// firstInt returns the first element of a script's reply as an integer:
// -2 and false when there is none or it is not one.
func firstInt(res []any) (int64, bool) {
	if len(res) == 0 {
		return -2, false
	}
	v, ok := res[0].(int64)
	if !ok {
		return -2, false
	}
	return v, true
}
