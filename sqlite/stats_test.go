package sqlite_test

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq/sqlite"
)

// BenchmarkQueueStats measures one QueueStats call on a queue holding a
// million pending entries, 10,000 delayed and 100 leased ones, written
// straight into the table.
func BenchmarkQueueStats(b *testing.B) {
	const pending, delayed, leased = 1_000_000, 10_000, 100
	path := filepath.Join(b.TempDir(), "stats.db")
	be, err := sqlite.Open(b.Context(), path, &sqlite.Options{Synchronous: "NORMAL"})
	require.NoError(b, err)
	defer be.Close()

	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	require.NoError(b, err)
	defer db.Close()
	now := time.Now().UnixNano()
	fill := func(n int, id string, due, token string) {
		_, err := db.ExecContext(b.Context(), fmt.Sprintf(`INSERT INTO asyncreq_queue (queue, id, due, token)
			WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d)
			SELECT 'default', '%s' || x, %s, %s FROM c`, n, id, due, token))
		require.NoError(b, err)
	}
	start := time.Now()
	fill(pending, "p", fmt.Sprintf("%d - x", now-int64(time.Hour)), "NULL")
	fill(delayed, "d", fmt.Sprintf("%d + x", now+int64(time.Hour)), "NULL")
	fill(leased, "l", fmt.Sprintf("%d + x", now+int64(time.Hour)), "'t' || x")
	b.Logf("filled in %v", time.Since(start))

	s, err := be.QueueStats(b.Context())
	require.NoError(b, err)
	require.EqualValues(b, pending, s.Pending)
	require.EqualValues(b, delayed, s.Delayed)
	require.EqualValues(b, leased, s.Running)
	for b.Loop() {
		if _, err := be.QueueStats(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
