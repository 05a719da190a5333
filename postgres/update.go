package postgres

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/reccache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// updateArg is one Update or Complete call.
type updateArg struct {
	id string
	fn func(*asyncreq.Record) error
	// lease is the lease a Complete call settles if the record it stores
	// is final; nil for Update, and for a lease of another Backend.
	lease *leaseHandle
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

// runUpdates writes a batch of Updates and Completes.
func (s *Backend) runUpdates(ctx context.Context, calls []*call[updateArg, updateRes]) {
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
// locking, on records as read, before it writes the calls still in
// conflict under row locks.
const optimisticRounds = 3

// updateBatch runs calls and sets each call's own outcome (a record, fn's
// error, or errMissing). On failure it returns the error and the calls it
// concerns, none of which was stored; the other calls' outcomes stand.
//
// It writes optimistically first. Each record is taken from the version
// cache with its row version (xmin) if the cache has it; the others are
// read, with theirs, in one round trip. Each fn runs on its record, and one
// UPDATE writes every record whose version is still the one used,
// committing on its own. A record changed in between (or a stale cache
// entry) is not written; its calls run again (fn may be called more than
// once) in the next round, on the record as read. So do the calls whose fn
// refused a cached record (returned an error or panicked), for only fn's
// answer on the record as it is counts. After the first round and
// optimisticRounds more, the calls still in conflict are written in a
// locking transaction (updateLocked), which always finishes. Compared with
// a transaction that holds the rows locked from the read to the commit,
// this saves BEGIN, COMMIT and the row locks' WAL records, and holds no
// lock across a round trip to the client; with the cache, the read too.
func (s *Backend) updateBatch(ctx context.Context, calls []*call[updateArg, updateRes]) ([]*call[updateArg, updateRes], error) {
	for round := range optimisticRounds + 1 {
		again, err := s.updateOptimistic(ctx, calls, round == 0)
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
	ids   []string                    // the records written, sorted
	rows  updateRows                  // their new values, in ids order, and the leases to settle
	final map[string]*asyncreq.Record // per written record: the new value
}

// apply runs each call's fn on the latest version of its record, in
// arrival order for the same record, and returns what is to be written.
// stored holds the records as read or cached, before any fn; versions, when
// not nil, their xmin; cached says which came from the cache. The calls on
// a cached record of which one refused it (fn returned an error or
// panicked) are returned to run again: nothing of that record is written.
func apply(calls []*call[updateArg, updateRes], ids []string, stored map[string]*asyncreq.Record,
	versions map[string]string, cached map[string]bool) (*pending, []*call[updateArg, updateRes]) {
	current := maps.Clone(stored)
	rows := make(map[string]*updateRow, len(ids))
	doubtful := make(map[string]bool)
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
			doubtful[c.arg.id] = cached[c.arg.id]
			continue
		}
		next.ID, next.Owner, next.IdempotencyKey = cur.ID, cur.Owner, cur.IdempotencyKey
		r, err := toUpdateRow(stored[c.arg.id], next)
		if err != nil {
			c.err = err
			doubtful[c.arg.id] = cached[c.arg.id]
			continue
		}
		current[c.arg.id] = next
		rows[c.arg.id] = &r
		c.res.rec = storedCopy(next)
	}
	p := &pending{final: make(map[string]*asyncreq.Record, len(rows))}
	for _, id := range ids {
		if r := rows[id]; r != nil && !doubtful[id] {
			p.ids = append(p.ids, id)
			p.rows.add(r, versions[id])
			p.final[id] = current[id]
		}
	}
	var retry []*call[updateArg, updateRes]
	for _, c := range calls {
		switch {
		case doubtful[c.arg.id]:
			retry = append(retry, c)
		case c.arg.lease != nil && c.res.rec != nil && c.res.rec.State.Final() && p.final[c.arg.id] != nil:
			p.rows.settle(*c.arg.lease, c.arg.id)
		}
	}
	return p, retry
}

// updateOptimistic makes one optimistic round of updateBatch, with records
// from the version cache if useCache. It returns the calls to run again:
// those whose records changed between the read and the write, or whose fn
// refused a cached record; nothing of theirs was stored.
func (s *Backend) updateOptimistic(ctx context.Context, calls []*call[updateArg, updateRes], useCache bool) ([]*call[updateArg, updateRes], error) {
	ids := batchIDs(calls)
	stored := make(map[string]*asyncreq.Record, len(ids)) // as read or cached, before any fn
	versions := make(map[string]string, len(ids))
	cached := make(map[string]bool)
	read := ids
	if useCache {
		read = nil
		for _, id := range ids {
			if e, ok := s.cache.Get(id); ok {
				stored[id], versions[id], cached[id] = e.rec, e.version, true
			} else {
				read = append(read, id)
			}
		}
	}
	if len(read) > 0 {
		if err := s.readVersioned(ctx, read, stored, versions); err != nil {
			return nil, err
		}
	}
	p, again := apply(calls, ids, stored, versions, cached)
	if len(p.ids) == 0 {
		return again, nil
	}
	marks := s.beginWrites(p.ids)
	var written map[string]string
	err := queryGeneric(ctx, s.pool, s.sql.updateVersioned, p.rows.args(s.queue), func(rows pgx.Rows) error {
		var err error
		written, err = collectVersions(rows)
		return err
	})
	if err != nil {
		for _, c := range calls {
			c.res.rec = nil
		}
		s.wrote(p, nil, marks)
		return nil, err
	}
	s.wrote(p, written, marks)
	for _, id := range p.ids {
		if _, ok := written[id]; !ok {
			s.cache.Drop(id)
		}
	}
	for _, c := range calls {
		_, tried := p.final[c.arg.id]
		if _, ok := written[c.arg.id]; tried && !ok {
			again = append(again, c)
		}
	}
	return again, nil
}

// readVersioned reads the records ids, adding them to stored and their
// row versions to versions, and keeps them in the version cache.
func (s *Backend) readVersioned(ctx context.Context, ids []string, stored map[string]*asyncreq.Record, versions map[string]string) error {
	return queryGeneric(ctx, s.pool, s.sql.getManyVersioned, []any{s.queue, ids}, func(rows pgx.Rows) error {
		for rows.Next() {
			var v string
			rec, err := scanRecord(moreColumns{Row: rows, after: []any{&v}})
			if err != nil {
				return err
			}
			stored[rec.ID], versions[rec.ID] = rec, v
			s.cacheRecord(rec, v)
		}
		return nil
	})
}

// collectVersions reads the ids and new row versions an update returns.
func collectVersions(rows pgx.Rows) (map[string]string, error) {
	written := make(map[string]string)
	var id, version string
	_, err := pgx.ForEachRow(rows, []any{&id, &version}, func() error {
		written[id] = version
		return nil
	})
	return written, err
}

// beginWrites notes in the poll cache the writes of ids about to be
// issued, and returns the notes, in ids order.
func (s *Backend) beginWrites(ids []string) []*reccache.PollMark {
	now := time.Now()
	marks := make([]*reccache.PollMark, len(ids))
	for i, id := range ids {
		marks[i] = s.polls.Begin(id, now)
	}
	return marks
}

// wrote records that the records of p in written, a map from id to new
// row version, were committed: it keeps them in the version cache and the
// poll cache and tells their watches. marks are the poll cache's notes of
// the writes (beginWrites of p.ids); a record not written is dropped from
// the poll cache, for the write's outcome may be unknown.
func (s *Backend) wrote(p *pending, written map[string]string, marks []*reccache.PollMark) {
	for i, id := range p.ids {
		v, ok := written[id]
		if !ok {
			s.polls.Changed(id)
			continue
		}
		rec := storedCopy(p.final[id])
		s.cacheRecord(rec, v)
		s.polls.Wrote(id, marks[i], rec)
		s.announce(id)
	}
}

// moreColumns scans a row of recordColumns with other columns before and
// after them.
type moreColumns struct {
	pgx.Row
	before, after []any
}

func (r moreColumns) Scan(dest ...any) error {
	return r.Row.Scan(slices.Concat(r.before, dest, r.after)...)
}

// updateLocked runs calls in one transaction of two round trips: BEGIN
// with the SELECT ... FOR UPDATE of their records, and the UPDATE with
// COMMIT. It sets each call's own outcome (a record, fn's error, or
// errMissing), and returns an error that concerns them all.
func (s *Backend) updateLocked(ctx context.Context, calls []*call[updateArg, updateRes]) (err error) {
	ids := batchIDs(calls)

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer releaseIdle(ctx, conn)

	stored := make(map[string]*asyncreq.Record, len(ids)) // as read, before any fn
	if err := beginGeneric(ctx, conn, s.sql.getManyForUpdate, []any{s.queue, ids}, scanRecordsInto(stored)); err != nil {
		return err
	}

	p, _ := apply(calls, ids, stored, nil, nil)
	if len(p.ids) == 0 {
		return nil // releaseIdle rolls back
	}
	marks := s.beginWrites(p.ids)
	written, err := s.commitLocked(ctx, conn, p)
	if err != nil {
		for _, c := range calls {
			c.res.rec = nil
		}
		s.wrote(p, nil, marks)
		return err
	}
	s.wrote(p, written, marks)
	return nil
}

// commitLocked writes p in the transaction open on conn, which holds its
// records locked, and commits, in one round trip. It returns the ids
// written with their new row versions.
func (s *Backend) commitLocked(ctx context.Context, conn *pgxpool.Conn, p *pending) (map[string]string, error) {
	var b pgx.Batch
	b.Queue(s.sql.updateLocked, p.rows.args(s.queue)...)
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, &b)
	var written map[string]string
	rows, err := br.Query()
	if err == nil {
		written, err = collectVersions(rows)
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil && conn.Conn().PgConn().TxStatus() != 'I' {
		err = errors.New("transaction still open after COMMIT")
	}
	return written, err
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
