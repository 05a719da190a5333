package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/asyncreq/asyncreq"
	"github.com/jackc/pgx/v5"
)

// Accept implements asyncreq.Accepter: the record, its job and the
// idempotency key are written in one transaction. Accepts that arrive
// together are written together (group commit): a batch is one statement
// that commits on its own, and each caller is answered only after that
// commit. A lone Accept is written at once, so batching costs no latency;
// under load it is what lets a few connections commit many thousands of
// accepts a second with synchronous_commit on.
//
// If a record with the same Owner and IdempotencyKey exists, including one
// accepted in the same batch, Accept stores nothing and returns that record
// with asyncreq.ErrDuplicate.
func (s *Backend) Accept(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := checkID(rec); err != nil {
		return nil, err
	}
	c := rec.Clone()
	c.Enqueued = true
	return s.accepts.do(ctx, c)
}

// AcceptTx records and enqueues rec inside the caller's transaction tx, with
// Accept's duplicate semantics: the transactional outbox. An application
// records its own business change and the asynchronous request in one
// transaction, so both happen or neither does; workers see the request
// once tx commits (its NOTIFY is delivered at commit, waking them).
//
// tx must run at READ COMMITTED (PostgreSQL's default), so that an
// idempotency key taken by a transaction that commits meanwhile is seen.
// On error other than asyncreq.ErrDuplicate the transaction is aborted and
// must be rolled back; ErrDuplicate leaves it usable.
//
// Build rec with the Handler's NewRecord, which gives it a valid id, the
// Handler's retention and the fingerprint an idempotent repeat is compared
// by; or let the Handler's SubmitVia call AcceptTx, which also resolves a
// repeated idempotency key as an HTTP submit would. A record whose id
// asyncreq.ValidID refuses is an error: no Handler would serve it.
func (s *Backend) AcceptTx(ctx context.Context, tx pgx.Tx, rec *asyncreq.Record) (*asyncreq.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if tx == nil {
		return nil, errors.New("postgres: accept: nil transaction")
	}
	if err := checkID(rec); err != nil {
		return nil, err
	}
	c := rec.Clone()
	c.Enqueued = true
	existing, errs, err := s.acceptRecords(ctx, tx, []*asyncreq.Record{c}, false)
	if err == nil && errs[0] == nil {
		// Delivered when tx commits, waking the workers.
		_, err = tx.Exec(ctx, s.sql.notifyTx, s.channel, s.jobsPayload())
	}
	if err != nil {
		return nil, s.fail(ctx, "accept "+rec.ID, err)
	}
	return existing[0], errs[0]
}

// checkID refuses a record without an id the Handler can serve: one that
// asyncreq.ValidID refuses would be stored, and answered 404 by every
// Handler, which never asks the Store about such an id.
func checkID(rec *asyncreq.Record) error {
	switch {
	case rec == nil || rec.ID == "":
		return errors.New("postgres: accept: record without an id")
	case !asyncreq.ValidID(rec.ID):
		return fmt.Errorf("postgres: accept: record id %q is not an id made by asyncreq.NewID (build the record with Handler.NewRecord)", rec.ID)
	}
	return nil
}

// runAccepts writes a batch of Accepts.
func (s *Backend) runAccepts(ctx context.Context, calls []*call[*asyncreq.Record, *asyncreq.Record]) {
	ctx, cancel := context.WithTimeout(ctx, batchTimeout)
	defer cancel()
	recs := make([]*asyncreq.Record, len(calls))
	fresh := true // no idempotency key: see acceptFresh
	for i, c := range calls {
		recs[i] = c.arg
		fresh = fresh && c.arg.IdempotencyKey == ""
	}
	existing, errs, err := s.acceptRecords(ctx, s.pool, recs, fresh)
	if err != nil && (len(calls) > 1 || fresh) && !errNoSQLState(err) {
		// The server refused the statement, so nothing of it was stored.
		// One bad record (or a duplicate id) must not fail the others:
		// write each alone, telling conflicts apart.
		for _, c := range calls {
			ex, es, err := s.acceptRecords(ctx, s.pool, []*asyncreq.Record{c.arg}, false)
			if err != nil {
				c.err = batchErr("accept "+c.arg.ID, err)
			} else {
				c.res, c.err = ex[0], es[0]
			}
		}
		s.rowsAdded(len(calls))
		s.jobsAdded()
		return
	}
	for i, c := range calls {
		if err != nil {
			c.err = batchErr("accept "+c.arg.ID, err)
		} else {
			c.res, c.err = existing[i], errs[i]
		}
	}
	if err == nil {
		s.rowsAdded(len(calls))
		s.jobsAdded()
	}
}

// acceptRecords inserts recs, each with a job, in one statement on q. For
// each record it returns either nothing (stored), the record holding its
// idempotency key with asyncreq.ErrDuplicate, or another error of its own.
// The last result is an error that concerns them all: the statement
// failed. fresh, for records without idempotency keys only, inserts them
// without ON CONFLICT (acceptFresh), so that a duplicate id fails the
// statement.
func (s *Backend) acceptRecords(ctx context.Context, q querier, recs []*asyncreq.Record, fresh bool) ([]*asyncreq.Record, []error, error) {
	stmt := s.sql.acceptBatch
	if fresh {
		stmt = s.sql.acceptFresh
	}
	existing := make([]*asyncreq.Record, len(recs))
	errs := make([]error, len(recs))
	rows := make([]row, len(recs))
	var pending []int
	for i, rec := range recs {
		r, err := toRow(rec)
		if err != nil {
			errs[i] = err
			continue
		}
		rows[i] = r
		pending = append(pending, i)
	}
	// A record not stored because of a conflict that has gone by the time
	// it is looked at (the record holding its key was deleted) is tried
	// again.
	for range 3 {
		if len(pending) == 0 {
			return existing, errs, nil
		}
		var b rowBatch
		for _, i := range pending {
			b.add(&rows[i])
		}
		res, err := q.Query(ctx, stmt, b.args(s.queue)...)
		if err != nil {
			return nil, nil, err
		}
		ids, err := pgx.CollectRows(res, pgx.RowTo[string])
		if err != nil {
			return nil, nil, err
		}
		stored := make(map[string]bool, len(ids))
		for _, id := range ids {
			stored[id] = true
		}
		var again []int
		for _, i := range pending {
			if stored[recs[i].ID] {
				delete(stored, recs[i].ID) // the same id twice in a batch: the first one has it
				continue
			}
			ex, err := s.conflict(ctx, q, recs[i])
			if err == nil && ex == nil {
				again = append(again, i)
				continue
			}
			existing[i], errs[i] = ex, err
		}
		pending = again
	}
	for _, i := range pending {
		errs[i] = fmt.Errorf("postgres: accept %s: idempotency key keeps changing hands", recs[i].ID)
	}
	return existing, errs, nil
}
