package postgres_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/postgres"
)

// TestJobsTableVacuumed: a Backend vacuums its jobs table after every
// VacuumJobsAfter jobs it claims, whether or not autovacuum runs, so that
// the dead versions of leased and settled jobs do not pile up in front of
// the claims; with a negative VacuumJobsAfter it never does.
func TestJobsTableVacuumed(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 16)
	schema := newSchema(t, pool)
	s := newStoreOn(t, pool, schema, &postgres.Options{VacuumJobsAfter: 50})
	never := newStoreOn(t, pool, schema, &postgres.Options{Queue: "never", VacuumJobsAfter: -1})
	ctx := t.Context()
	vacuums := func() int64 {
		var n int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT vacuum_count FROM pg_stat_user_tables
			WHERE schemaname = $1 AND relname = 'jobs'`, schema).Scan(&n))
		return n
	}
	settle := func(b *postgres.Backend, n int) {
		for range n {
			require.NoError(t, b.Enqueue(ctx, asyncreq.NewID(), 0))
			ls, err := b.DequeueBatch(ctx, 1, time.Minute)
			require.NoError(t, err)
			for _, l := range ls {
				require.NoError(t, b.Ack(ctx, l))
			}
		}
	}

	settle(never, 120)
	time.Sleep(200 * time.Millisecond)
	require.Zero(t, vacuums(), "a Backend with a negative VacuumJobsAfter vacuumed")

	settle(s, 120)
	require.Eventually(t, func() bool { return vacuums() >= 1 }, 10*time.Second, 20*time.Millisecond,
		"no VACUUM of the jobs table after 120 claims with VacuumJobsAfter 50")
}
