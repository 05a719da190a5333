package memory_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// finishedRecord runs one request through a Handler (with NewAsync's
// KeepHeaders "*") and a Worker on b and returns its record: what a
// finished request of a service looks like in the Store.
func finishedRecord(t testing.TB, b *memory.Backend) *asyncreq.Record {
	t.Helper()
	ctx := context.Background()
	h, err := asyncreq.NewHandler(b, &asyncreq.HandlerOptions{KeepHeaders: []string{"*"}})
	require.NoError(t, err)
	w, err := asyncreq.NewWorker(b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{ContentType: "application/json", Body: []byte(`{"ok":true}`)}, nil
	}), &asyncreq.WorkerOptions{Concurrency: 1})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	defer func() { require.NoError(t, w.Stop(ctx)) }()

	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"report":"monthly","month":"2026-11"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "report-client/1.4")
	req.Header.Set("Accept", "application/json")
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	require.Equal(t, http.StatusAccepted, rr.Code)
	id := strings.TrimSuffix(strings.TrimPrefix(rr.Header().Get("Location"), "/"), "/status")
	var rec *asyncreq.Record
	require.Eventually(t, func() bool {
		rec, err = b.Get(ctx, id)
		require.NoError(t, err)
		return rec.State == asyncreq.StateSucceeded
	}, 10*time.Second, time.Millisecond)
	return rec
}

// retainedBytes fills a Backend with n finished requests copied from a
// real one and returns the heap they take per request beyond their request
// and result bodies.
func retainedBytes(t testing.TB, n int) float64 {
	ctx := context.Background()
	tmpl := finishedRecord(t, memory.New(nil))
	bodies := len(tmpl.Body) + len(tmpl.Result.Body)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b := memory.New(nil)
	now := time.Now()
	for i := range n {
		rec := tmpl.Clone()
		rec.ID = asyncreq.NewID()
		rec.CreatedAt, rec.UpdatedAt = now, now
		rec.ExpiresAt = now.Add(rec.Retention + time.Duration(i))
		_, err := b.Create(ctx, rec)
		require.NoError(t, err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	recs, _ := b.Len()
	require.Equal(t, n, recs)
	runtime.KeepAlive(b)
	return float64(after.HeapAlloc-before.HeapAlloc)/float64(n) - float64(bodies)
}

// TestRetainedMemory: a finished request kept for its retention takes at
// most 2 KiB of heap beyond its bodies, so that a day of a busy service
// fits in memory.
func TestRetainedMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocations cost")
	}
	per := retainedBytes(t, 200_000)
	t.Logf("%.0f bytes per retained request beyond its bodies", per)
	require.LessOrEqual(t, per, 2048.0)
}

// BenchmarkRetainedMemory reports the heap per retained finished request
// beyond its bodies (B/retained) at 1,000,000 requests.
func BenchmarkRetainedMemory(b *testing.B) {
	var per float64
	for b.Loop() {
		per = retainedBytes(b, 1_000_000)
	}
	b.ReportMetric(per, "B/retained")
}
