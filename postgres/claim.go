package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// claimStatement returns the claim of up to $2 due jobs of the queue $1
// for leases of $3 microseconds (see statements.claim). locked is
// DequeueClaim's form: it runs in a transaction that commits durably, and
// locks each record it reads, for the transaction writes the record's
// claim; the other form commits on its own, without waiting for the WAL
// flush.
func claimStatement(locked bool) string {
	cfg, from, lock := `cfg AS MATERIALIZED (`+asyncCommit+`), `, `FROM cfg `, ``
	if locked {
		cfg, from, lock = ``, ``, ` FOR UPDATE`
	}
	return `WITH ` + cfg + `c AS MATERIALIZED (
				SELECT job_id FROM {{s}}.jobs
				WHERE queue = $1 AND run_at <= now()
				ORDER BY run_at, job_id
				LIMIT $2
				FOR UPDATE SKIP LOCKED
			), l AS (
				UPDATE {{s}}.jobs AS j
				SET run_at = now() + $3::bigint * interval '1 microsecond',
					lease_token = gen_random_uuid()::text,
					deliveries = j.deliveries + 1
				` + from + `WHERE j.job_id = ANY (ARRAY(SELECT job_id FROM c))
				RETURNING j.job_id, j.id, j.deliveries, j.lease_token
			)
			SELECT l.job_id, l.id, l.deliveries, l.lease_token, r.*
			FROM l LEFT JOIN LATERAL (
				SELECT xmin::text, {{cols}} FROM {{s}}.records WHERE queue = $1 AND id = l.id LIMIT 1` + lock + `
			) AS r ON true`
}

// DequeueClaim implements asyncreq.Claimer. It waits as DequeueBatch does,
// then takes up to max leases and writes the claims of their records in
// one transaction of two round trips: BEGIN with the claim of the jobs,
// which reads and locks their records; then, once claim has run on each
// record, the UPDATE of the records with COMMIT. A request thus starts
// with one commit where DequeueBatch and Update take two, and its claim
// does not wait behind the outcomes being written (Options.Committers).
// The leases run from the start of the transaction, which takes no longer
// than its two round trips. A panic in claim is raised again in the
// caller, and nothing of the transaction is committed.
//
// The transaction locks jobs, then records; a Complete locks its record,
// then its job. The two wait for each other only when a Complete began
// just before its lease ran out and this claim, just after, takes the job
// again: PostgreSQL then ends one of them with a deadlock error, which
// DequeueClaim returns (the Worker tries again after a pause) or Complete
// does (its lease is lost to the new one anyway).
func (s *Backend) DequeueClaim(ctx context.Context, max int, ttl time.Duration,
	claim func(*asyncreq.Lease, *asyncreq.Record) error) ([]asyncreq.Claim, error) {
	switch {
	case max <= 0:
		return nil, fmt.Errorf("postgres: dequeue batch size %d is not positive", max)
	case claim == nil:
		return nil, errors.New("postgres: claim function is nil")
	}
	var claims []asyncreq.Claim
	err := s.dequeueLoop(ctx, ttl, func() (bool, time.Duration, error) {
		var next time.Duration
		var err error
		claims, next, err = s.claimRecords(ctx, min(max, maxDequeue), ttl, claim)
		return len(claims) > 0, next, err
	})
	return claims, err
}

// claimRecords is one try of DequeueClaim. When no job is due it returns
// how long to wait before the next (see nextDue).
func (s *Backend) claimRecords(ctx context.Context, limit int, ttl time.Duration,
	claim func(*asyncreq.Lease, *asyncreq.Record) error) ([]asyncreq.Claim, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	// As with claim, no round trip is cut short by ctx: a transaction is
	// committed or rolled back as a whole.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	conn, err := s.pool.Acquire(qctx)
	if err != nil {
		return nil, 0, s.fail(ctx, "dequeue", err)
	}
	defer releaseIdle(qctx, conn)

	// The transaction's generic plans serve commitLocked's UPDATE.
	var leases []*asyncreq.Lease
	recs := make(map[string]*asyncreq.Record) // the records found, as read
	err = beginGeneric(qctx, conn, s.sql.claimLocked, []any{s.queue, limit, micros(ttl)}, func(rows pgx.Rows) error {
		for rows.Next() {
			l, rec, err := s.scanClaimed(rows)
			if err != nil {
				return err
			}
			leases = append(leases, l)
			if rec != nil {
				recs[l.ID] = rec
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, s.fail(ctx, "dequeue", err)
	}
	if len(leases) == 0 {
		next, err := s.rollBackNextDue(qctx, conn)
		if err != nil {
			return nil, 0, s.fail(ctx, "dequeue", err)
		}
		return nil, next, nil
	}

	calls := make([]*call[updateArg, updateRes], len(leases))
	for i, l := range leases {
		calls[i] = &call[updateArg, updateRes]{arg: updateArg{id: l.ID,
			fn: func(r *asyncreq.Record) error { return claim(l, r) }}}
	}
	p, _ := apply(calls, batchIDs(calls), recs, nil, nil)
	for _, c := range calls {
		if c.res.panicked != nil {
			panic(c.res.panicked) // releaseIdle rolls back
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err // releaseIdle rolls back: nothing is taken
	}
	if len(p.ids) > 0 {
		marks := s.beginWrites(p.ids)
		written, err := s.commitLocked(qctx, conn, p)
		if err != nil {
			s.wrote(p, nil, marks)
			return nil, 0, s.fail(ctx, "dequeue", err)
		}
		s.wrote(p, written, marks)
		for _, c := range calls {
			if _, ok := written[c.arg.id]; c.res.rec != nil && !ok {
				c.res.rec, c.err = nil, errMissing
			}
		}
	} else if _, err := conn.Exec(qctx, "COMMIT"); err != nil {
		// Every claim was refused or found no record: the leases alone.
		return nil, 0, s.fail(ctx, "dequeue", err)
	}
	s.claimed(len(leases))

	claims := make([]asyncreq.Claim, len(leases))
	for i, l := range leases {
		c := calls[i]
		if errors.Is(c.err, errMissing) {
			c.err = s.missing(qctx, l.ID)
		}
		claims[i] = asyncreq.Claim{Lease: l, Record: c.res.rec, Err: c.err}
	}
	return claims, 0, nil
}

// rollBackNextDue ends a claim that took nothing, and returns how long to
// wait before the next, in the same round trip.
func (s *Backend) rollBackNextDue(ctx context.Context, conn *pgxpool.Conn) (time.Duration, error) {
	var b pgx.Batch
	b.Queue("ROLLBACK")
	b.Queue(s.sql.nextDue, s.queue)
	br := conn.SendBatch(ctx, &b)
	var secs *float64
	_, err := br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&secs)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return s.untilDue(secs), nil
}
