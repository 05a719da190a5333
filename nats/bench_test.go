package nats_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/nats"
)

// benchBackend returns a Backend on file storage (what production uses)
// with names of its own.
func benchBackend(b *testing.B) *nats.Backend {
	opts := testOptions()
	opts.Storage = jetstream.FileStorage
	opts.AckWait = 30 * time.Second
	return newBackend(b, nil, opts)
}

func benchRecord(body []byte) *asyncreq.Record {
	now := time.Now()
	return &asyncreq.Record{
		ID: asyncreq.NewID(), State: asyncreq.StatePending, Method: "POST", URL: "/jobs",
		ContentType: "application/json", Body: body, CreatedAt: now, UpdatedAt: now,
		Retention: 24 * time.Hour, TombstoneTTL: 7 * 24 * time.Hour,
	}
}

// BenchmarkAccept measures accepts per second from concurrent clients,
// each doing what the handler does for a Store and Queue that cannot
// accept in one step: Create (unenqueued), Enqueue, Update (enqueued).
// Every step waits for JetStream's acknowledgement.
func BenchmarkAccept(b *testing.B) {
	for _, clients := range []int{32, 128} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			be := benchBackend(b)
			body := []byte(`{"image":"cat.png","width":640}`)
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for range clients {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						rec := benchRecord(body)
						if _, err := be.Create(ctx, rec); err != nil {
							b.Error(err)
							return
						}
						if err := be.Enqueue(ctx, rec.ID, 0); err != nil {
							b.Error(err)
							return
						}
						if _, err := be.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
							r.Enqueued = true
							return nil
						}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkEnqueue measures acknowledged publishes per second from 32
// concurrent clients.
func BenchmarkEnqueue(b *testing.B) {
	asyncreqtest.BenchmarkEnqueue(b, benchBackend(b), 32)
}

// BenchmarkDrain measures how fast the queue empties with a no-op
// processor: 4 consumers (as 4 worker processes would) each take batches
// of up to 16 leases with DequeueBatch and ack every job on its own
// goroutine, as a Worker does. Acks wait for the server's confirmation.
func BenchmarkDrain(b *testing.B) {
	be := benchBackend(b)
	asyncreqtest.FillQueue(b, be, b.N)
	asyncreqtest.BenchmarkDrain(b, 16, be, be, be, be)
}
