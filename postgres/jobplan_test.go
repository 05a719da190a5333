package postgres_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestJobPlansNeedNoStatistics: the jobs table is a queue, empty one
// moment and full the next, so its statistics, taken by autovacuum or by
// the Backend, may say it has no rows while it holds thousands. The plans
// made then must still find a job by its primary key, and the due jobs by
// jobs_due under the queue: a plan that scanned every leased job for each
// Ack, or every job for each claim, made a million-record store drain at
// 50 jobs/s. Each statement's generic plan is checked with the table's
// statistics saying it is empty and its pages full of rows.
func TestJobPlansNeedNoStatistics(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, nil)
	ctx := t.Context()
	jobs := pgx.Identifier{s.Schema(), "jobs"}.Sanitize()
	_, err := pool.Exec(ctx, "INSERT INTO "+jobs+" (queue, id, run_at) SELECT 'default', 'x' || i, now() FROM generate_series(1, 5000) AS i")
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "DELETE FROM "+jobs)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "ANALYZE "+jobs)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "INSERT INTO "+jobs+" (queue, id, run_at) SELECT 'default', 'y' || i, now() + interval '1 minute' FROM generate_series(1, 5000) AS i")
	require.NoError(t, err)
	var tuples float64
	require.NoError(t, pool.QueryRow(ctx, "SELECT reltuples FROM pg_class WHERE oid = $1::regclass", jobs).Scan(&tuples))
	require.Zero(t, tuples, "the statistics say the table is empty")

	conn, err := pgx.Connect(ctx, testDSN(t))
	require.NoError(t, err)
	defer func() { _ = conn.Close(context.Background()) }()
	_, err = conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	for name, stmt := range s.JobStatements() {
		_, err := conn.Exec(ctx, "PREPARE "+name+" AS "+stmt)
		require.NoError(t, err, name)
		nulls := nullArgs(stmt)
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rows, err := conn.Query(qctx, "EXPLAIN EXECUTE "+name+"("+nulls+")")
		require.NoError(t, err, name)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		cancel()
		require.NoError(t, err, name)
		checkJobScans(t, name, lines)
	}
}

// nullArgs returns the arguments of an EXECUTE of stmt, NULL for each of
// its parameters.
func nullArgs(stmt string) string {
	n := 0
	for _, m := range regexp.MustCompile(`\$(\d+)`).FindAllStringSubmatch(stmt, -1) {
		k, _ := strconv.Atoi(m[1])
		n = max(n, k)
	}
	return strings.TrimSuffix(strings.Repeat("NULL, ", n), ", ")
}

// checkJobScans fails t if a plan scans jobs other than by its primary
// key with a condition on job_id, or by jobs_due with one on the queue.
func checkJobScans(t *testing.T, name string, lines []string) {
	t.Helper()
	plan := strings.Join(lines, "\n")
	for i, l := range lines {
		var want string
		switch {
		case strings.Contains(l, "Seq Scan on jobs"):
			t.Errorf("%s scans the whole jobs table:\n%s", name, plan)
			continue
		case strings.Contains(l, "jobs_pkey"):
			want = "Index Cond: (job_id = "
		case strings.Contains(l, "jobs_due"):
			want = "Index Cond: ((queue = "
		default:
			continue
		}
		if i+1 >= len(lines) || !strings.Contains(lines[i+1], want) {
			t.Errorf("%s scans %s without %q:\n%s", name, strings.TrimSpace(l), want, plan)
		}
	}
}
