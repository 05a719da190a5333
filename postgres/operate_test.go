package postgres_test

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/postgres"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestCountStatesLargeQueue checks CountStates on a queue of more than
// 10,000 records, where it counts pending, running, failed and canceled
// through the partial indexes and estimates succeeded.
func TestCountStatesLargeQueue(t *testing.T) {
	s, pool := newStore(t, nil)
	fillScale(t, pool, s, 20_000)
	c, err := s.CountStates(t.Context())
	require.NoError(t, err)
	require.InEpsilon(t, 19_400, c.Succeeded, 0.05, "the estimate of succeeded records")
	c.Succeeded = 19_400
	require.Equal(t, asyncreq.StateCounts{Pending: 200, Running: 100, Succeeded: 19_400, Failed: 200, Canceled: 100}, c)
}

// TestRequeueKeepsQueuedEntry checks that Requeue of a request canceled
// before a Worker dequeued it reuses the queue entry its submit made
// rather than adding a second, so that it is delivered once.
func TestRequeueKeepsQueuedEntry(t *testing.T) {
	s, pool := newStore(t, nil)
	ctx := t.Context()
	rec := testRecord("alice", "", []byte("x"))
	_, err := s.Accept(ctx, rec)
	require.NoError(t, err)
	_, err = s.Update(ctx, rec.ID, func(r *asyncreq.Record) error { return r.RequestCancel("alice", time.Now()) })
	require.NoError(t, err)

	got, err := asyncreq.RetryRequest(ctx, s, rec.ID)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StatePending, got.State)
	require.True(t, got.Enqueued)

	jobs := pgx.Identifier{s.Schema(), "jobs"}.Sanitize()
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM `+jobs+` WHERE id = $1`, rec.ID).Scan(&n))
	require.Equal(t, 1, n, "the queue holds one entry for the request")

	l, err := s.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, rec.ID, l.ID)
	require.Equal(t, 1, l.Delivery, "the kept entry's deliveries count from zero again")
	require.NoError(t, s.Ack(ctx, l))

	// Canceled again and requeued with no entry left: one is added.
	_, err = s.Update(ctx, rec.ID, func(r *asyncreq.Record) error { return r.RequestCancel("alice", time.Now()) })
	require.NoError(t, err)
	_, err = asyncreq.RetryRequest(ctx, s, rec.ID)
	require.NoError(t, err)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM `+jobs+` WHERE id = $1`, rec.ID).Scan(&n))
	require.Equal(t, 1, n)
}

// TestPurgeFinishedBatches checks that PurgeFinished deletes in batches of
// its limit until none is left, keeping a tombstone with the owner.
func TestPurgeFinishedBatches(t *testing.T) {
	s, pool := newStore(t, nil)
	fillScale(t, pool, s, 2_000)
	ctx := t.Context()
	// Every final record of the fill was last changed before now; there
	// are 1,940 succeeded, 20 failed and 10 canceled.
	total := 0
	for {
		n, err := s.PurgeFinished(ctx, time.Now(), 500, true)
		require.NoError(t, err)
		require.LessOrEqual(t, n, 500)
		total += n
		if n < 500 {
			break
		}
	}
	require.Equal(t, 1_970, total)
	c, err := s.CountStates(ctx)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateCounts{Pending: 20, Running: 10}, c)
	var tombstones int
	tomb := pgx.Identifier{s.Schema(), "tombstones"}.Sanitize()
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM `+tomb+` WHERE owner LIKE 'owner%'`).Scan(&tombstones))
	require.Equal(t, 1_970, tombstones)
}

// TestClaimIsHOT checks the choice of migrations/0005_list.sql: no index
// names a column that a Worker's claim changes, so the claim (pending to
// running) is a heap-only update, which adds no index entry; the outcome
// changes expires_at, which records_expires_at indexes, and is not.
func TestClaimIsHOT(t *testing.T) {
	pool := newPool(t, 1) // one connection: the statistics flushed below are its own
	s := newStoreOn(t, pool, newSchema(t, pool), nil)
	ctx := t.Context()
	rec := testRecord("", "", []byte("x"))
	_, err := s.Accept(ctx, rec)
	require.NoError(t, err)
	l, err := s.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	token := asyncreq.NewID()
	updates := func() (n, hot int64) {
		t.Helper()
		_, err := pool.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
		require.NoError(t, err)
		err = pool.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
			WHERE schemaname = $1 AND relname = 'records'`, s.Schema()).Scan(&n, &hot)
		require.NoError(t, err)
		return n, hot
	}
	n0, hot0 := updates()
	_, err = s.Update(ctx, rec.ID, func(r *asyncreq.Record) error { return r.Claim(token, 3, time.Now()) })
	require.NoError(t, err)
	n, hot := updates()
	require.Equal(t, [2]int64{1, 1}, [2]int64{n - n0, hot - hot0}, "the claim is one heap-only update")
	_, err = s.Complete(ctx, l, func(r *asyncreq.Record) error { return r.Succeed(token, nil, time.Now()) })
	require.NoError(t, err)
	n, hot = updates()
	require.Equal(t, [2]int64{2, 1}, [2]int64{n - n0, hot - hot0}, "the outcome is not heap-only")
}

// TestMigrateListIndexesBuiltBeforehand follows the procedure the comment
// of migrations/0005_list.sql gives for a large table: the listing
// indexes built beforehand with CREATE INDEX CONCURRENTLY, then Migrate,
// which finds them and records the version.
func TestMigrateListIndexesBuiltBeforehand(t *testing.T) {
	s, pool := newStore(t, nil)
	ctx := t.Context()
	schema := pgx.Identifier{s.Schema()}.Sanitize()
	// Back to version 4, records in the table.
	fillScale(t, pool, s, 1_000)
	for _, index := range []string{"records_created", "records_owner_created", "records_live", "records_erred"} {
		_, err := pool.Exec(ctx, `DROP INDEX `+schema+`.`+index)
		require.NoError(t, err)
	}
	_, err := pool.Exec(ctx, `DELETE FROM `+schema+`.schema_migrations WHERE version = 5`)
	require.NoError(t, err)

	sql, err := os.ReadFile("migrations/0005_list.sql")
	require.NoError(t, err)
	built := 0
	for _, stmt := range strings.Split(string(sql), ";") {
		stmt = strings.TrimSpace(stmt)
		if i := strings.Index(stmt, "CREATE INDEX IF NOT EXISTS"); i >= 0 {
			stmt = strings.Replace(stmt[i:], "CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1)
			_, err := pool.Exec(ctx, strings.ReplaceAll(stmt, "{{schema}}", schema))
			require.NoError(t, err, stmt)
			built++
		}
	}
	require.Equal(t, 4, built)
	require.NoError(t, postgres.Migrate(ctx, pool, &postgres.Options{Schema: s.Schema()}))
	var v int
	require.NoError(t, pool.QueryRow(ctx, `SELECT max(version) FROM `+schema+`.schema_migrations`).Scan(&v))
	require.Equal(t, postgres.SchemaVersion(), v)
	page, err := s.List(ctx, asyncreq.ListQuery{State: asyncreq.StateFailed, Limit: 5})
	require.NoError(t, err)
	require.Len(t, page.Records, 5)
}

func TestNewWarnsOfASmallPool(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	small := newPool(t, 4)
	newStoreOn(t, small, newSchema(t, small), &postgres.Options{Logger: log})
	require.Contains(t, buf.String(), "min_pool_size=9", "a pool of 4 is below the default MinPoolSize")
	require.Contains(t, buf.String(), "max_conns=4")

	buf.Reset()
	big := newPool(t, postgres.MinPoolSize(nil))
	newStoreOn(t, big, newSchema(t, big), &postgres.Options{Logger: log})
	require.NotContains(t, buf.String(), "pool is smaller", "a pool of MinPoolSize gets no warning")
	require.Equal(t, int32(3*4+4+2), postgres.MinPoolSize(&postgres.Options{Committers: 4}))
	require.Equal(t, int32(3*1+1+2), postgres.MinPoolSize(&postgres.Options{Readers: 1}))
}
