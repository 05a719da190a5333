package rabbitmq_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/memory"
	"github.com/asyncreq/asyncreq/rabbitmq"
)

// BenchmarkEnqueue measures confirmed publishes per second from concurrent
// clients on one connection: each Enqueue waits for the broker's confirm,
// which for a quorum queue follows its fsync.
func BenchmarkEnqueue(b *testing.B) {
	for _, clients := range []int{32, 128} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			b.ReportAllocs()
			asyncreqtest.BenchmarkEnqueue(b, newQueue(b, brokerURL(b), nil), clients)
		})
	}
}

// BenchmarkAccept measures accepts per second from 32 concurrent clients
// with the in-memory Store beside the RabbitMQ Queue, doing what the
// handler does: Create (unenqueued), Enqueue (confirmed), Update
// (enqueued). The Queue's confirm dominates.
func BenchmarkAccept(b *testing.B) {
	q := newQueue(b, brokerURL(b), nil)
	store := memory.New(nil)
	b.Cleanup(func() { _ = store.Close() })
	ctx := context.Background()
	body := []byte(`{"image":"cat.png","width":640}`)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				now := time.Now()
				rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, Body: body, CreatedAt: now, UpdatedAt: now}
				if _, err := store.Create(ctx, rec); err != nil {
					b.Error(err)
					return
				}
				if err := q.Enqueue(ctx, rec.ID, 0); err != nil {
					b.Error(err)
					return
				}
				if _, err := store.Update(ctx, rec.ID, func(r *asyncreq.Record) error { r.Enqueued = true; return nil }); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkDrain measures how fast the queue empties with a no-op
// processor: 4 consumers (4 Queue values, each its own connection, as 4
// worker processes would have) with Prefetch 64 take batches of up to 16
// leases with DequeueBatch and ack every job on its own goroutine, as a
// Worker does.
func BenchmarkDrain(b *testing.B) {
	u := brokerURL(b)
	name := queueName(b, u)
	producer := newQueue(b, u, &rabbitmq.Options{Queue: name})
	asyncreqtest.FillQueue(b, producer, b.N)
	consumers := make([]asyncreq.Queue, 4)
	for i := range consumers {
		consumers[i] = newQueue(b, u, &rabbitmq.Options{Queue: name, Prefetch: 64})
	}
	asyncreqtest.BenchmarkDrain(b, 16, consumers...)
}
