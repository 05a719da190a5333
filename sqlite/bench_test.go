package sqlite_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/sqlite"
)

// BenchmarkAccept drives Accept from many goroutines at once, as concurrent
// POSTs through the handler would, and reports accepted requests per second.
// Each accept is durable (Synchronous FULL unless the sub-benchmark says
// otherwise) when it returns.
func BenchmarkAccept(b *testing.B) {
	for _, sync := range []string{"FULL", "NORMAL"} {
		for _, clients := range []int{1, 32, 128} {
			b.Run(fmt.Sprintf("sync=%s/clients=%d", sync, clients), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "bench.db")
				be, err := sqlite.Open(b.Context(), path, &sqlite.Options{Synchronous: sync})
				require.NoError(b, err)
				defer be.Close()
				body := make([]byte, 512)
				b.SetParallelism((clients + 1) / 2) // RunParallel runs GOMAXPROCS × this
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := b.Context()
					for pb.Next() {
						rec := &asyncreq.Record{
							ID:          asyncreq.NewID(),
							State:       asyncreq.StatePending,
							Method:      "POST",
							URL:         "/jobs/",
							ContentType: "application/octet-stream",
							Body:        body,
						}
						if _, err := be.Accept(ctx, rec); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
				if st := be.Stats(); st.Commits > 0 {
					b.ReportMetric(float64(st.Writes)/float64(st.Commits), "writes/commit")
				}
			})
		}
	}
}

// BenchmarkPollRunning measures status reads of running requests, as
// clients polling them cause: 32 clients each Get one of 32 running
// records in a loop, with the poll cache off and at its default age.
func BenchmarkPollRunning(b *testing.B) {
	for _, c := range asyncreqtest.PollCacheAges {
		b.Run(c.Name, func(b *testing.B) {
			s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "poll.db"), &sqlite.Options{PollCacheAge: c.Age})
			require.NoError(b, err)
			b.Cleanup(func() { require.NoError(b, s.Close()) })
			asyncreqtest.BenchmarkPoll(b, s, asyncreqtest.RunningRecords(b, s, 32), 32)
		})
	}
}
