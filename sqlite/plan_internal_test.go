package sqlite

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// queryPlan returns the lines of SQLite's plan for q, run on the read pool.
func queryPlan(t *testing.T, b *Backend, q string) []string {
	t.Helper()
	args := make([]any, maxParam(q))
	for i := range args {
		args[i] = int64(i + 1)
	}
	rows, err := b.eng.rdb.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q, args...)
	require.NoError(t, err)
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, notUsed int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &notUsed, &detail))
		lines = append(lines, detail)
	}
	require.NoError(t, rows.Err())
	return lines
}

// fillFinished stores n finished records in b, expiring a day from now.
func fillFinished(t *testing.T, b *Backend, n int) {
	t.Helper()
	now := time.Now()
	for done := 0; done < n; {
		k := min(1000, n-done)
		require.NoError(t, b.eng.do(t.Context(), func(tx *wtx) error {
			for range k {
				rec := expiredRecord(now)
				rec.ExpiresAt = now.Add(24 * time.Hour)
				enc, err := encodeRecord(rec)
				if err != nil {
					return err
				}
				if _, err := tx.exec(b.sql.insertRecord, b.queue, rec.ID, rec.Owner, nil, string(rec.State), 1,
					rec.CreatedAt.UnixNano(), rec.ExpiresAt.UnixNano(), int64(rec.TombstoneTTL), enc.data,
					enc.body, enc.resultBody, idKey(rec.ID), rec.UpdatedAt.UnixNano()); err != nil {
					return err
				}
			}
			return nil
		}, nil))
		done += k
	}
}

// TestHotQueriesUseIndexes: no statement the Backend runs scans a table:
// each finds its rows through an index (or the primary key), so its cost
// does not grow with the finished records a database retains. It is
// checked on a database of finished records, without statistics and again
// after ANALYZE, which can change the planner's mind.
func TestHotQueriesUseIndexes(t *testing.T) {
	b, err := Open(t.Context(), filepath.Join(t.TempDir(), "plan.db"), nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	fillFinished(t, b, 2000)
	tables := regexp.MustCompile(`\b` + regexp.QuoteMeta(b.prefix) + `(records|queue|tombstones)\b`)
	byID := map[string]bool{"getRecord": true, "recordExists": true, "updateRecord": true, "updateRecordAll": true, "deleteRecord": true}

	for _, analyzed := range []bool{false, true} {
		if analyzed {
			require.NoError(t, b.eng.do(t.Context(), func(tx *wtx) error { return tx.execScript("ANALYZE") }, nil))
		}
		for _, s := range statements(b.sql) {
			name, q := s.name, s.sql
			plan := queryPlan(t, b, q)
			for _, line := range plan {
				if !tables.MatchString(line) {
					continue
				}
				require.True(t, strings.HasPrefix(line, "SEARCH "), "%s (analyzed %v) reads a table without an index: %q\n%s", name, analyzed, line, q)
			}
			if byID[name] {
				require.Contains(t, strings.Join(plan, "\n"), "USING INDEX "+b.prefix+"records_id_key (id_key=?)",
					"%s (analyzed %v) finds the record by its id key", name, analyzed)
			}
		}
	}
}

// TestIDIndexIsCompact: the index that finds a record by its id, on which
// every new record lands on a random page, takes at most 24 bytes per
// record, so that with a million records retained it stays in the writer's
// page cache. (An index on (queue, id) text took about 55.)
func TestIDIndexIsCompact(t *testing.T) {
	b, err := Open(t.Context(), filepath.Join(t.TempDir(), "size.db"), &Options{Queue: "reports-eu-west"})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	const n = 20000
	fillFinished(t, b, n)
	var index string
	for _, line := range queryPlan(t, b, b.sql.getRecord) {
		if m := regexp.MustCompile(`USING (?:COVERING )?INDEX (\S+)`).FindStringSubmatch(line); m != nil {
			index = m[1]
		}
	}
	require.NotEmpty(t, index, "Get finds a record through an index")
	var pages int
	require.NoError(t, b.eng.rdb.QueryRowContext(t.Context(), `SELECT count(*) FROM dbstat WHERE name = ?`, index).Scan(&pages))
	var pageSize int
	require.NoError(t, b.eng.rdb.QueryRowContext(t.Context(), `PRAGMA page_size`).Scan(&pageSize))
	perRecord := float64(pages*pageSize) / n
	t.Logf("%s: %d pages, %.1f bytes per record", index, pages, perRecord)
	require.LessOrEqual(t, perRecord, 24.0, "the index %s takes %.1f bytes per record", index, perRecord)
}
