package postgres

import (
	"context"
	"errors"

	"github.com/asyncreq/asyncreq"
	"github.com/jackc/pgx/v5"
)

// runGets reads the records of a batch of Gets (see Options.Readers): a
// lone Get by its primary key, several in one statement. An id asked for
// twice is read once, and each caller gets a copy of its own. An id with
// no record is looked up among the tombstones.
func (s *Backend) runGets(ctx context.Context, calls []*call[string, *asyncreq.Record]) {
	ctx, cancel := context.WithTimeout(ctx, batchTimeout)
	defer cancel()
	found, err := s.readRecords(ctx, calls)
	if err != nil {
		err = batchErr("get", err)
		for _, c := range calls {
			c.err = err
		}
		return
	}
	given := make(map[string]bool, len(calls))
	for _, c := range calls {
		rec, ok := found[c.arg]
		switch {
		case !ok:
			c.err = s.missing(ctx, c.arg)
		case given[c.arg]:
			c.res = rec.Clone()
		default:
			c.res, given[c.arg] = rec, true
		}
	}
}

// scanRecordsInto returns a function that reads rows of records into m,
// by id.
func scanRecordsInto(m map[string]*asyncreq.Record) func(pgx.Rows) error {
	return func(rows pgx.Rows) error {
		for rows.Next() {
			rec, err := scanRecord(rows)
			if err != nil {
				return err
			}
			m[rec.ID] = rec
		}
		return nil
	}
}

// readRecords reads the records the calls name, by id.
func (s *Backend) readRecords(ctx context.Context, calls []*call[string, *asyncreq.Record]) (map[string]*asyncreq.Record, error) {
	found := make(map[string]*asyncreq.Record, len(calls))
	if len(calls) == 1 {
		rec, err := scanRecord(s.pool.QueryRow(ctx, s.sql.get, s.queue, calls[0].arg))
		if errors.Is(err, pgx.ErrNoRows) {
			return found, nil
		}
		if err != nil {
			return nil, err
		}
		found[rec.ID] = rec
		return found, nil
	}
	ids := make([]string, 0, len(calls))
	seen := make(map[string]bool, len(calls))
	for _, c := range calls {
		if !seen[c.arg] {
			seen[c.arg] = true
			ids = append(ids, c.arg)
		}
	}
	if err := queryGeneric(ctx, s.pool, s.sql.getMany, []any{s.queue, ids}, scanRecordsInto(found)); err != nil {
		return nil, err
	}
	return found, nil
}
