package postgres

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// updateArg is one Update call.
type updateArg struct {
	id string
	fn func(*asyncreq.Record) error
}

// updateRes is the answer to an Update call: the stored record, or the
// value fn panicked with.
type updateRes struct {
	rec      *asyncreq.Record
	panicked any
}

// errMissing marks an Update whose record does not exist; the caller is
// told ErrNotFound or ErrGone after the transaction.
var errMissing = errors.New("postgres: record missing")

// runUpdates writes a batch of Updates.
func (s *Store) runUpdates(ctx context.Context, calls []*call[updateArg, updateRes]) {
	ctx, cancel := context.WithTimeout(ctx, batchTimeout)
	defer cancel()
	err := s.updateBatch(ctx, calls)
	if err != nil && len(calls) > 1 && !errNoSQLState(err) {
		// The server refused the statement, so nothing was stored. One bad
		// record must not fail the others: update each alone.
		for _, c := range calls {
			c.res, c.err = updateRes{}, nil
			if err := s.updateBatch(ctx, []*call[updateArg, updateRes]{c}); err != nil {
				c.res, c.err = updateRes{}, batchErr("update "+c.arg.id, err)
			}
		}
	} else if err != nil {
		for _, c := range calls {
			if c.res.panicked != nil || c.err != nil && !errors.Is(c.err, errMissing) {
				continue // fn's own outcome stands: nothing of it was stored
			}
			c.res, c.err = updateRes{}, batchErr("update "+c.arg.id, err)
		}
	}
	for _, c := range calls {
		if errors.Is(c.err, errMissing) {
			c.err = s.missing(ctx, c.arg.id)
		}
	}
}

// updateBatch runs calls in one transaction of two round trips: BEGIN
// with the SELECT ... FOR UPDATE of their records, and the UPDATE with
// COMMIT. It sets each call's own outcome (a record, fn's error, or
// errMissing), and returns an error that concerns them all.
func (s *Store) updateBatch(ctx context.Context, calls []*call[updateArg, updateRes]) (err error) {
	ids := make([]string, 0, len(calls))
	for _, c := range calls {
		ids = append(ids, c.arg.id)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer releaseIdle(ctx, conn)

	var b pgx.Batch
	b.Queue("BEGIN")
	b.Queue(s.sql.getManyForUpdate, s.queue, ids)
	br := conn.SendBatch(ctx, &b)
	current := make(map[string]*asyncreq.Record, len(ids))
	stored := make(map[string]*asyncreq.Record, len(ids)) // as read, before any fn
	_, err = br.Exec()
	if err == nil {
		var rows pgx.Rows
		rows, err = br.Query()
		if err == nil {
			var recs []*asyncreq.Record
			recs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*asyncreq.Record, error) {
				return scanRecord(r)
			})
			for _, rec := range recs {
				current[rec.ID], stored[rec.ID] = rec, rec
			}
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}

	// Apply each fn to the latest version of its record.
	final := make(map[string]*row, len(ids))
	for _, c := range calls {
		cur, ok := current[c.arg.id]
		if !ok {
			c.err = errMissing
			continue
		}
		next := cur.Clone()
		if p, err := applyFn(c.arg.fn, next); p != nil || err != nil {
			c.res.panicked, c.err = p, err
			continue
		}
		next.ID, next.Owner, next.IdempotencyKey = cur.ID, cur.Owner, cur.IdempotencyKey
		r, err := toRow(next)
		if err != nil {
			c.err = err
			continue
		}
		current[c.arg.id] = next
		final[c.arg.id] = &r
		c.res.rec = storedCopy(next)
	}
	if len(final) == 0 {
		return nil // releaseIdle rolls back
	}
	var (
		rb                   rowBatch
		keepBody, keepResult []bool
	)
	for _, id := range ids {
		r := final[id]
		if r == nil {
			continue
		}
		old, next := stored[id], current[id]
		kb := sameBytes(old.Body, next.Body)
		kr := old.Result != nil && next.Result != nil && sameBytes(old.Result.Body, next.Result.Body)
		if kb {
			r.body = nil
		}
		if kr {
			r.resultBody = nil
		}
		rb.add(r)
		keepBody, keepResult = append(keepBody, kb), append(keepResult, kr)
	}
	b = pgx.Batch{}
	b.Queue(s.sql.updateBatch, append(rb.args(s.queue), keepBody, keepResult)...)
	b.Queue("COMMIT")
	br = conn.SendBatch(ctx, &b)
	_, err = br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil && conn.Conn().PgConn().TxStatus() != 'I' {
		err = errors.New("transaction still open after COMMIT")
	}
	if err != nil {
		for _, c := range calls {
			c.res.rec = nil
		}
		return err
	}
	for id := range final {
		s.changed(id)
	}
	return nil
}

// sameBytes reports whether a and b hold the same bytes and are both nil
// or both not.
func sameBytes(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// applyFn calls fn on rec, returning what it returns or the value it
// panicked with.
func applyFn(fn func(*asyncreq.Record) error, rec *asyncreq.Record) (panicked any, err error) {
	defer func() {
		if p := recover(); p != nil {
			panicked = p
		}
	}()
	return nil, fn(rec)
}

// releaseIdle returns conn to the pool, rolling back a transaction left
// open on it; the pool closes a connection that is still not idle.
func releaseIdle(ctx context.Context, conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() != 'I' {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, _ = conn.Exec(rctx, "ROLLBACK")
		cancel()
	}
	conn.Release()
}
