package asyncreq_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/asyncreq/asyncreq"
)

// BenchmarkAccept measures the submit path (POST → 202) over the memory
// backend, without the network.
func BenchmarkAccept(b *testing.B) {
	mem := newMemory(b)
	h := newTestHandler(b, mem, nil)
	body := []byte(`{"document":"the quick brown fox jumps over the lazy dog"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusAccepted {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkAcceptParallel is BenchmarkAccept from GOMAXPROCS goroutines.
func BenchmarkAcceptParallel(b *testing.B) {
	mem := newMemory(b)
	h := newTestHandler(b, mem, nil)
	body := []byte(`{"document":"the quick brown fox jumps over the lazy dog"}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusAccepted {
				b.Errorf("status %d", w.Code)
				return
			}
		}
	})
}

// BenchmarkStatus measures a status poll of a running request.
func BenchmarkStatus(b *testing.B) {
	mem := newMemory(b)
	h := newTestHandler(b, mem, nil)
	id := postJob(b, h, "x")
	setRecord(b, mem, id, func(r *asyncreq.Record) {
		r.State = asyncreq.StateRunning
		r.Progress = &asyncreq.Progress{Percent: 40, Message: "working"}
	})
	target := "/" + id + "/status"
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkResult measures serving a stored 1 KiB result.
func BenchmarkResult(b *testing.B) {
	mem := newMemory(b)
	h := newTestHandler(b, mem, nil)
	id := postJob(b, h, "x")
	setRecord(b, mem, id, succeed(&asyncreq.Result{ContentType: "application/octet-stream", Body: bytes.Repeat([]byte("r"), 1024)}))
	target := "/" + id
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}
