package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// TestBatchStatementsKeepAGenericPlan: the statements that write or read a
// batch of records by an array of ids run with their generic plan, also
// where every batch is small. PostgreSQL would plan them afresh at every
// run there, which took longer than the update itself.
func TestBatchStatementsKeepAGenericPlan(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 1) // one connection: its prepared statements are all of them
	schema := newSchema(t, pool)
	s := newStoreOn(t, pool, schema, nil)
	ctx := t.Context()
	// On a table of some size, as analyzed, a generic plan for an array
	// of ten ids looks dearer than a custom plan for one.
	write(t, 4000, func() error {
		_, err := s.Create(ctx, testRecord("", "", []byte("body")))
		return err
	})
	_, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{schema, "records"}.Sanitize())
	require.NoError(t, err)
	const n = 12
	for range n {
		_, err := s.Accept(ctx, testRecord("", "", []byte("x")))
		require.NoError(t, err)
	}
	var ids []string
	for range n {
		l, err := s.Dequeue(ctx, time.Minute)
		require.NoError(t, err)
		token := asyncreq.NewID()
		_, err = s.Update(ctx, l.ID, func(r *asyncreq.Record) error { return r.Claim(token, 3, time.Now()) })
		require.NoError(t, err)
		_, err = s.Complete(ctx, l, func(r *asyncreq.Record) error { return r.Succeed(token, nil, time.Now()) })
		require.NoError(t, err)
		ids = append(ids, l.ID)
	}
	// A Backend that has cached none of them reads each before its update.
	other := newStoreOn(t, pool, schema, nil)
	for _, id := range ids {
		_, err := other.Update(ctx, id, func(*asyncreq.Record) error { return nil })
		require.NoError(t, err)
	}

	type prepared struct {
		Statement                 string
		GenericPlans, CustomPlans int64
	}
	rows, err := pool.Query(ctx, `SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements
		WHERE statement LIKE '%ANY($2::text[])%'`)
	require.NoError(t, err)
	stmts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[prepared])
	require.NoError(t, err)
	seen := 0
	for _, p := range stmts {
		first := strings.Join(strings.Fields(p.Statement), " ")[:60]
		assert.Zero(t, p.CustomPlans, "%s... planned afresh at %d of its %d runs", first, p.CustomPlans, p.CustomPlans+p.GenericPlans)
		if p.GenericPlans >= n {
			seen++
		}
	}
	require.GreaterOrEqual(t, seen, 2, "the batched update and read of records, each run at least %d times", n)

	// And that plan finds the records by their primary key.
	conn, err := pgx.Connect(ctx, testDSN(t))
	require.NoError(t, err)
	defer func() { _ = conn.Close(context.Background()) }()
	_, err = conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	update := s.JobStatements()["update"]
	_, err = conn.Exec(ctx, "PREPARE up AS "+update)
	require.NoError(t, err)
	rows, err = conn.Query(ctx, "EXPLAIN EXECUTE up("+nullArgs(update)+")")
	require.NoError(t, err)
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, strings.Join(plan, "\n"), "records_pkey", "the generic plan of the update:\n%s", strings.Join(plan, "\n"))
}
