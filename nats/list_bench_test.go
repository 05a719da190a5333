package nats_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
)

// BenchmarkList measures a page of 50 records of List, and CountStates, on
// a Backend (file storage) that holds ASYNCREQ_BENCH_RECORDS finished
// records (default 10,000) of 10 owners, created through Create from 64
// goroutines before the timer starts. Every page reads every record, so
// the time grows with the records held, whatever the filter.
func BenchmarkList(b *testing.B) {
	n := 10_000
	if s := os.Getenv("ASYNCREQ_BENCH_RECORDS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("ASYNCREQ_BENCH_RECORDS=%q is not a positive count", s)
		}
		n = v
	}
	be := benchBackend(b)
	ctx := context.Background()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				rec := benchRecord([]byte(`{"image":"cat.png","width":640}`))
				rec.Owner = "owner-" + strconv.Itoa(int(i%10))
				rec.State, rec.Enqueued, rec.Attempts = asyncreq.StateSucceeded, true, 1
				rec.Result = &asyncreq.Result{ContentType: "application/json", Body: []byte(`{"ok":true}`)}
				rec.ExpiresAt = rec.UpdatedAt.Add(rec.Retention)
				if _, err := be.Create(ctx, rec); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	fill := time.Since(start)
	b.Logf("%d records created in %s (%.0f/s)", n, fill.Round(time.Millisecond), float64(n)/fill.Seconds())
	for _, bc := range []struct {
		name string
		q    asyncreq.ListQuery
	}{
		{"filter=none", asyncreq.ListQuery{}},
		{"filter=owner", asyncreq.ListQuery{Owner: "owner-3"}},
	} {
		b.Run(fmt.Sprintf("records=%d/%s", n, bc.name), func(b *testing.B) {
			for b.Loop() {
				page, err := be.List(ctx, bc.q)
				if err != nil {
					b.Fatal(err)
				}
				if len(page.Records) != asyncreq.DefaultListLimit {
					b.Fatalf("a page of %d records, want %d", len(page.Records), asyncreq.DefaultListLimit)
				}
			}
		})
	}
	b.Run(fmt.Sprintf("records=%d/CountStates", n), func(b *testing.B) {
		for b.Loop() {
			c, err := be.CountStates(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if c.Total() != int64(n) {
				b.Fatalf("counted %d records, want %d", c.Total(), n)
			}
		}
	})
}
