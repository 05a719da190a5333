package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/asyncreq/asyncreq"
)

var _ asyncreq.QueueStater = (*Backend)(nil)

// statsSQL counts the jobs of queue $1 in one snapshot: those due (with the
// earliest due time) from the jobs_due index, and those not due split by
// whether they are leased. It is kept here rather than among the hot-path
// statements of store.go, since nothing else runs it.
const statsSQL = `SELECT now(), p.n, p.oldest, d.delayed, d.running
	FROM (SELECT count(*) AS n, min(run_at) AS oldest
			FROM {{s}}.jobs WHERE queue = $1 AND run_at <= now()) AS p,
		(SELECT count(*) FILTER (WHERE lease_token IS NULL) AS delayed,
				count(*) FILTER (WHERE lease_token IS NOT NULL) AS running
			FROM {{s}}.jobs WHERE queue = $1 AND run_at > now()) AS d`

// QueueStats implements asyncreq.QueueStater with one statement on the
// pool, in one snapshot:
//
//   - the jobs due now, counted with the earliest due time from the
//     jobs_due index ((queue, run_at, job_id)): an index-only scan of the
//     range of due jobs, which reads a heap page only where the visibility
//     map is not yet all-visible (the pages of recently written jobs);
//   - the jobs not due, split into delayed and leased ones: an index scan
//     of the range of jobs due later that reads each one's heap row for
//     its lease token, so it costs about one row read per delayed job
//     (leased jobs are at most the workers' capacity).
//
// The counts are exact, not planner estimates; docs/stats.md has figures
// for a million jobs. At is the database's now(). A lease that ran out
// counts as pending at once (its job is due again). Records are not counted
// by state, which would read every retained record: Succeeded, Failed and
// Canceled are asyncreq.Uncounted. Queue is Options.Queue.
func (s *Backend) QueueStats(ctx context.Context) (asyncreq.QueueStats, error) {
	q := strings.ReplaceAll(statsSQL, "{{s}}", pgx.Identifier{s.opts.Schema}.Sanitize())
	st := asyncreq.QueueStats{
		Queue:     s.queue,
		Succeeded: asyncreq.Uncounted,
		Failed:    asyncreq.Uncounted,
		Canceled:  asyncreq.Uncounted,
	}
	var oldest *time.Time
	err := s.pool.QueryRow(ctx, q, s.queue).Scan(&st.At, &st.Pending, &oldest, &st.Delayed, &st.Running)
	if err != nil {
		return asyncreq.QueueStats{}, s.fail(ctx, "queue stats", err)
	}
	if oldest != nil {
		st.OldestPending = *oldest
	}
	return st, nil
}
