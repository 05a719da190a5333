package memory_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"runtime"
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
