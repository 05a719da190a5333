package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/reccache"
)

// leaseHandle is the Handle of a Lease made by a Backend: the entry it
// leases and the random token of that delivery. An entry that was settled
// or delivered again no longer carries the token, which is how a stale
// lease is told apart.
type leaseHandle struct {
	seq   int64
	token string
}

// Enqueue implements asyncreq.Queue. Each call adds an entry: an id enqueued
// twice is delivered twice (delivery is at least once anyway, and workers
// settle a request once through the Store's lease token).
func (b *Backend) Enqueue(ctx context.Context, id string, delay time.Duration) error {
	if err := b.enter(ctx); err != nil {
		return err
	}
	defer b.exit()
	delay = max(delay, 0)
	due := b.now().Add(delay).UnixNano()
	enqueue := func(t *wtx) error {
		_, err := t.exec(b.sql.enqueue, b.queue, id, due)
		return err
	}
	return writeErr("enqueue "+id, b.eng.do(ctx, enqueue, b.wake.broadcast))
}

// Dequeue implements asyncreq.Queue. It waits without polling for entries
// enqueued or returned through this process, sleeps until the next delayed
// entry or lease expiry, and looks again at least every
// Options.MaxPollInterval for entries added by other processes.
func (b *Backend) Dequeue(ctx context.Context, ttl time.Duration) (*asyncreq.Lease, error) {
	ls, err := b.dequeue(ctx, 1, ttl, nil)
	if err != nil {
		return nil, err
	}
	return ls[0], nil
}

// DequeueBatch implements asyncreq.BatchDequeuer: it waits like Dequeue,
// then leases up to max due entries, the longest due first, in one
// transaction.
func (b *Backend) DequeueBatch(ctx context.Context, max int, ttl time.Duration) ([]*asyncreq.Lease, error) {
	if max <= 0 {
		return nil, fmt.Errorf("sqlite: dequeue batch size %d is not positive", max)
	}
	return b.dequeue(ctx, max, ttl, nil)
}

// DequeueClaim implements asyncreq.Claimer: it waits like Dequeue, then
// leases up to max due entries, the longest due first, and claims the
// record of each, in one transaction. A panic in claim is raised again in
// the caller, and nothing of the transaction is committed.
func (b *Backend) DequeueClaim(ctx context.Context, max int, ttl time.Duration,
	claim func(*asyncreq.Lease, *asyncreq.Record) error) ([]asyncreq.Claim, error) {
	if max <= 0 {
		return nil, fmt.Errorf("sqlite: dequeue batch size %d is not positive", max)
	}
	if claim == nil {
		return nil, errors.New("sqlite: claim function is nil")
	}
	var claims []asyncreq.Claim
	var marks []*reccache.PollMark
	var begun []string // the ids of marks
	var panicked any
	// claimOne runs claim, turning a panic into an abortError: the leases
	// and the claims before it are written already, and must not commit.
	claimOne := func(l *asyncreq.Lease, r *asyncreq.Record) (err error) {
		defer func() {
			if p := recover(); p != nil {
				panicked = p
				err = &abortError{fmt.Errorf("sqlite: claim of %s panicked: %v", l.ID, p)}
			}
		}()
		return claim(l, r)
	}
	claimAll := func(t *wtx, leases []*asyncreq.Lease) error {
		claims, marks, begun, panicked = claims[:0], marks[:0], begun[:0], nil
		for _, l := range leases {
			rec, _, err := b.updateTx(t, l.ID, func(r *asyncreq.Record) error { return claimOne(l, r) }, nil)
			marks, begun = append(marks, b.beginWrite(l.ID)), append(begun, l.ID)
			if mustRollBack(err) {
				return err
			}
			claims = append(claims, asyncreq.Claim{Lease: l, Record: rec, Err: err})
		}
		return nil
	}
	notify := func() {
		for i, c := range claims {
			if c.Err == nil {
				b.wrote(c.Lease.ID, marks[i], c.Record)
			} else {
				b.forget(c.Lease.ID)
			}
		}
	}
	if _, err := b.dequeue(ctx, max, ttl, &claimStep{claimAll, notify}); err != nil {
		for _, id := range begun {
			b.forget(id)
		}
		if panicked != nil {
			panic(panicked)
		}
		return nil, err
	}
	return claims, nil
}

// claimStep is what DequeueClaim adds to the transaction that leases
// entries: claim runs in it on the leases taken, after runs once it
// committed.
type claimStep struct {
	claim func(*wtx, []*asyncreq.Lease) error
	after func()
}

func (b *Backend) dequeue(ctx context.Context, n int, ttl time.Duration, step *claimStep) ([]*asyncreq.Lease, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("sqlite: lease duration %s is not positive", ttl)
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		// Take the wake-up channel before looking, so that an enqueue
		// committed after the look is not missed.
		woken := b.wake.wait()
		leases, next, err := b.claim(ctx, n, ttl, step)
		if err != nil || len(leases) > 0 {
			return leases, err
		}
		wait := b.poll
		if next.Valid {
			wait = min(wait, time.Duration(next.Int64-b.now().UnixNano()))
		}
		if wait <= 0 {
			continue
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-woken:
		case <-timer.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.closing:
			return nil, asyncreq.ErrClosed
		}
	}
}

// claim leases up to n due entries, and runs step's claim on them in the
// same transaction when step is not nil. If none is due it returns when
// the next entry falls due (invalid if the queue is empty).
func (b *Backend) claim(ctx context.Context, n int, ttl time.Duration, step *claimStep) ([]*asyncreq.Lease, sql.NullInt64, error) {
	if err := b.enter(ctx); err != nil {
		return nil, sql.NullInt64{}, err
	}
	defer b.exit()
	var (
		leases []*asyncreq.Lease
		next   sql.NullInt64
	)
	claim := func(t *wtx) error {
		leases, next = leases[:0], sql.NullInt64{}
		now := b.now().UnixNano()
		rows, err := t.query(b.sql.claim, b.queue, now, n, now+int64(ttl))
		if err != nil {
			return err
		}
		for rows.Next() {
			l := &asyncreq.Lease{}
			h := &leaseHandle{}
			if err := rows.Scan(&h.seq, &l.ID, &l.Delivery, &h.token); err != nil {
				_ = rows.Close()
				return err
			}
			l.Handle = h
			leases = append(leases, l)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(leases) == 0 {
			return t.queryRow(b.sql.nextDue, b.queue).Scan(&next)
		}
		if step == nil {
			return nil
		}
		if err := step.claim(t, leases); err != nil {
			return err
		}
		// The leases run from the end of the claims, which, for large
		// records on a busy writer, may have taken a good part of ttl;
		// the worker's keeper first extends a lease a third of ttl after
		// the claims began.
		if end := b.now().UnixNano(); end-now > int64(ttl)/10 {
			for _, l := range leases {
				h := l.Handle.(*leaseHandle)
				if _, err := t.exec(b.sql.refresh, b.queue, h.seq, h.token, end+int64(ttl)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var after func()
	if step != nil {
		after = step.after
	}
	if err := b.eng.do(ctx, claim, after); err != nil {
		return nil, sql.NullInt64{}, writeErr("dequeue", err)
	}
	return leases, next, nil
}

// handleOf returns the handle of a lease this Backend made.
func handleOf(l *asyncreq.Lease) (*leaseHandle, error) {
	if l == nil {
		return nil, errors.New("sqlite: lease is nil")
	}
	h, ok := l.Handle.(*leaseHandle)
	if !ok || h == nil {
		return nil, fmt.Errorf("%w: lease of %s was not made by this backend", asyncreq.ErrLeaseLost, l.ID)
	}
	return h, nil
}

// settle runs one of the lease statements (extend, ack, nack) and reports
// ErrLeaseLost if it found no lease to act on.
// With withDue the statement also takes the new due time, dueAfter from
// now, as ?5.
func (b *Backend) settle(ctx context.Context, what string, l *asyncreq.Lease, q string, withDue bool, dueAfter time.Duration, after func()) error {
	h, err := handleOf(l)
	if err != nil {
		return err
	}
	if err := b.enter(ctx); err != nil {
		return err
	}
	defer b.exit()
	fn := func(t *wtx) error {
		now := b.now().UnixNano()
		args := []any{b.queue, h.seq, h.token, now}
		if withDue {
			args = append(args, now+int64(dueAfter))
		}
		res, err := t.exec(q, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return asyncreq.ErrLeaseLost
		}
		return nil
	}
	return writeErr(what+" "+l.ID, b.eng.do(ctx, fn, after))
}

// Extend implements asyncreq.Queue.
func (b *Backend) Extend(ctx context.Context, l *asyncreq.Lease, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("sqlite: lease duration %s is not positive", ttl)
	}
	return b.settle(ctx, "extend", l, b.sql.extend, true, ttl, nil)
}

// Ack implements asyncreq.Queue.
func (b *Backend) Ack(ctx context.Context, l *asyncreq.Lease) error {
	return b.settle(ctx, "ack", l, b.sql.ack, false, 0, nil)
}

// Nack implements asyncreq.Queue.
func (b *Backend) Nack(ctx context.Context, l *asyncreq.Lease, delay time.Duration) error {
	return b.settle(ctx, "nack", l, b.sql.nack, true, max(delay, 0), b.wake.broadcast)
}
