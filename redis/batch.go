package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/reccache"
)

// Group commit of Create and Accept.
//
// A request accepted through the handler costs one call of createScript.
// Most of what that costs, on the Redis server (reading the command,
// starting the script, writing the reply, waking up) and in the client (a
// pooled connection, two system calls, parsing the reply, waking up), is
// per call, not per record. So Creates and Accepts made while an earlier
// one is being written wait, and are then written together: one script
// call that creates each of their records in turn, each with its own
// outcome (created, duplicate or id taken), exactly as if they had been
// made one after the other in that order. A duplicate idempotency key
// within one batch is therefore found like any other: the later record
// sees the earlier one.
//
// Calls queue and are written in batches as a handoff (handoff.go) groups
// them.
const (
	// maxBatchRecords and maxBatchBytes bound one batch, so that one script
	// call does not keep the single-threaded server busy for long.
	maxBatchRecords = 128
	maxBatchBytes   = 1 << 20
	// batchTimeout bounds the round trip of a batch shared by several
	// callers, which runs without any one caller's cancellation.
	batchTimeout = 30 * time.Second
)

// createCall is one Create or Accept and, once written, its outcome.
type createCall struct {
	op      string           // "create" or "accept", for errors
	rec     *asyncreq.Record // as it is to be stored
	meta    []byte           // rec encoded without its bodies
	ik      string           // its idempotency key's key, "" when none
	enqueue bool
	mark    *reccache.PollMark // its write, noted in the poll cache

	other *asyncreq.Record // the earlier record of a duplicate
	err   error

	t turn[*createCall] // its place in Backend.creates
}

func (c *createCall) turn() *turn[*createCall] { return &c.t }

// submit writes c alone or in a batch with other calls, and returns its
// outcome. If ctx ends while c waits to be taken into a batch, nothing is
// written; if it ends while another call writes c's batch, submit returns
// ctx.Err() without c's outcome, as any call cut short by its context.
func (b *Backend) submit(ctx context.Context, c *createCall) (*asyncreq.Record, error) {
	batch, err := b.creates.join(ctx, c)
	if err != nil {
		return nil, err
	}
	if batch != nil {
		b.writeCreates(ctx, batch)
	}
	return c.other, c.err
}

// writeCreates writes batch, whose first call is the caller's, hands the
// calls that queued meanwhile to the next batch, and then answers the other
// calls of batch.
func (b *Backend) writeCreates(ctx context.Context, batch []*createCall) {
	if len(batch) > 1 {
		// Several callers wait for this round trip: no one caller's
		// cancellation may fail it for the others.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
		defer cancel()
	}
	now := time.Now()
	for _, c := range batch {
		c.mark = b.polls.Begin(c.rec.ID, now)
	}
	res, err := b.runCreates(ctx, batch)
	b.creates.pass()
	for i, c := range batch {
		if err != nil {
			c.err = wrap(ctx, c.op+" "+c.rec.ID, err)
		} else {
			c.other, c.err = b.outcome(c, res[i])
		}
		if c.err != nil && c.mark != nil {
			b.polls.Changed(c.rec.ID)
		}
	}
	b.creates.answer(batch)
}

// Flags of a record in createScript's arguments.
const (
	createEnqueue    = 1 << iota // add it to the stream
	createExpiry                 // expireAt, tombAt and the owner follow
	createUnenqueued             // its score in the unenqueued set follows
	createBody                   // its body follows
	createResult                 // its result's body follows
	createIdem                   // its idempotency key's key follows
	createFinal                  // its UpdatedAt in microseconds follows
)

// runCreates runs createScript on batch and returns its reply, one item per
// call.
func (b *Backend) runCreates(ctx context.Context, batch []*createCall) ([]any, error) {
	args := make([]any, 1, 1+8*len(batch))
	args[0] = b.base
	for _, c := range batch {
		rec := c.rec
		flags := 0
		if c.enqueue {
			flags |= createEnqueue
		}
		expireAt, tombAt := b.expiry(rec)
		if expireAt > 0 {
			flags |= createExpiry
		}
		score := unenqueuedScore(rec)
		if score != "" {
			flags |= createUnenqueued
		}
		if rec.Body != nil {
			flags |= createBody
		}
		if rec.Result != nil && rec.Result.Body != nil {
			flags |= createResult
		}
		if c.ik != "" {
			flags |= createIdem
		}
		entry, upd := indexEntry(rec)
		if upd != "" {
			flags |= createFinal
		}
		args = append(args, rec.ID, flags, ms(b.tombstoneTTL(rec)), c.meta, entry)
		if expireAt > 0 {
			args = append(args, expireAt, tombAt, rec.Owner)
		}
		if score != "" {
			args = append(args, score)
		}
		if rec.Body != nil {
			args = append(args, rec.Body)
		}
		if flags&createResult != 0 {
			args = append(args, rec.Result.Body)
		}
		if c.ik != "" {
			args = append(args, c.ik)
		}
		if upd != "" {
			args = append(args, upd)
		}
	}
	res, err := createScript.Run(ctx, b.rdb, []string{b.streamKey, b.unenqueuedKey}, args...).Slice()
	if err != nil {
		return nil, err
	}
	if len(res) != len(batch) {
		return nil, fmt.Errorf("unexpected script reply of %d items for %d records", len(res), len(batch))
	}
	return res, nil
}

// outcome turns createScript's reply item for c into Create's answer.
func (b *Backend) outcome(c *createCall, res any) (*asyncreq.Record, error) {
	id := c.rec.ID
	switch v := res.(type) {
	case int64:
		if v == 0 {
			return nil, fmt.Errorf("redis: %s %s: a record with this id exists", c.op, id)
		}
		if !fits(c.meta, c.rec) {
			b.polls.Changed(id)
			return nil, nil
		}
		st := newStored("1", c.meta, c.rec)
		b.cache.Put(id, st)
		// A client's first poll, which usually comes before the worker's
		// claim, costs no round trip either.
		b.polls.Wrote(id, c.mark, st)
		return nil, nil
	case []any:
		if len(v) != 3 {
			break
		}
		st, err := storedOf(v, "0")
		var other *asyncreq.Record
		if err == nil {
			other, err = st.decode()
		}
		if err != nil {
			return nil, fmt.Errorf("redis: %s %s: %w", c.op, id, err)
		}
		return other, asyncreq.ErrDuplicate
	case string:
		return nil, fmt.Errorf("redis: %s %s: %s", c.op, id, v)
	}
	return nil, fmt.Errorf("redis: %s %s: unexpected script reply %v", c.op, id, res)
}
