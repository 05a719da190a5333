package postgres

import (
	"context"
	"time"
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
// So a Backend analyzes its tables itself, once, as soon as each holds a
// few pages of rows but has no statistics yet: the first statistics tell
// the planner that queue has a handful of values, after which the primary
// key is the plan for a record and the jobs_due index for a claim at any
// size, whatever the later statistics are. It checks after
// analyzeFirstCheck, then at doubling intervals up to analyzeMaxCheck, and
// also every analyzeKickRows rows it writes, so that a deployment whose
// first requests come long after its start has its tables analyzed within
// moments of them, not up to analyzeMaxCheck later; it stops once every
// table has statistics.
const (
	analyzeFirstCheck = 250 * time.Millisecond
	analyzeMaxCheck   = 5 * time.Second
	// analyzeMinBytes is the table size from which statistics are worth
	// taking: a few pages, some tens of records or some hundreds of jobs.
	analyzeMinBytes = 4 * 8192
	// analyzeKickRows is how many rows (records and jobs) the Backend
	// writes between two checks it asks for, until every table has
	// statistics: a page of small records.
	analyzeKickRows = 16
)

// rowsAdded counts n records or jobs written, and asks analyzeWhenFilled
// for a check every analyzeKickRows of them until the tables have
// statistics.
func (s *Backend) rowsAdded(n int) {
	if s.planned.Load() || s.sinceCheck.Add(int64(n)) < analyzeKickRows {
		return
	}
	s.sinceCheck.Store(0)
	select {
	case s.analyzeKick <- struct{}{}:
	default:
	}
}

// analyzeWhenFilled runs until ctx ends or every table of the schema that
// the hot statements read has statistics, analyzing each that has grown to
// analyzeMinBytes without any.
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
		done, err := s.analyzeUnplanned(ctx)
		if err != nil && ctx.Err() == nil {
			s.opts.Logger.WarnContext(ctx, "postgres: analyzing tables without statistics failed; run ANALYZE on them, or keep autovacuum on",
				"schema", s.opts.Schema, "err", err)
			return
		}
		if done {
			return
		}
	}
}

// analyzeUnplanned analyzes each table the hot statements read that has
// no statistics yet and has reached analyzeMinBytes, and reports whether
// every one of them has statistics now.
func (s *Backend) analyzeUnplanned(ctx context.Context) (bool, error) {
	qctx, cancel := context.WithTimeout(ctx, analyzeTimeout)
	defer cancel()
	rows, err := s.pool.Query(qctx, s.sql.unanalyzed, s.opts.Schema, analyzeMinBytes)
	if err != nil {
		return false, err
	}
	type table struct {
		name  string
		ready bool
	}
	var tables []table
	for rows.Next() {
		var t table
		if err := rows.Scan(&t.name, &t.ready); err != nil {
			rows.Close()
			return false, err
		}
		tables = append(tables, t)
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	left := len(tables)
	for _, t := range tables {
		if !t.ready {
			continue
		}
		if _, err := s.pool.Exec(qctx, "ANALYZE "+s.sql.schema+"."+t.name); err != nil {
			return false, err
		}
		left--
	}
	return left == 0, nil
}

// analyzeTimeout bounds one check and the ANALYZE it runs.
const analyzeTimeout = time.Minute
