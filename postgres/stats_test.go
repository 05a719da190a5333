package postgres_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// BenchmarkQueueStats measures one QueueStats call on a queue holding a
// million pending jobs, 10,000 delayed and 100 leased ones, written
// straight into the table: first as written (the visibility map not yet
// set, as on a busy table between vacuums), then after VACUUM.
func BenchmarkQueueStats(b *testing.B) {
	const pending, delayed, leased = 1_000_000, 10_000, 100
	pool := newPool(b, 4)
	schema := newSchema(b, pool)
	s := newStoreOn(b, pool, schema, nil)
	ctx := b.Context()
	jobs := pgx.Identifier{schema, "jobs"}.Sanitize()
	start := time.Now()
	_, err := pool.Exec(ctx, `INSERT INTO `+jobs+` (queue, id, run_at)
		SELECT 'default', 'p' || i, now() - interval '1 hour' + i * interval '1 microsecond' FROM generate_series(1, $1) AS i`, pending)
	require.NoError(b, err)
	_, err = pool.Exec(ctx, `INSERT INTO `+jobs+` (queue, id, run_at)
		SELECT 'default', 'd' || i, now() + interval '1 hour' FROM generate_series(1, $1) AS i`, delayed)
	require.NoError(b, err)
	_, err = pool.Exec(ctx, `INSERT INTO `+jobs+` (queue, id, run_at, lease_token)
		SELECT 'default', 'l' || i, now() + interval '1 hour', 't' || i FROM generate_series(1, $1) AS i`, leased)
	require.NoError(b, err)
	b.Logf("filled in %v", time.Since(start))

	st, err := s.QueueStats(ctx)
	require.NoError(b, err)
	require.EqualValues(b, pending, st.Pending)
	require.EqualValues(b, delayed, st.Delayed)
	require.EqualValues(b, leased, st.Running)

	run := func(b *testing.B) {
		for b.Loop() {
			if _, err := s.QueueStats(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("unvacuumed", run)
	_, err = pool.Exec(ctx, `VACUUM (ANALYZE) `+jobs)
	require.NoError(b, err)
	b.Run("vacuumed", run)
}
