package memory_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// BenchmarkPendingMemory holds 100,000 accepted, pending requests and
// reports the heap they take per request beyond their bodies (B/pending).
func BenchmarkPendingMemory(b *testing.B) {
	const n = 100_000
	body := []byte("a small report body\n")
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	ctx := context.Background()
	var perReq float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		be := memory.New(nil)
		now := time.Now()
		for range n {
			rec := &asyncreq.Record{
				ID:             asyncreq.NewID(),
				IdempotencyKey: asyncreq.NewID(),
				BodyHash:       hash,
				State:          asyncreq.StatePending,
				Method:         "POST",
				URL:            "/jobs",
				ContentType:    "text/plain",
				Body:           body,
				CreatedAt:      now,
				UpdatedAt:      now,
				Retention:      24 * time.Hour,
				TombstoneTTL:   7 * 24 * time.Hour,
			}
			if _, err := be.Accept(ctx, rec); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if recs, entries := be.Len(); recs != n || entries != n {
			b.Fatalf("holds %d records and %d entries, want %d", recs, entries, n)
		}
		perReq = float64(after.HeapAlloc-before.HeapAlloc)/n - float64(len(body))
		runtime.KeepAlive(be)
	}
	b.ReportMetric(perReq, "B/pending")
	if perReq > 2048 {
		b.Errorf("%.0f bytes per pending request beyond its body, want at most 2048", perReq)
	}
}

// BenchmarkList lists a page of 50 records, newest first, out of
// 1,000,000 that a Backend holds (5% of them failed, spread over 100
// owners), with no filter, by state and by owner, and counts them by
// state. A page is read off the Backend's ordered indexes, so its time
// does not grow with the records held.
func BenchmarkList(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	be := memory.New(nil)
	defer be.Close()
	start := time.Now().Add(-n * time.Millisecond)
	for i := range n {
		at := start.Add(time.Duration(i) * time.Millisecond)
		rec := &asyncreq.Record{
			ID:        asyncreq.NewID(),
			Owner:     "owner-" + strconv.Itoa(i%100),
			State:     asyncreq.StateSucceeded,
			Method:    "POST",
			URL:       "/reports/",
			CreatedAt: at,
			UpdatedAt: at.Add(time.Second),
		}
		if i%20 == 1 {
			rec.State = asyncreq.StateFailed
		}
		if _, err := be.Create(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		q    asyncreq.ListQuery
	}{
		{"newest", asyncreq.ListQuery{}},
		{"state=failed", asyncreq.ListQuery{State: asyncreq.StateFailed}},
		{"owner", asyncreq.ListQuery{Owner: "owner-1"}},
		{"owner+state=failed", asyncreq.ListQuery{Owner: "owner-1", State: asyncreq.StateFailed}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				page, err := be.List(ctx, c.q)
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
			if _, err := be.CountStates(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUpdateLargeBody updates the progress of a record with a 64 KiB
// request body and a 64 KiB result, as a worker reporting progress on a
// large upload does (B/op: what one Update allocates).
func BenchmarkUpdateLargeBody(b *testing.B) {
	be := memory.New(nil)
	defer be.Close()
	ctx := context.Background()
	rec := createRunning(b, be, make([]byte, 64<<10), make([]byte, 64<<10))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := be.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
			r.Progress = &asyncreq.Progress{Percent: i % 100}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}
