package redis_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/redis"
)

// BenchmarkList measures a page of 50 records of List, and CountStates,
// on a Backend that holds ASYNCREQ_BENCH_RECORDS records (default 100,000;
// docs/benchmarks-scale.md has 1,000,000): 10 owners, 90% succeeded, 5%
// failed, 2% canceled, 2% pending and 1% running. The records are created
// through Create from 64 goroutines before the timer starts; the fill's
// rate and the memory Redis holds per record (all of it, and that of the
// listing indexes) are reported.
func BenchmarkList(b *testing.B) {
	n := 100_000
	if s := os.Getenv("ASYNCREQ_BENCH_RECORDS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("ASYNCREQ_BENCH_RECORDS=%q is not a positive count", s)
		}
		n = v
	}
	c := newClient(b)
	prefix := newPrefix(b, c)
	b.Cleanup(func() {
		// In steps, with UNLINK: one DEL of a million records (what
		// newPrefix's cleanup sends) would hold the server for seconds.
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			if batch = append(batch, iter.Val()); len(batch) == 1000 {
				_ = c.Unlink(ctx, batch...).Err()
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			_ = c.Unlink(ctx, batch...).Err()
		}
	})
	be, err := redis.New(b.Context(), c, &redis.Options{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close() })
	ctx := context.Background()
	before := usedMemory(b)
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
				if _, err := be.Create(ctx, scaleRecord(int(i))); err != nil {
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
	perRecord := float64(usedMemory(b)-before) / float64(n)
	var index int64
	iter := c.Scan(ctx, 0, prefix+"*}:l*", 1000).Iterator()
	for iter.Next(ctx) {
		index += c.MemoryUsage(ctx, iter.Val(), 0).Val()
	}
	if err := iter.Err(); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d records created in %s (%.0f/s); Redis holds %.0f bytes per record, %.0f of them in the listing indexes",
		n, fill.Round(time.Millisecond), float64(n)/fill.Seconds(), perRecord, float64(index)/float64(n))

	// A cursor half-way down the listing: keyset pagination costs the
	// same there as on the first page.
	page, err := be.List(ctx, asyncreq.ListQuery{Limit: asyncreq.MaxListLimit})
	if err != nil {
		b.Fatal(err)
	}
	for range n / 2 / asyncreq.MaxListLimit {
		if page.Next == "" {
			break
		}
		if page, err = be.List(ctx, asyncreq.ListQuery{Limit: asyncreq.MaxListLimit, Cursor: page.Next}); err != nil {
			b.Fatal(err)
		}
	}
	middle := page.Next

	for _, bc := range []struct {
		name string
		q    asyncreq.ListQuery
	}{
		{"filter=none", asyncreq.ListQuery{}},
		{"filter=none/cursor=middle", asyncreq.ListQuery{Cursor: middle}},
		{"filter=state:failed", asyncreq.ListQuery{State: asyncreq.StateFailed}},
		{"filter=owner", asyncreq.ListQuery{Owner: "owner-3"}},
		{"filter=owner+state:running", asyncreq.ListQuery{Owner: "owner-2", State: asyncreq.StateRunning}},
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

// scaleRecord returns the i-th record of BenchmarkList's fill.
func scaleRecord(i int) *asyncreq.Record {
	rec := testRecord("owner-"+strconv.Itoa(i%10), "")
	rec.CreatedAt = rec.CreatedAt.Add(-time.Duration(i) * time.Millisecond)
	rec.UpdatedAt = rec.CreatedAt
	rec.Retention = 24 * time.Hour
	switch p := i % 100; {
	case p < 2:
	case p < 3:
		rec.State, rec.Enqueued, rec.Attempts, rec.LeaseToken = asyncreq.StateRunning, true, 1, asyncreq.NewID()
	default:
		rec.State, rec.Enqueued, rec.Attempts = asyncreq.StateSucceeded, true, 1
		rec.Result = &asyncreq.Result{ContentType: "application/json", Body: []byte(`{"ok":true}`)}
		switch {
		case p < 8:
			rec.State, rec.Result = asyncreq.StateFailed, nil
			rec.Error = &asyncreq.Problem{Status: 500, Title: "it broke"}
		case p < 10:
			rec.State, rec.Result = asyncreq.StateCanceled, nil
			rec.Error = &asyncreq.Problem{Status: 409, Title: "canceled"}
		}
		rec.ExpiresAt = rec.UpdatedAt.Add(rec.Retention)
	}
	return rec
}

// usedMemory returns the Redis server's used_memory.
func usedMemory(b *testing.B) int64 {
	info, err := newClient(b).Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}
