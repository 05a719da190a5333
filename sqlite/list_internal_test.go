package sqlite

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// fillMixed stores n records in b, in transactions of 5000, as a service
// retains them: created a millisecond apart up to now, most succeeded, 5%
// failed, 2% canceled, 1% pending and 1% running, spread over 100 owners
// but for a fifth without one. It bypasses the Handler and the writer's
// group commit, to fill a million in well under a minute.
func fillMixed(tb testing.TB, b *Backend, n int) {
	tb.Helper()
	now := time.Now()
	start := now.Add(-time.Duration(n) * time.Millisecond)
	body := []byte(`{"report":"monthly","month":"2026-11"}`)
	for done := 0; done < n; {
		k := min(5000, n-done)
		require.NoError(tb, b.eng.do(tb.Context(), func(tx *wtx) error {
			for i := done; i < done+k; i++ {
				rec := &asyncreq.Record{
					ID:           asyncreq.NewID(),
					State:        mixedState(i),
					Method:       "POST",
					URL:          "/reports/",
					ContentType:  "application/json",
					Body:         body,
					CreatedAt:    start.Add(time.Duration(i) * time.Millisecond),
					Retention:    24 * time.Hour,
					TombstoneTTL: time.Hour,
					Enqueued:     true,
				}
				if i%5 != 0 {
					rec.Owner = fmt.Sprintf("owner-%02d", i%100)
				}
				rec.UpdatedAt = rec.CreatedAt.Add(time.Second)
				if rec.State.Final() {
					rec.Attempts = 1
					rec.ExpiresAt = rec.UpdatedAt.Add(rec.Retention)
					rec.Result = &asyncreq.Result{ContentType: "application/json", Body: []byte(`{"ok":true}`)}
				}
				enc, err := encodeRecord(rec)
				if err != nil {
					return err
				}
				if _, err := tx.exec(b.sql.insertRecord, b.queue, rec.ID, rec.Owner, nil, string(rec.State), 1,
					rec.CreatedAt.UnixNano(), nullTime(rec.ExpiresAt), int64(rec.TombstoneTTL), enc.data,
					blob(enc.body), blob(enc.resultBody), idKey(rec.ID), rec.UpdatedAt.UnixNano()); err != nil {
					return err
				}
				tx.count(b.prefix, b.queue, string(rec.State), 1)
			}
			return nil
		}, nil))
		done += k
	}
}

// mixedState is the state of the i-th record fillMixed stores.
func mixedState(i int) asyncreq.State {
	switch i % 100 {
	case 1, 21, 41, 61, 81:
		return asyncreq.StateFailed
	case 3, 53:
		return asyncreq.StateCanceled
	case 7:
		return asyncreq.StatePending
	case 9:
		return asyncreq.StateRunning
	}
	return asyncreq.StateSucceeded
}

// TestListQueriesUseIndexes: every listing statement, with each
// combination of filters, from the start and after a cursor, reads its
// page off an index in the listing's order: no SCAN of the records table
// and no temporary B-tree to sort it, so that a page costs the same with a
// million records retained as with a thousand. PurgeFinished finds its
// records through the index of final records by last change, and
// CountStates reads the kept counts. Checked without statistics and after
// ANALYZE.
func TestListQueriesUseIndexes(t *testing.T) {
	b, err := Open(t.Context(), filepath.Join(t.TempDir(), "list.db"), nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	fillMixed(t, b, 5000)
	p := b.prefix
	cases := []struct {
		name, q, index string
	}{
		{"listAll", b.sql.listAll, p + "records_list"},
		{"listAllAfter", b.sql.listAllAfter, p + "records_list"},
		{"listState", b.sql.listState, p + "records_list_state"},
		{"listStateAfter", b.sql.listStateAfter, p + "records_list_state"},
		{"listOwner", b.sql.listOwner, p + "records_list_owner"},
		{"listOwnerAfter", b.sql.listOwnerAfter, p + "records_list_owner"},
		{"listOwnerState", b.sql.listOwnerState, p + "records_list_owner_state"},
		{"listOwnerStateAfter", b.sql.listOwnerStateAfter, p + "records_list_owner_state"},
		{"purgeFinished", b.sql.purgeFinished, p + "records_finished"},
	}
	records := regexp.MustCompile(`\b` + regexp.QuoteMeta(p) + `records\b`)
	for _, analyzed := range []bool{false, true} {
		if analyzed {
			require.NoError(t, b.eng.do(t.Context(), func(tx *wtx) error { return tx.execScript("ANALYZE") }, nil))
		}
		require.Equal(t, []string{"SEARCH " + p + "state_counts USING PRIMARY KEY (queue=?)"}, queryPlan(t, b, b.sql.countStates),
			"CountStates reads a row a state (analyzed %v)", analyzed)
		for _, c := range cases {
			plan := queryPlan(t, b, c.q)
			all := strings.Join(plan, "\n")
			t.Logf("%s (analyzed %v): %s", c.name, analyzed, strings.Join(plan, " | "))
			found := false
			for _, line := range plan {
				require.NotContains(t, line, "TEMP B-TREE", "%s (analyzed %v) sorts its rows: %s\n%s", c.name, analyzed, all, c.q)
				if !records.MatchString(line) || strings.Contains(line, "LIST SUBQUERY") {
					continue
				}
				require.True(t, strings.HasPrefix(line, "SEARCH "), "%s (analyzed %v) scans the records: %q\n%s", c.name, analyzed, line, c.q)
				if regexp.MustCompile(`USING (COVERING )?INDEX ` + regexp.QuoteMeta(c.index) + ` \(`).MatchString(line) {
					found = true
				}
			}
			require.True(t, found, "%s (analyzed %v) reads the index %s: %s", c.name, analyzed, c.index, all)
			if strings.Contains(c.name, "After") {
				require.Contains(t, all, "(created_at,id)<(?,?)", "%s (analyzed %v) starts at the cursor in the index", c.name, analyzed)
			}
		}
	}
}
