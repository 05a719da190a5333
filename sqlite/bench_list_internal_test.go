package sqlite

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// benchListRecords is how many records BenchmarkList retains:
// $ASYNCREQ_BENCH_LIST_RECORDS, or 100,000. The figures in
// docs/benchmarks-scale.md are of 1,000,000, which takes about a minute to
// fill:
//
//	ASYNCREQ_BENCH_LIST_RECORDS=1000000 go test -run '^$' -bench BenchmarkList -benchtime 2s
func benchListRecords(b *testing.B) int {
	s := os.Getenv("ASYNCREQ_BENCH_LIST_RECORDS")
	if s == "" {
		return 100_000
	}
	n, err := strconv.Atoi(s)
	require.NoError(b, err, "ASYNCREQ_BENCH_LIST_RECORDS")
	require.Positive(b, n, "ASYNCREQ_BENCH_LIST_RECORDS")
	return n
}

// BenchmarkList lists a page of 50 records, newest first, out of the
// records a busy service retains (see fillMixed: 5% failed, 100 owners),
// with each filter, and from a cursor deep in the listing; and counts them
// by state. A page reads its 51 rows off an index, so its time does not
// grow with the records retained; CountStates reads the state index whole.
func BenchmarkList(b *testing.B) {
	n := benchListRecords(b)
	be, err := Open(b.Context(), filepath.Join(b.TempDir(), "list.db"), nil)
	require.NoError(b, err)
	defer func() { require.NoError(b, be.Close()) }()
	fillMixed(b, be, n)
	for _, index := range []string{"records_list", "records_list_state", "records_list_owner", "records_list_owner_state", "records_finished"} {
		var bytes int64
		require.NoError(b, be.eng.rdb.QueryRowContext(b.Context(),
			`SELECT sum(pgsize) FROM dbstat WHERE name = ?`, be.prefix+index).Scan(&bytes))
		b.Logf("%s: %.1f bytes per record", index, float64(bytes)/float64(n))
	}

	// A cursor half way down the listing.
	var deep string
	q := asyncreq.ListQuery{Limit: asyncreq.MaxListLimit}
	for range n / 2 / asyncreq.MaxListLimit {
		page, err := be.List(b.Context(), q)
		require.NoError(b, err)
		q.Cursor = page.Next
	}
	deep = q.Cursor

	for _, c := range []struct {
		name string
		q    asyncreq.ListQuery
	}{
		{"newest", asyncreq.ListQuery{}},
		{"state=failed", asyncreq.ListQuery{State: asyncreq.StateFailed}},
		{"owner", asyncreq.ListQuery{Owner: "owner-01"}},
		{"owner+state=failed", asyncreq.ListQuery{Owner: "owner-01", State: asyncreq.StateFailed}},
		{"newest/from-middle", asyncreq.ListQuery{Cursor: deep}},
		{"state=failed/from-middle", asyncreq.ListQuery{State: asyncreq.StateFailed, Cursor: deep}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				page, err := be.List(b.Context(), c.q)
				if err != nil {
					b.Fatal(err)
				}
				if len(page.Records) != asyncreq.DefaultListLimit {
					b.Fatalf("a page of %d records, want %d", len(page.Records), asyncreq.DefaultListLimit)
				}
			}
		})
	}
	b.Run("CountStates", func(b *testing.B) {
		for b.Loop() {
			c, err := be.CountStates(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			if c.Total() != int64(n) {
				b.Fatalf("counted %d records, want %d", c.Total(), n)
			}
		}
	})
}
