package otel_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/asyncreq/asyncreq"
	asyncreqotel "github.com/asyncreq/asyncreq/otel"
)

// BenchmarkRequestHooks is what the Observer adds to one request that
// succeeds at its first attempt: the accept, the claim, the attempt's
// start and its outcome, with metrics recorded by the SDK and tracing off
// (a no-op tracer provider), as in a service that exports metrics only.
func BenchmarkRequestHooks(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	obs, err := asyncreqotel.Instrument(
		asyncreqotel.WithMeterProvider(mp),
		asyncreqotel.WithTracerProvider(noop.NewTracerProvider()),
		asyncreqotel.WithQueue("reports"),
	)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = obs.Close() })
	h := obs.Hooks()
	ctx := context.Background()
	now := time.Now()
	const id = "01KBQ3Z8W4R7M2N5P8Q1S4T7V0XYZA"
	b.ReportAllocs()
	for b.Loop() {
		h.Accepted(ctx, asyncreq.AcceptEvent{ID: id, Start: now})
		h.Claimed(ctx, asyncreq.ClaimEvent{ID: id, Attempt: 1, Start: now, CreatedAt: now, ClaimedAt: now})
		actx := h.AttemptStarted(ctx, asyncreq.AttemptEvent{ID: id, Attempt: 1, Start: now, CreatedAt: now})
		h.AttemptFinished(actx, asyncreq.AttemptEvent{ID: id, Attempt: 1, Start: now, CreatedAt: now, Outcome: asyncreq.OutcomeSucceeded, Final: true, Duration: time.Millisecond})
	}
}
