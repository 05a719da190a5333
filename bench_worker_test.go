package asyncreq_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// BenchmarkWorkerNoop measures how many no-op requests per second a worker
// takes through the memory backend: claim, process, record, ack.
func BenchmarkWorkerNoop(b *testing.B) {
	backend := memory.New(nil)
	defer backend.Close()
	ctx := context.Background()
	now := time.Now()
	for range b.N {
		if _, err := backend.Accept(ctx, &asyncreq.Record{
			ID: asyncreq.NewID(), State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now, Retention: time.Hour,
		}); err != nil {
			b.Fatal(err)
		}
	}
	var processed atomic.Int64
	all := make(chan struct{})
	total := int64(b.N)
	p := asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		if processed.Add(1) == total {
			close(all)
		}
		return &asyncreq.Result{}, nil
	})
	w, err := asyncreq.NewWorker(backend, p, &asyncreq.WorkerOptions{Concurrency: 16})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	if err := w.Start(ctx); err != nil {
		b.Fatal(err)
	}
	<-all
	// Stop waits for the last outcomes to be recorded and acked.
	if err := w.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	if _, entries := backend.Len(); entries != 0 {
		b.Fatalf("%d queue entries left", entries)
	}
}

// BenchmarkPickupLatency measures the time from a request's accept (store
// and enqueue) to the start of its processor on an idle worker.
func BenchmarkPickupLatency(b *testing.B) {
	backend := memory.New(nil)
	defer backend.Close()
	ctx := context.Background()
	started := make(chan time.Time, 1)
	p := asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		started <- time.Now()
		return &asyncreq.Result{}, nil
	})
	w, err := asyncreq.NewWorker(backend, p, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := w.Stop(ctx); err != nil {
			b.Error(err)
		}
	}()
	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		now := time.Now()
		if _, err := backend.Accept(ctx, &asyncreq.Record{
			ID: asyncreq.NewID(), State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now, Retention: time.Hour,
		}); err != nil {
			b.Fatal(err)
		}
		latencies = append(latencies, (<-started).Sub(now))
	}
	b.StopTimer()
	slices.Sort(latencies)
	us := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))]) / float64(time.Microsecond)
	}
	b.ReportMetric(us(0.50), "p50-µs")
	b.ReportMetric(us(0.99), "p99-µs")
}
