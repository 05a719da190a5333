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
	// On error, failed are the calls the error concerns: those of the
	// round that failed. Calls written in an earlier round stand.
	failed, err := s.updateBatch(ctx, calls)
	if err != nil && len(failed) > 1 && !errNoSQLState(err) {
		// The server refused the statement, so nothing of those calls was
		// stored. One bad record must not fail the others: update each
		// alone.
		for _, c := range failed {
			c.res, c.err = updateRes{}, nil
			if _, err := s.updateBatch(ctx, []*call[updateArg, updateRes]{c}); err != nil {
				c.res, c.err = updateRes{}, batchErr("update "+c.arg.id, err)
			}
		}
	} else if err != nil {
		for _, c := range failed {
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

// optimisticRounds is how many times updateBatch writes a batch without
// locking before it writes the calls still in conflict under row locks.
const optimisticRounds = 3

// updateBatch runs calls and sets each call's own outcome (a record, fn's
// error, or errMissing). On failure it returns the error and the calls it
// concerns, none of which was stored; the other calls' outcomes stand.
//
// It writes optimistically first: one round trip reads the records with
// their row versions (xmin), each fn runs on its record, and one UPDATE
// writes every record whose version is still the one read, committing on
// its own. A record changed in between is not written; its calls run again
// (fn may be called more than once) in the next round, and after
// optimisticRounds in a locking transaction (updateLocked), which always
// finishes. Compared with a transaction that holds the rows locked from the
// read to the commit, this saves BEGIN, COMMIT and the row locks' WAL
// records, and holds no lock across a round trip to the client.
func (s *Store) updateBatch(ctx context.Context, calls []*call[updateArg, updateRes]) ([]*call[updateArg, updateRes], error) {
	for range optimisticRounds {
		again, err := s.updateOptimistic(ctx, calls)
		if err != nil {
			return calls, err
		}
		if len(again) == 0 {
			return nil, nil
		}
		calls = again
	}
	if err := s.updateLocked(ctx, calls); err != nil {
		return calls, err
	}
	return nil, nil
}

// batchIDs returns the distinct record ids of calls, sorted.
func batchIDs(calls []*call[updateArg, updateRes]) []string {
	ids := make([]string, 0, len(calls))
	for _, c := range calls {
		ids = append(ids, c.arg.id)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// pending is a batch of updates applied in memory and not yet written.
type pending struct {
	ids     []string                    // the records written, sorted
	rows    rowBatch                    // their new values, in ids order
	keepB   []bool                      // per written record: body unchanged
	keepR   []bool                      // per written record: result body unchanged
	version []string                    // per written record: the xmin read
	final   map[string]*asyncreq.Record // per written record: the new value
}

// apply runs each call's fn on the latest version of its record, in
// arrival order for the same record, and returns what is to be written.
// stored holds the records as read; versions, when not nil, their xmin.
func apply(calls []*call[updateArg, updateRes], ids []string, stored map[string]*asyncreq.Record,
	versions map[string]string) *pending {
	current := make(map[string]*asyncreq.Record, len(stored))
	for id, rec := range stored {
		current[id] = rec
	}
	rows := make(map[string]*row, len(ids))
	for _, c := range calls {
		c.res, c.err = updateRes{}, nil
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
		rows[c.arg.id] = &r
		c.res.rec = storedCopy(next)
	}
	p := &pending{final: make(map[string]*asyncreq.Record, len(rows))}
	for _, id := range ids {
		r := rows[id]
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
		p.ids = append(p.ids, id)
		p.rows.add(r)
		p.keepB, p.keepR = append(p.keepB, kb), append(p.keepR, kr)
		if versions != nil {
			p.version = append(p.version, versions[id])
		}
		p.final[id] = next
	}
	return p
}

// versionedRow scans a row of recordColumns followed by the row's xmin.
type versionedRow struct {
	pgx.Row
	version *string
}

func (r versionedRow) Scan(dest ...any) error {
	return r.Row.Scan(append(dest, r.version)...)
}

// updateOptimistic makes one optimistic round of updateBatch. It returns
// the calls whose records changed between the read and the write: nothing
// of theirs was stored, and they must run again.
func (s *Store) updateOptimistic(ctx context.Context, calls []*call[updateArg, updateRes]) ([]*call[updateArg, updateRes], error) {
	ids := batchIDs(calls)
	rows, err := s.pool.Query(ctx, s.sql.getManyVersioned, s.queue, ids)
	if err != nil {
		return nil, err
	}
	stored := make(map[string]*asyncreq.Record, len(ids)) // as read, before any fn
	versions := make(map[string]string, len(ids))
	for rows.Next() {
		var v string
		rec, err := scanRecord(versionedRow{Row: rows, version: &v})
		if err != nil {
			rows.Close()
			return nil, err
		}
		stored[rec.ID], versions[rec.ID] = rec, v
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	p := apply(calls, ids, stored, versions)
	if len(p.ids) == 0 {
		return nil, nil
	}
	args := append(p.rows.args(s.queue), p.keepB, p.keepR, p.version)
	rows, err = s.pool.Query(ctx, s.sql.updateVersioned, args...)
	var written []string
	if err == nil {
		written, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		for _, c := range calls {
			c.res.rec = nil
		}
		return nil, err
	}
	ok := make(map[string]bool, len(written))
	for _, id := range written {
		ok[id] = true
		s.changed(id)
	}
	var again []*call[updateArg, updateRes]
	for _, c := range calls {
		if _, wrote := p.final[c.arg.id]; wrote && !ok[c.arg.id] {
			again = append(again, c)
		}
	}
	return again, nil
}

// updateLocked runs calls in one transaction of two round trips: BEGIN
// with the SELECT ... FOR UPDATE of their records, and the UPDATE with
// COMMIT. It sets each call's own outcome (a record, fn's error, or
// errMissing), and returns an error that concerns them all.
func (s *Store) updateLocked(ctx context.Context, calls []*call[updateArg, updateRes]) (err error) {
	ids := batchIDs(calls)

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer releaseIdle(ctx, conn)

	var b pgx.Batch
	b.Queue("BEGIN")
	b.Queue(s.sql.getManyForUpdate, s.queue, ids)
	br := conn.SendBatch(ctx, &b)
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
				stored[rec.ID] = rec
			}
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}

	p := apply(calls, ids, stored, nil)
	if len(p.ids) == 0 {
		return nil // releaseIdle rolls back
	}
	b = pgx.Batch{}
	b.Queue(s.sql.updateBatch, append(p.rows.args(s.queue), p.keepB, p.keepR)...)
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
	for _, id := range p.ids {
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
