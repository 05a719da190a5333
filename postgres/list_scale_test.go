package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/postgres"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// scaleRecords is how many records the listing's scale test and benchmarks
// fill their table with.
const scaleRecords = 1_000_000

// scaleOwners is how many owners the scale table's records are spread
// over: a prime, so that every owner has records in every state.
const scaleOwners = 97

// fillScale fills the records table of s with n records in one INSERT ...
// SELECT from generate_series: record g (1..n) is created g/2 seconds
// before now, so pairs of records share a creation time; every tenth has
// an id of the old 26-character form; the owners are owner0..owner96 in
// turn; per thousand, 10 are pending, 5 running, 10 failed, 5 canceled
// and the rest succeeded, the final ones with an expiry and the failed and
// canceled ones with an error, as the lifecycle leaves them. Then it
// vacuums and analyzes the table, as autovacuum would have.
func fillScale(tb testing.TB, pool *pgxpool.Pool, s *postgres.Backend, n int) {
	tb.Helper()
	ctx := context.Background()
	records := pgx.Identifier{s.Schema(), "records"}.Sanitize()
	start := time.Now()
	_, err := pool.Exec(ctx, `INSERT INTO `+records+` (queue, id, owner, state, enqueued, method, url,
			content_type, body, attempts, lease_token, result, result_body, error, created_at, updated_at,
			retention_ns, tombstone_ttl_ns, expires_at)
		SELECT $1,
			CASE WHEN g % 10 = 0 THEN lpad(g::text, 26, '0') ELSE '0' || lpad(g::text, 29, '0') END,
			'owner' || (g % `+fmt.Sprint(scaleOwners)+`), st, true, 'POST', '/jobs', 'application/json',
			'\x7b7d'::bytea, CASE WHEN st = 'pending' THEN 0 ELSE 1 END,
			CASE WHEN st = 'running' THEN 'token' ELSE '' END,
			CASE WHEN st = 'succeeded' THEN '{"status_code":200}'::jsonb END,
			CASE WHEN st = 'succeeded' THEN '\x6f6b'::bytea END,
			CASE WHEN st IN ('failed', 'canceled') THEN '{"status":500}'::jsonb END,
			ts, ts + interval '1 second', 86400000000000, 86400000000000,
			CASE WHEN st IN ('succeeded', 'failed', 'canceled') THEN ts + interval '1 day 1 second' END
		FROM (SELECT g, $2::timestamptz - (g / 2) * interval '1 second' AS ts,
				CASE WHEN g % 1000 < 10 THEN 'pending' WHEN g % 1000 < 15 THEN 'running'
					WHEN g % 1000 < 25 THEN 'failed' WHEN g % 1000 < 30 THEN 'canceled'
					ELSE 'succeeded' END AS st
			FROM generate_series(1, $3::int) AS g) AS x`,
		s.Queue(), time.Now(), n)
	require.NoError(tb, err)
	filled := time.Since(start)
	_, err = pool.Exec(ctx, `VACUUM (ANALYZE) `+records)
	require.NoError(tb, err)
	tb.Logf("filled %d records in %v, vacuumed in %v", n, filled.Round(time.Millisecond), (time.Since(start) - filled).Round(time.Millisecond))
}

// scaleStore returns a Backend on a fresh schema holding scaleRecords
// records (see fillScale), skipping under -short.
func scaleStore(tb testing.TB) (*postgres.Backend, *pgxpool.Pool) {
	tb.Helper()
	testDSN(tb)
	if testing.Short() {
		tb.Skipf("fills a table of %d records (about a minute): not under -short", scaleRecords)
	}
	s, pool := newStore(tb, nil)
	fillScale(tb, pool, s, scaleRecords)
	return s, pool
}

// listFilters are the filter combinations whose pages the scale test and
// benchmark check.
var listFilters = []struct {
	name string
	q    asyncreq.ListQuery
}{
	{"none", asyncreq.ListQuery{}},
	{"state=pending", asyncreq.ListQuery{State: asyncreq.StatePending}},
	{"state=running", asyncreq.ListQuery{State: asyncreq.StateRunning}},
	{"state=succeeded", asyncreq.ListQuery{State: asyncreq.StateSucceeded}},
	{"state=failed", asyncreq.ListQuery{State: asyncreq.StateFailed}},
	{"state=canceled", asyncreq.ListQuery{State: asyncreq.StateCanceled}},
	{"owner", asyncreq.ListQuery{Owner: "owner7"}},
	{"owner+state=failed", asyncreq.ListQuery{Owner: "owner7", State: asyncreq.StateFailed}},
	{"owner+state=pending", asyncreq.ListQuery{Owner: "owner7", State: asyncreq.StatePending}},
	{"owner+state=succeeded", asyncreq.ListQuery{Owner: "owner7", State: asyncreq.StateSucceeded}},
}

// planNode is the part of a node of EXPLAIN (FORMAT JSON) the test reads.
type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	IndexName    string     `json:"Index Name"`
	Plans        []planNode `json:"Plans"`
}

// walk calls f on n and every node below it.
func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}

// explain returns the plan of sql with args, planned generically (as a
// prepared statement's plan may be after five runs) when generic is set.
func explain(t *testing.T, pool *pgxpool.Pool, sql string, args []any, generic bool) planNode {
	t.Helper()
	ctx := context.Background()
	var plan []struct {
		Plan planNode `json:"Plan"`
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		mode := "force_custom_plan"
		if generic {
			mode = "force_generic_plan"
		}
		if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = "+mode); err != nil {
			return err
		}
		var raw []byte
		if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&raw); err != nil {
			return err
		}
		return json.Unmarshal(raw, &plan)
	})
	require.NoError(t, err)
	require.Len(t, plan, 1)
	return plan[0].Plan
}

// TestListPlansAtScale checks on a table of a million records that the
// page of 50 newest of every filter combination, first and later, is an
// index scan of records without a Sort node and without a sequential scan
// of records, in a custom and in a generic plan; and that the pages list
// what an ORDER BY of the whole table gives, the old 26-character ids
// among them. The fill takes about half a minute; it is skipped under
// -short.
func TestListPlansAtScale(t *testing.T) {
	s, pool := scaleStore(t)
	ctx := t.Context()
	// A cursor in the middle of the table, where a record of each state
	// and owner precedes it.
	mid := asyncreq.ListCursor{CreatedAt: time.Now().Add(-scaleRecords / 4 * time.Second).Truncate(time.Microsecond), ID: strings.Repeat("0", 26)}
	for _, f := range listFilters {
		for _, cursor := range []string{"", mid.String()} {
			q := f.q
			q.Cursor, q.Limit = cursor, 50
			sql, args, err := s.ListStatement(q)
			require.NoError(t, err)
			for _, generic := range []bool{false, true} {
				name := fmt.Sprintf("%s cursor=%v generic=%v", f.name, cursor != "", generic)
				plan := explain(t, pool, sql, args, generic)
				var indexScans []string
				plan.walk(func(n planNode) {
					require.NotContains(t, []string{"Sort", "Incremental Sort"}, n.NodeType, "%s: the page must not be sorted", name)
					if n.RelationName == "records" {
						require.Contains(t, []string{"Index Scan", "Index Only Scan"}, n.NodeType, "%s: records must be read through an index", name)
						indexScans = append(indexScans, n.IndexName)
					}
				})
				require.NotEmpty(t, indexScans, "%s: no index scan of records", name)
				t.Logf("%s: %s", name, strings.Join(indexScans, ", "))
			}
		}
	}

	// The pages list the records in the order of the whole table's ORDER
	// BY, old ids and ties in creation time included.
	requireListOrder(t, s, pool, 50, 3)

	// The counts are exact but for succeeded, an estimate within 5%.
	c, err := s.CountStates(ctx)
	require.NoError(t, err)
	per := int64(scaleRecords / 1000)
	require.InEpsilon(t, 970*per, c.Succeeded, 0.05, "the estimate of succeeded records")
	c.Succeeded = 970 * per
	require.Equal(t, asyncreq.StateCounts{Pending: 10 * per, Running: 5 * per, Succeeded: 970 * per, Failed: 10 * per, Canceled: 5 * per}, c)
}

// requireListOrder checks, for every filter of listFilters, that pages
// pages of size records of s list what the table's own ORDER BY gives,
// ids compared as bytes, and that those of no filter hold ids of the old
// 26-character form.
func requireListOrder(t *testing.T, s *postgres.Backend, pool *pgxpool.Pool, size, pages int) {
	t.Helper()
	ctx := t.Context()
	records := pgx.Identifier{s.Schema(), "records"}.Sanitize()
	for _, f := range listFilters {
		where := "queue = $1"
		args := []any{s.Queue()}
		if f.q.Owner != "" {
			args = append(args, f.q.Owner)
			where += fmt.Sprintf(" AND owner = $%d", len(args))
		}
		if f.q.State != "" {
			args = append(args, string(f.q.State))
			where += fmt.Sprintf(" AND state = $%d", len(args))
		}
		args = append(args, size*pages)
		rows, err := pool.Query(ctx, `SELECT id FROM `+records+` WHERE `+where+`
			ORDER BY created_at DESC, convert_to(id, 'UTF8') DESC LIMIT $`+fmt.Sprint(len(args)), args...)
		require.NoError(t, err)
		want, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		if want == nil {
			want = []string{}
		}
		got := []string{}
		q := f.q
		q.Limit = size
		for range pages {
			page, err := s.List(ctx, q)
			require.NoError(t, err)
			for _, r := range page.Records {
				got = append(got, r.ID)
			}
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
		require.Equal(t, want, got, "%s: %d pages of %d", f.name, pages, size)
		legacy := 0
		for _, id := range got {
			if len(id) == 26 {
				legacy++
			}
		}
		if f.q.State == "" && f.q.Owner == "" {
			require.NotZero(t, legacy, "the pages hold ids of the old form")
		}
	}
}

// TestListOrderWithOldIDs pages through the whole of a table of 3,000
// records (see fillScale), a tenth of them with ids of the old
// 26-character form and pairs sharing a creation time, with every filter.
func TestListOrderWithOldIDs(t *testing.T) {
	s, pool := newStore(t, nil)
	fillScale(t, pool, s, 3_000)
	requireListOrder(t, s, pool, 37, 100)
}

// BenchmarkListScale measures List's page of 50 newest on a table of a
// million records (see fillScale), for each filter combination: the first
// page, and a page from a cursor a quarter of the way down. It also
// measures CountStates, and the plain GROUP BY it replaces.
func BenchmarkListScale(b *testing.B) {
	s, pool := scaleStore(b)
	ctx := context.Background()
	mid := asyncreq.ListCursor{CreatedAt: time.Now().Add(-scaleRecords / 4 * time.Second).Truncate(time.Microsecond), ID: strings.Repeat("0", 26)}
	for _, f := range listFilters {
		for _, c := range []struct {
			name, cursor string
		}{{"first", ""}, {"deep", mid.String()}} {
			b.Run(f.name+"/"+c.name, func(b *testing.B) {
				q := f.q
				q.Cursor, q.Limit = c.cursor, 50
				for b.Loop() {
					page, err := s.List(ctx, q)
					if err != nil {
						b.Fatal(err)
					}
					if len(page.Records) != 50 {
						b.Fatalf("page of %d records, want 50", len(page.Records))
					}
				}
			})
		}
	}
	b.Run("CountStates", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.CountStates(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GroupByState", func(b *testing.B) {
		records := pgx.Identifier{s.Schema(), "records"}.Sanitize()
		for b.Loop() {
			rows, err := pool.Query(ctx, `SELECT state, count(*) FROM `+records+` WHERE queue = $1 GROUP BY state`, s.Queue())
			if err != nil {
				b.Fatal(err)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
