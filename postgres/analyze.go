package postgres

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// A prepared statement's plan is made for the tables as the planner knows
// them then, and pgx prepares each statement once per connection. On
// tables that have never been analyzed, the planner has no statistics:
// every index whose first column is queue looks as good as the primary key
// for finding one record, and a statement first run while the tables were
// empty may keep a plan that reads every record of the queue to find one,
// for the life of the connection. PostgreSQL remakes such plans when the
// table is analyzed, which autovacuum does about a minute after the first
// writes, or never when autovacuum is off. A new deployment under load
// then ran ten times slower than the same one restarted: the restart had
// made its plans on full tables.
//
// So a Backend analyzes its tables itself, as soon as each holds a few
// pages of rows but has no statistics yet: the first statistics tell the
// planner that queue has a handful of values, after which the primary key
// is the plan for a record and the jobs_due index for a claim at any size.
// It checks after analyzeFirstCheck, then at doubling intervals up to
// analyzeMaxCheck, and whenever the rows it has written double (from
// analyzeKickRows on), so that a deployment whose first requests come long
// after its start has its tables analyzed within moments of them.
//
// Once is not enough for records. The Backend reads and writes records in
// batches, by id = ANY(...), and a plan is made for the table's size at
// the time: a generic plan, which PostgreSQL keeps for a prepared
// statement after its fifth run, made while records held a few pages,
// reads all of them for every batch, and stays until the table is analyzed
// again. A fresh schema under load grew from 4 pages to thousands in
// seconds, every batch update a scan of it (a million rows read in a
// 10,000-job run), and autovacuum analyzes it a minute later at the
// earliest. So records is analyzed again each time it has doubled since
// the size pg_class.relpages holds, which any ANALYZE or VACUUM sets (each
// of them, anyone's, also has PostgreSQL plan the statements again), until
// it has reached analyzeStopBytes, from which a batch's plan is the primary
// key's at any later size. Then the checks stop.
const (
	analyzeFirstCheck = 250 * time.Millisecond
	analyzeMaxCheck   = 5 * time.Second
	// analyzeMinBytes is the table size from which statistics are worth
	// taking: a few pages, some tens of records or some hundreds of jobs.
	analyzeMinBytes = 4 * 8192
	// analyzeStopBytes is the size of records from which it is not
	// analyzed again: a thousand pages, some tens of thousands of records.
	analyzeStopBytes = 8 << 20
	// analyzeKickRows is how many rows (records and jobs) the Backend
	// writes before it asks for its first check; it asks again each time
	// the count has doubled, until the checks stop.
	analyzeKickRows = 16
)

// rowsAdded counts n records or jobs written, and asks analyzeWhenFilled
// for a check each time the count has doubled, until the checks stop.
func (s *Backend) rowsAdded(n int) {
	if s.planned.Load() {
		return
	}
	total := s.rowsWritten.Add(int64(n))
	next := s.nextCheck.Load()
	if total < next || !s.nextCheck.CompareAndSwap(next, 2*total) {
		return
	}
	select {
	case s.analyzeKick <- struct{}{}:
	default:
	}
}

// analyzeWhenFilled runs until ctx ends or the tables need no more
// ANALYZE from it (see analyzeDue). The timer's checks stop once every
// table has statistics; the writes' go on.
func (s *Backend) analyzeWhenFilled(ctx context.Context) {
	defer s.wg.Done()
	// Once it returns, for whatever reason, the writes stop counting.
	defer s.planned.Store(true)
	t := time.NewTimer(analyzeFirstCheck)
	defer t.Stop()
	delay := analyzeFirstCheck
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			delay = min(2*delay, analyzeMaxCheck)
			t.Reset(delay)
		case <-s.analyzeKick:
		}
		stats, done, err := s.analyzeDue(ctx)
		if err != nil && ctx.Err() == nil {
			s.opts.Logger.WarnContext(ctx, "postgres: analyzing the tables failed; run ANALYZE on them, or keep autovacuum on",
				"schema", s.opts.Schema, "err", err)
			return
		}
		if done {
			return
		}
		if stats {
			t.Stop()
		}
	}
}

// tableSize is what analyzeDue reads of a table: its size, its size when
// it was last analyzed or vacuumed (relpages), and whether it has
// statistics.
type tableSize struct {
	name          string
	bytes, atLast int64
	stats         bool
}

// due reports whether t is to be analyzed now.
func (t tableSize) due() bool {
	if t.bytes < analyzeMinBytes {
		return false
	}
	return !t.stats || t.name == "records" && t.atLast < analyzeStopBytes && t.bytes >= 2*t.atLast
}

// done reports whether t needs no more ANALYZE from the Backend.
func (t tableSize) done() bool {
	return t.stats && (t.name != "records" || t.atLast >= analyzeStopBytes)
}

// analyzeDue analyzes each table the hot statements read that is due (see
// tableSize.due), and reports whether every one of them has statistics
// now and whether every one is done.
func (s *Backend) analyzeDue(ctx context.Context) (stats, done bool, err error) {
	qctx, cancel := context.WithTimeout(ctx, analyzeTimeout)
	defer cancel()
	rows, err := s.pool.Query(qctx, s.sql.tableSizes, s.opts.Schema)
	if err != nil {
		return false, false, err
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tableSize, error) {
		var t tableSize
		err := r.Scan(&t.name, &t.bytes, &t.atLast, &t.stats)
		return t, err
	})
	if err != nil {
		return false, false, err
	}
	stats, done = true, true
	for _, t := range tables {
		if t.due() {
			if err := s.analyze(qctx, t.name); err != nil {
				return false, false, err
			}
			t.stats, t.atLast = true, t.bytes
		}
		stats = stats && t.stats
		done = done && t.done()
	}
	return stats, done, nil
}

// analyzeTimeout bounds one check and the ANALYZE it runs.
const analyzeTimeout = time.Minute

// analyzeSample is the statistics target of the Backend's own ANALYZEs:
// PostgreSQL samples 300 times as many rows. What the plans of the hot
// statements need is the table's size and that queue has few values,
// which a sample of 3,000 rows gives as well as PostgreSQL's default of
// 30,000 (a target of 100), at a tenth of the cost: records is analyzed
// about ten times while a new deployment's first tens of thousands of
// requests arrive, and at the default target those ANALYZEs took 425 ms
// of PostgreSQL's time in a mixed run of 20,000 (docs/benchmarks.md).
// Columns given a statistics target of their own keep it, and autovacuum's
// ANALYZEs, and anyone else's, use the usual default.
const analyzeSample = 10

// analyze runs ANALYZE on the table name of the schema, with a
// statistics target of analyzeSample.
func (s *Backend) analyze(ctx context.Context, name string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('default_statistics_target', $1, true)", strconv.Itoa(analyzeSample)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "ANALYZE "+s.sql.schema+"."+name)
		return err
	})
}
