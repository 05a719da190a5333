package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq/postgres"
)

// TestPlansMadeOnEmptyTablesAreRemade: a statement prepared while the
// tables were empty, as every pgx connection of a new deployment prepares
// its statements, plans a record's lookup as a scan of the queue's records.
// The Backend analyzes its tables once they hold rows, which makes
// PostgreSQL plan the statement again, by the primary key.
func TestPlansMadeOnEmptyTablesAreRemade(t *testing.T) {
	t.Parallel()
	s, schema, _ := freshBackend(t)
	ctx := t.Context()
	plan := emptyTablesLookupPlan(t, schema)

	write(t, 400, func() error {
		_, err := s.Create(ctx, testRecord("", "", []byte("body")))
		return err
	})
	require.Eventually(t, func() bool { return strings.Contains(plan(), "records_pkey") }, 20*time.Second, 100*time.Millisecond,
		"the lookup prepared on empty tables is still planned without the primary key")
}

// TestTablesFilledLateAreAnalyzedAtOnce: a deployment whose first requests
// come long after it started, when the Backend's own checks for tables to
// analyze have spread out to every analyzeMaxCheck (5s), gets its tables
// analyzed, and its plans remade, within moments of the writes, not at the
// next check: the writes ask for one.
func TestTablesFilledLateAreAnalyzedAtOnce(t *testing.T) {
	t.Parallel()
	s, schema, _ := freshBackend(t)
	ctx := t.Context()
	plan := emptyTablesLookupPlan(t, schema)

	// The checks come at 0.25, 0.75, 1.75 and 3.75s after the start, then
	// at 7.75s: writes at 4s would wait for that one.
	time.Sleep(4 * time.Second)
	// The writes ask for checks at 16, 32, ..., 512 rows: the table has
	// grown past a few pages by the last.
	write(t, 1000, acceptOne(ctx, s))
	require.Eventually(t, func() bool { return strings.Contains(plan(), "records_pkey") }, 2*time.Second, 20*time.Millisecond,
		"the tables were not analyzed within 2s of being filled")
}

// TestRecordsAnalyzedAgainAsTheyGrow: a batch's lookup of records
// (id = ANY(...)), planned generic while the table was small, reads the
// whole table; the Backend analyzes records again as it grows, which
// makes PostgreSQL plan the lookup again, by the primary key.
func TestRecordsAnalyzedAgainAsTheyGrow(t *testing.T) {
	t.Parallel()
	s, schema, pool := freshBackend(t)
	ctx := t.Context()
	// Analyzed while it holds a few records, below the size from which
	// the Backend analyzes it itself, so that no ANALYZE of the Backend's
	// races with this one: the statistics are those of a small table.
	write(t, 40, acceptOne(ctx, s))
	_, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{schema, "records"}.Sanitize())
	require.NoError(t, err)

	plan := manyLookupPlan(t, schema)
	require.NotContains(t, plan(), "records_pkey", "analyzed small, this PostgreSQL plans a batch's lookup without the primary key: the case this test is about")
	write(t, 6000, acceptOne(ctx, s))
	require.Eventually(t, func() bool { return strings.Contains(plan(), "records_pkey") }, 10*time.Second, 20*time.Millisecond,
		"the batch's lookup prepared on a small table is still planned without the primary key")
}

// freshBackend returns a Backend on a schema of its own, the schema, and
// the Backend's pool.
func freshBackend(t *testing.T) (*postgres.Backend, string, *pgxpool.Pool) {
	pool := newPool(t, 8)
	schema := newSchema(t, pool)
	return newStoreOn(t, pool, schema, nil), schema, pool
}

// emptyTablesLookupPlan is lookupPlan on schema's empty tables, where it
// is not the primary key's.
func emptyTablesLookupPlan(t *testing.T, schema string) func() string {
	plan := lookupPlan(t, schema)
	require.NotContains(t, plan(), "records_pkey", "on empty tables, this PostgreSQL plans a lookup by another index: the case this test is about")
	return plan
}

// write calls one n times, from 8 goroutines at once.
func write(t *testing.T, n int, one func() error) {
	t.Helper()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range n / 8 {
				if err := one(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// acceptOne returns a function that accepts one new record on s.
func acceptOne(ctx context.Context, s *postgres.Backend) func() error {
	return func() error {
		_, err := s.Accept(ctx, testRecord("", "", []byte("body")))
		return err
	}
}

// manyLookupPlan is lookupPlan for a batch's lookup of records, by
// id = ANY(...).
func manyLookupPlan(t *testing.T, schema string) func() string {
	return preparedPlan(t, "lookup(text, text[]) AS SELECT * FROM "+pgx.Identifier{schema}.Sanitize()+
		".records WHERE queue = $1 AND id = ANY($2)", "lookup('default', '{x,y}')")
}

// lookupPlan returns a function that explains the lookup of a record by id
// in schema, prepared now with a generic plan on a connection of its own,
// as a pgx connection of a new deployment prepares it.
func lookupPlan(t *testing.T, schema string) func() string {
	return preparedPlan(t, "lookup(text, text) AS SELECT * FROM "+pgx.Identifier{schema}.Sanitize()+
		".records WHERE queue = $1 AND id = $2", "lookup('default', 'x')")
}

// preparedPlan prepares stmt (name(types) AS query) with a generic plan on
// a connection of its own, and returns a function that explains exec
// (name(arguments)).
func preparedPlan(t *testing.T, stmt, exec string) func() string {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, testDSN(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	// pgx's statement cache prepares each statement once; after five runs
	// PostgreSQL keeps one generic plan for it if that plan costs no more.
	_, err = conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "PREPARE "+stmt)
	require.NoError(t, err)
	return func() string {
		rows, err := conn.Query(ctx, "EXPLAIN EXECUTE "+exec)
		require.NoError(t, err)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return strings.Join(lines, "\n")
	}
}

// TestOwnAnalyzeSamplesFewRows: the Backend's own ANALYZE of a new table
// takes a small sample (a statistics target of 10), as its only aim is to
// give the planner the table's size and the few values of queue: the
// histogram of created_at, of distinct values in every row, has 11 bounds
// at most, where PostgreSQL's default target gives it up to 101.
func TestOwnAnalyzeSamplesFewRows(t *testing.T) {
	t.Parallel()
	s, schema, pool := freshBackend(t)
	ctx := t.Context()
	// Autovacuum's ANALYZE, at the server's default target, must not come
	// first where autovacuum runs.
	_, err := pool.Exec(ctx, "ALTER TABLE "+pgx.Identifier{schema, "records"}.Sanitize()+" SET (autovacuum_enabled = false)")
	require.NoError(t, err)
	write(t, 600, acceptOne(ctx, s))
	var bounds int
	require.Eventually(t, func() bool {
		err := pool.QueryRow(ctx, `SELECT coalesce(array_length(histogram_bounds, 1), 0) FROM pg_stats
			WHERE schemaname = $1 AND tablename = 'records' AND attname = 'created_at'`, schema).Scan(&bounds)
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "records was not analyzed")
	require.Positive(t, bounds)
	require.LessOrEqual(t, bounds, 11)
}
