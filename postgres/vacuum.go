package postgres

import (
	"context"
	"time"
)

// The jobs table is a queue: every job is inserted, leased (a new row
// version), and deleted within moments, so it holds a few live rows and,
// until VACUUM removes them, every dead version of the jobs before them.
// A claim finds due jobs by the jobs_due index, whose entries for dead
// versions it must step over (and often check in the table), so claims
// grow slower with every job settled since the last VACUUM. Autovacuum
// wakes once a minute at most (autovacuum_naptime), in which a busy queue
// settles a hundred thousand jobs, and may be off altogether. So a Backend
// vacuums the table itself every Options.VacuumJobsAfter jobs it claims:
// VACUUM of a table of a few thousand rows' pages takes milliseconds, and
// takes no lock that claims, acks or inserts wait for. SKIP_LOCKED skips a
// round when another VACUUM (another process's, or autovacuum's) is under
// way on the table. A role that does not own the table gets a warning
// from PostgreSQL, not an error, and nothing is vacuumed.

// vacuumTimeout bounds one VACUUM.
const vacuumTimeout = time.Minute

// claimed counts n jobs claimed towards the next VACUUM of the jobs table.
func (s *Backend) claimed(n int) {
	if s.opts.VacuumJobsAfter <= 0 || n == 0 {
		return
	}
	if s.sinceVacuum.Add(int64(n)) >= int64(s.opts.VacuumJobsAfter) {
		select {
		case s.vacuumKick <- struct{}{}:
		default:
		}
	}
}

// vacuumJobs runs until ctx ends, vacuuming the jobs table whenever
// claimed asks for it.
func (s *Backend) vacuumJobs(ctx context.Context) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.vacuumKick:
		}
		s.sinceVacuum.Store(0)
		vctx, cancel := context.WithTimeout(ctx, vacuumTimeout)
		_, err := s.pool.Exec(vctx, s.sql.vacuumJobs)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("postgres: VACUUM of the jobs table failed; claims slow down until it runs",
				"schema", s.opts.Schema, "error", err)
		}
	}
}
