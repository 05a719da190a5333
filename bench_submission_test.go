package asyncreq_test

import (
	"context"
	"testing"

	"github.com/asyncreq/asyncreq"
)

// BenchmarkSubmit measures Handler.Submit over the memory backend: the
// accept path of BenchmarkAccept without the HTTP request and answer.
func BenchmarkSubmit(b *testing.B) {
	mem := newMemory(b)
	h := newTestHandler(b, mem, nil)
	s := asyncreq.Submission{ContentType: "application/json", Body: []byte(`{"document":"the quick brown fox jumps over the lazy dog"}`)}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(s.Body)))
	for b.Loop() {
		if _, err := h.Submit(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJSONProcessor measures JSONProcessor's decode, validate and
// encode around a function that does nothing else.
func BenchmarkJSONProcessor(b *testing.B) {
	p := asyncreq.JSONProcessor(quoteOrder)
	req := &asyncreq.Request{ContentType: "application/json", Body: []byte(`{"customer": "c1", "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}]}`)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Process(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
