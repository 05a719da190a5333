package asyncreqtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
)

// FillQueue enqueues n new ids into q from 64 goroutines, as concurrent
// handlers would. Benchmarks call it before their timer starts.
func FillQueue(tb testing.TB, q asyncreq.Queue, n int) {
	tb.Helper()
	fill(tb, q, n, 64)
}

// fill enqueues n new ids into q from the given number of goroutines.
func fill(tb testing.TB, q asyncreq.Queue, n, goroutines int) {
	ctx := context.Background()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range goroutines {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := q.Enqueue(ctx, asyncreq.NewID(), 0); err != nil {
					tb.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkEnqueue measures how fast clients goroutines enqueue b.N new
// ids into q, as concurrent handlers would. It reports msg/s.
func BenchmarkEnqueue(b *testing.B, q asyncreq.Queue, clients int) {
	b.Helper()
	b.ResetTimer()
	fill(b, q, b.N, clients)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkDrain measures how fast consumers empty a queue that holds at
// least b.N ids, with a no-op processor: one goroutine per consumer takes
// up to batch leases at a time (DequeueBatch when the consumer implements
// asyncreq.BatchDequeuer, Dequeue otherwise) and acks every lease on a
// goroutine of its own, as a Worker does. Give the same Queue several times
// to model workers in one process, or separate Queues for separate
// processes. It resets the timer first and reports jobs/s.
func BenchmarkDrain(b *testing.B, batch int, consumers ...asyncreq.Queue) {
	b.Helper()
	ctx := context.Background()
	var done atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, q := range consumers {
		wg.Go(func() {
			var acks sync.WaitGroup
			defer acks.Wait()
			for done.Load() < int64(b.N) {
				ls, err := dequeueFor(ctx, q, batch, 200*time.Millisecond)
				if errors.Is(err, context.DeadlineExceeded) {
					continue
				}
				if err != nil {
					b.Error(err)
					return
				}
				for _, l := range ls {
					acks.Go(func() {
						if err := q.Ack(ctx, l); err != nil {
							b.Error(fmt.Errorf("ack %s: %w", l.ID, err))
						}
						done.Add(1)
					})
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// dequeueFor takes up to batch leases from q, waiting at most wait.
func dequeueFor(ctx context.Context, q asyncreq.Queue, batch int, wait time.Duration) ([]*asyncreq.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if bq, ok := q.(asyncreq.BatchDequeuer); ok && batch > 1 {
		return bq.DequeueBatch(ctx, batch, time.Minute)
	}
	l, err := q.Dequeue(ctx, time.Minute)
	if err != nil {
		return nil, err
	}
	return []*asyncreq.Lease{l}, nil
}

// RunningRecords creates n records in s, each claimed as a worker claims
// the request it starts, and returns their ids: what clients polling the
// status of running requests read. Benchmarks call it before their timer
// starts.
func RunningRecords(tb testing.TB, s asyncreq.Store, n int) []string {
	tb.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	for i := range ids {
		rec := newRecord("", "")
		if _, err := s.Create(ctx, rec); err != nil {
			tb.Fatal(err)
		}
		if _, err := s.Update(ctx, rec.ID, func(r *asyncreq.Record) error { return r.Claim("token", 3, time.Now()) }); err != nil {
			tb.Fatal(err)
		}
		ids[i] = rec.ID
	}
	return ids
}

// PollCacheAges are the poll cache ages a backend's BenchmarkPollRunning
// compares, by the name of each sub-benchmark: the cache off (a negative
// PollCacheAge) and at its default (zero).
var PollCacheAges = []struct {
	Name string
	Age  time.Duration
}{{"cache=off", -1}, {"cache=default", 0}}

// BenchmarkPoll measures how fast clients goroutines read the records of
// ids with s.Get, each of them polling one record over and over, as
// clients polling the status of running requests do. It resets the timer
// first and reports gets/s.
func BenchmarkPoll(b *testing.B, s asyncreq.Store, ids []string, clients int) {
	b.Helper()
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := ids[next.Add(1)%int64(len(ids))]
		for pb.Next() {
			if _, err := s.Get(ctx, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
}
