package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/jackc/pgx/v5"
)

// leaseHandle is the Handle of a Lease from this package: the queue, the
// job row and the token of this delivery. A settled or redelivered job has
// another token (or none), which fences a stale Ack, Nack or Extend.
type leaseHandle struct {
	queue string
	jobID int64
	token string
}

// maxDequeue caps the leases one DequeueBatch call takes.
const maxDequeue = 1000

// batchTimeout bounds one group-commit round trip.
const batchTimeout = 30 * time.Second

// micros converts d to whole microseconds, the resolution of timestamptz.
func micros(d time.Duration) int64 { return int64(d / time.Microsecond) }

// Enqueue implements asyncreq.Queue. Each call adds a job, so an id
// enqueued twice is delivered twice.
func (s *Backend) Enqueue(ctx context.Context, id string, delay time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, s.sql.enqueue, s.queue, id, micros(max(delay, 0))); err != nil {
		return s.fail(ctx, "enqueue "+id, err)
	}
	s.rowsAdded(1)
	s.jobsAdded()
	return nil
}

// Dequeue implements asyncreq.Queue.
func (s *Backend) Dequeue(ctx context.Context, ttl time.Duration) (*asyncreq.Lease, error) {
	ls, err := s.DequeueBatch(ctx, 1, ttl)
	if err != nil {
		return nil, err
	}
	return ls[0], nil
}

// DequeueBatch implements asyncreq.BatchDequeuer. It claims up to limit due
// jobs in one statement with FOR UPDATE SKIP LOCKED, so concurrent
// Dequeues never wait on each other or receive the same job. When none is
// due it waits for a notification of new work (LISTEN/NOTIFY), the time
// the next job falls due, or Options.PollInterval, whichever comes first.
// The lease ends ttl after the claim by the database's clock.
func (s *Backend) DequeueBatch(ctx context.Context, limit int, ttl time.Duration) ([]*asyncreq.Lease, error) {
	limit = min(max(limit, 1), maxDequeue)
	var ls []*asyncreq.Lease
	err := s.dequeueLoop(ctx, ttl, func() (bool, time.Duration, error) {
		var err error
		if ls, err = s.claim(ctx, limit, ttl); err != nil || len(ls) > 0 {
			return true, 0, err
		}
		next, err := s.nextDue(ctx)
		return false, next, err
	})
	return ls, err
}

// dequeueLoop runs take until it takes something or fails. Between two
// tries it waits for a notification of new work, for ctx to end, or for
// the time take returned: until the next job falls due.
func (s *Backend) dequeueLoop(ctx context.Context, ttl time.Duration, take func() (bool, time.Duration, error)) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("postgres: dequeue: lease ttl %s is not positive", ttl)
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		wake := s.jobs.wait()
		if s.closed.Load() {
			return asyncreq.ErrClosed
		}
		took, d, err := take()
		if err != nil || took {
			return err
		}
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-timer.C:
		}
	}
}

// claim leases up to limit due jobs. The claim itself is not cut short by
// ctx: a claim the server made but whose answer never arrived would leave
// its jobs leased to nobody until the leases ran out. If ctx has ended by
// the time the claim returns, its leases are handed back at once and ctx's
// error is returned.
func (s *Backend) claim(ctx context.Context, limit int, ttl time.Duration) ([]*asyncreq.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	rows, err := s.pool.Query(qctx, s.sql.claim, s.queue, limit, micros(ttl))
	if err != nil {
		return nil, s.fail(ctx, "dequeue", err)
	}
	var ls []*asyncreq.Lease
	for rows.Next() {
		l, _, err := s.scanClaimed(rows)
		if err != nil {
			rows.Close()
			return nil, s.fail(ctx, "dequeue", err)
		}
		ls = append(ls, l)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "dequeue", err)
	}
	s.claimed(len(ls))
	if err := ctx.Err(); err != nil && len(ls) > 0 {
		s.release(qctx, ls)
		return nil, err
	}
	return ls, nil
}

// scanClaimed reads a row of the claim: the lease, and the job's record
// (nil when it has none) with its row version, which it keeps in the
// version cache.
func (s *Backend) scanClaimed(rows pgx.Rows) (*asyncreq.Lease, *asyncreq.Record, error) {
	h := leaseHandle{queue: s.queue}
	var (
		id       string
		delivery int32
		version  *string
		rec      *asyncreq.Record
	)
	lease := []any{&h.jobID, &id, &delivery, &h.token, &version}
	if rows.RawValues()[len(lease)] == nil {
		// No record: skip its columns.
		dest := make([]any, len(rows.FieldDescriptions()))
		copy(dest, lease)
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, err
		}
	} else {
		var err error
		if rec, err = scanRecord(moreColumns{Row: rows, before: lease}); err != nil {
			return nil, nil, err
		}
		s.cacheRecord(rec, *version)
	}
	return &asyncreq.Lease{ID: id, Delivery: int(delivery), Handle: h}, rec, nil
}

// release hands leases back for immediate delivery. A lease it cannot
// hand back runs out as usual.
func (s *Backend) release(ctx context.Context, ls []*asyncreq.Lease) {
	ids := make([]int64, 0, len(ls))
	tokens := make([]string, 0, len(ls))
	for _, l := range ls {
		h, _ := s.handle(l)
		ids, tokens = append(ids, h.jobID), append(tokens, h.token)
	}
	if _, err := s.pool.Exec(ctx, s.sql.release, ids, tokens); err != nil {
		s.opts.Logger.Warn("postgres: hand back leases of a canceled dequeue", "count", len(ls), "error", err)
		return
	}
	s.jobsAdded()
}

// nextDue returns how long an idle Dequeue waits before it looks again:
// until the next job falls due, at most Options.PollInterval.
func (s *Backend) nextDue(ctx context.Context) (time.Duration, error) {
	var secs *float64
	if err := s.pool.QueryRow(ctx, s.sql.nextDue, s.queue).Scan(&secs); err != nil {
		return 0, s.fail(ctx, "dequeue", err)
	}
	return s.untilDue(secs), nil
}

// untilDue is nextDue's answer for the seconds the statement nextDue
// returned (nil for an empty queue).
func (s *Backend) untilDue(secs *float64) time.Duration {
	d := s.opts.PollInterval
	if secs != nil {
		if due := time.Duration(*secs * float64(time.Second)); due < d {
			d = due
		}
	}
	return max(d, time.Millisecond)
}

// handle returns the handle of a lease made by a Backend of this package
// for s's queue.
func (s *Backend) handle(l *asyncreq.Lease) (leaseHandle, bool) {
	if l == nil {
		return leaseHandle{}, false
	}
	h, ok := l.Handle.(leaseHandle)
	return h, ok && h.queue == s.queue
}

// Extend implements asyncreq.Queue.
func (s *Backend) Extend(ctx context.Context, l *asyncreq.Lease, ttl time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	h, ok := s.handle(l)
	if !ok {
		return asyncreq.ErrLeaseLost
	}
	if ttl <= 0 {
		return fmt.Errorf("postgres: extend: lease ttl %s is not positive", ttl)
	}
	tag, err := s.pool.Exec(ctx, s.sql.extend, s.queue, h.jobID, h.token, micros(ttl))
	if err != nil {
		return s.fail(ctx, "extend "+l.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return asyncreq.ErrLeaseLost
	}
	return nil
}

// Ack implements asyncreq.Queue. Concurrent Acks are settled together in
// one statement (the same group commit as Accept), and a lone Ack is
// settled at once.
func (s *Backend) Ack(ctx context.Context, l *asyncreq.Lease) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	h, ok := s.handle(l)
	if !ok {
		return asyncreq.ErrLeaseLost
	}
	_, err := s.acks.do(ctx, h)
	return err
}

// runAcks deletes the jobs of a batch of Acks whose leases still hold.
func (s *Backend) runAcks(ctx context.Context, calls []*call[leaseHandle, struct{}]) {
	ctx, cancel := context.WithTimeout(ctx, batchTimeout)
	defer cancel()
	ids := make([]int64, len(calls))
	tokens := make([]string, len(calls))
	for i, c := range calls {
		ids[i], tokens[i] = c.arg.jobID, c.arg.token
	}
	rows, err := s.pool.Query(ctx, s.sql.ack, ids, tokens)
	var deleted []leaseHandle
	if err == nil {
		deleted, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (leaseHandle, error) {
			h := leaseHandle{queue: s.queue}
			err := r.Scan(&h.jobID, &h.token)
			return h, err
		})
	}
	if err != nil {
		err = batchErr("ack", err)
		for _, c := range calls {
			c.err = err
		}
		return
	}
	settled := make(map[leaseHandle]bool, len(deleted))
	for _, h := range deleted {
		settled[h] = true
	}
	for _, c := range calls {
		// A lease acked twice in one batch is settled by the first Ack.
		if settled[c.arg] {
			delete(settled, c.arg)
		} else {
			c.err = asyncreq.ErrLeaseLost
		}
	}
}

// Nack implements asyncreq.Queue.
func (s *Backend) Nack(ctx context.Context, l *asyncreq.Lease, delay time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	h, ok := s.handle(l)
	if !ok {
		return asyncreq.ErrLeaseLost
	}
	tag, err := s.pool.Exec(ctx, s.sql.nack, s.queue, h.jobID, h.token, micros(max(delay, 0)))
	if err != nil {
		return s.fail(ctx, "nack "+l.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return asyncreq.ErrLeaseLost
	}
	s.jobsAdded()
	return nil
}

// errNoSQLState reports whether err did not come from the server, so the
// statement's outcome is unknown (a lost connection) rather than known to
// have failed.
func errNoSQLState(err error) bool {
	var pgErr interface{ SQLState() string }
	return !errors.As(err, &pgErr)
}
