package sqlite_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/sqlite"
)

// BenchmarkWorkerNoop is a closed loop through the Backend and a worker
// at their default options (the worker's Concurrency 100, as the example
// server runs it): 32 clients each accept a request, then wait, by a
// watch and a read, until its outcome is stored, and again. It reports
// requests done a second, the median and 99th percentile of accept to
// outcome, and the commits and reads of the file (Gets the poll cache did
// not answer) each request cost; a worker that leases and
// claims in one transaction (sqlite.Backend is an asyncreq.Claimer) spends
// fewer. No HTTP: what the loop measures is the Backend and the worker.
func BenchmarkWorkerNoop(b *testing.B) {
	ctx := b.Context()
	be, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), nil)
	require.NoError(b, err)
	defer be.Close()
	w, err := asyncreq.NewWorker(be, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{}, nil
	}), &asyncreq.WorkerOptions{Concurrency: 100})
	require.NoError(b, err)
	require.NoError(b, w.Start(ctx))
	defer func() { require.NoError(b, w.Stop(context.Background())) }()

	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	before, reads := be.Stats(), sqlite.Reads(be)
	b.SetParallelism(16) // 32 clients on two cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := time.Now()
			rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, Method: "POST",
				URL: "/jobs/", ContentType: "text/plain", Body: []byte("x"), CreatedAt: start, UpdatedAt: start,
				Retention: 24 * time.Hour} // a Handler's default
			if _, err := be.Accept(ctx, rec); err != nil {
				b.Error(err)
				return
			}
			if err := awaitFinal(ctx, be, rec.ID); err != nil {
				b.Error(err)
				return
			}
			d := time.Since(start)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
	})
	b.StopTimer()
	after := be.Stats()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "req/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(after.Commits-before.Commits)/float64(len(lat)), "commits/req")
		b.ReportMetric(float64(sqlite.Reads(be)-reads)/float64(len(lat)), "reads/req")
	}
}

// awaitFinal returns once the record id is final.
func awaitFinal(ctx context.Context, be *sqlite.Backend, id string) error {
	for {
		wctx, cancel := context.WithCancel(ctx)
		changed, err := be.Watch(wctx, id)
		if err != nil {
			cancel()
			return err
		}
		rec, err := be.Get(ctx, id)
		if err != nil || rec.State.Final() {
			cancel()
			return err
		}
		select {
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
