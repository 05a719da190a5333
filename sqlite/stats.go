package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/asyncreq/asyncreq"
)

var _ asyncreq.QueueStater = (*Backend)(nil)

// QueueStats implements asyncreq.QueueStater with two reads on the read
// pool, which run beside the writer:
//
//   - the entries due now, counted with their earliest due time from the
//     (queue, due) index alone: a scan of that index's range of due
//     entries, without touching the table;
//   - the entries not due, split into delayed and leased ones: a scan of
//     the index range of entries due later, reading each one's row for its
//     lease token. Leased entries are few (at most the workers' capacity),
//     so this costs about one row read per delayed entry.
//
// docs/stats.md has figures for a million entries. A lease that ran out
// counts as pending at once (its entry is due again). The records are not
// counted by state: that would read every retained record, so Succeeded,
// Failed and Canceled are asyncreq.Uncounted. Queue is Options.Queue.
func (b *Backend) QueueStats(ctx context.Context) (asyncreq.QueueStats, error) {
	if err := b.enter(ctx); err != nil {
		return asyncreq.QueueStats{}, err
	}
	defer b.exit()
	now := b.now()
	s := asyncreq.QueueStats{
		Queue:     b.queue,
		At:        now,
		Succeeded: asyncreq.Uncounted,
		Failed:    asyncreq.Uncounted,
		Canceled:  asyncreq.Uncounted,
	}
	st, err := b.eng.readStmt(ctx, b.sql.statsDue)
	if err != nil {
		return asyncreq.QueueStats{}, readErr(ctx, "stats", err)
	}
	var oldest sql.NullInt64
	if err := st.QueryRowContext(ctx, b.queue, now.UnixNano()).Scan(&s.Pending, &oldest); err != nil {
		return asyncreq.QueueStats{}, readErr(ctx, "stats", err)
	}
	if oldest.Valid {
		s.OldestPending = time.Unix(0, oldest.Int64)
	}
	st, err = b.eng.readStmt(ctx, b.sql.statsNotDue)
	if err != nil {
		return asyncreq.QueueStats{}, readErr(ctx, "stats", err)
	}
	if err := st.QueryRowContext(ctx, b.queue, now.UnixNano()).Scan(&s.Delayed, &s.Running); err != nil {
		return asyncreq.QueueStats{}, readErr(ctx, "stats", err)
	}
	return s, nil
}
