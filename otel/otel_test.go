package otel_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	asyncreqotel "github.com/asyncreq/asyncreq/otel"
	"github.com/asyncreq/asyncreq/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// rig is a Handler and a Worker over one SQLite backend, instrumented
// with in-memory exporters.
type rig struct {
	h      http.Handler
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
}

func newRig(t *testing.T, p asyncreq.Processor, wopts asyncreq.WorkerOptions, opts ...asyncreqotel.Option) *rig {
	t.Helper()
	ctx := context.Background()
	b, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "asyncreq.db"), &sqlite.Options{Queue: "reports"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })

	r := &rig{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() {
		_ = r.tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	opts = append([]asyncreqotel.Option{
		asyncreqotel.WithTracerProvider(r.tp),
		asyncreqotel.WithMeterProvider(mp),
		asyncreqotel.WithQueue("reports"),
	}, opts...)
	obs, err := asyncreqotel.Instrument(opts...)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, obs.Close()) })

	h, err := asyncreq.NewHandler(b, &asyncreq.HandlerOptions{Hooks: obs.Hooks()})
	require.NoError(t, err)
	wopts.Hooks = obs.Hooks()
	if wopts.BackoffMin == 0 {
		wopts.BackoffMin, wopts.BackoffMax = time.Millisecond, time.Millisecond
	}
	w, err := asyncreq.NewWorker(b, p, &wopts)
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() { assert.NoError(t, w.Stop(context.Background())) })

	// The submit is served inside a server span, as an otelhttp middleware
	// would serve it.
	tracer := r.tp.Tracer("test")
	r.h = http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		ctx := propagation.TraceContext{}.Extract(req.Context(), propagation.HeaderCarrier(req.Header))
		ctx, span := tracer.Start(ctx, "POST /reports", trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		h.ServeHTTP(rw, req.WithContext(ctx))
	})
	return r
}

// submit posts body and returns the status URL.
func (r *rig) submit(t *testing.T, body string) string {
	t.Helper()
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body)))
	require.Equal(t, http.StatusAccepted, w.Code, w.Body.String())
	return w.Header().Get("Location")
}

// wait long-polls statusURL until the request is final.
func (r *rig) wait(t *testing.T, statusURL string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, statusURL, nil)
		req.Header.Set("Prefer", "wait=2")
		r.h.ServeHTTP(w, req)
		if w.Code == http.StatusSeeOther || strings.Contains(w.Body.String(), `"status":"failed"`) {
			return w.Code
		}
	}
	t.Fatal("the request did not finish")
	return 0
}

// spanNamed waits for an ended span of that name.
func (r *rig) spansNamed(t *testing.T, name string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	var got []sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		got = got[:0]
		for _, s := range r.spans.Ended() {
			if s.Name() == name {
				got = append(got, s)
			}
		}
		return len(got) >= n
	}, 5*time.Second, 5*time.Millisecond)
	return got
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func TestProcessSpanLinksToSubmit(t *testing.T) {
	var seen atomic.Value
	p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		seen.Store(trace.SpanContextFromContext(ctx))
		return &asyncreq.Result{Body: []byte("ok")}, nil
	})
	r := newRig(t, p, asyncreq.WorkerOptions{})
	r.wait(t, r.submit(t, "x"))

	post := r.spansNamed(t, "POST /reports", 1)[0]
	accept := r.spansNamed(t, "asyncreq.accept", 1)[0]
	assert.Equal(t, post.SpanContext().SpanID(), accept.Parent().SpanID(), "the accept span is under the submit's span")
	id := attr(accept, asyncreqotel.AttrRequestID).AsString()
	require.NotEmpty(t, id)

	proc := r.spansNamed(t, "asyncreq.process", 1)[0]
	require.Len(t, proc.Links(), 1)
	assert.Equal(t, post.SpanContext().TraceID(), proc.Links()[0].SpanContext.TraceID())
	assert.Equal(t, post.SpanContext().SpanID(), proc.Links()[0].SpanContext.SpanID())
	assert.NotEqual(t, post.SpanContext().TraceID(), proc.SpanContext().TraceID(), "by default the process span starts a trace of its own")
	assert.Equal(t, id, attr(proc, asyncreqotel.AttrRequestID).AsString())
	assert.Equal(t, "reports", attr(proc, asyncreqotel.AttrQueue).AsString())
	assert.Equal(t, int64(1), attr(proc, asyncreqotel.AttrAttempt).AsInt64())
	assert.Equal(t, asyncreq.OutcomeSucceeded, attr(proc, asyncreqotel.AttrOutcome).AsString())
	assert.Equal(t, proc.SpanContext(), seen.Load(), "the processor's context carries the process span")

	claim := r.spansNamed(t, "asyncreq.claim", 1)[0]
	require.Len(t, claim.Links(), 1)
	assert.Equal(t, post.SpanContext().SpanID(), claim.Links()[0].SpanContext.SpanID())
}

func TestProcessSpanAsChild(t *testing.T) {
	p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return nil, nil
	})
	r := newRig(t, p, asyncreq.WorkerOptions{}, asyncreqotel.WithProcessAsChild(true))
	r.wait(t, r.submit(t, "x"))

	post := r.spansNamed(t, "POST /reports", 1)[0]
	proc := r.spansNamed(t, "asyncreq.process", 1)[0]
	assert.Equal(t, post.SpanContext().TraceID(), proc.SpanContext().TraceID())
	assert.Equal(t, post.SpanContext().SpanID(), proc.Parent().SpanID())
	require.Len(t, proc.Links(), 1)
	assert.Equal(t, post.SpanContext().SpanID(), proc.Links()[0].SpanContext.SpanID())
}

// collect returns the metrics read now, by name.
func (r *rig) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	got := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = m
		}
	}
	return got
}

// sums returns a counter's values by the value of key.
func sums(t *testing.T, m metricdata.Metrics, key attribute.Key) map[string]int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is a %T", m.Name, m.Data)
	out := map[string]int64{}
	for _, dp := range s.DataPoints {
		q, _ := dp.Attributes.Value(asyncreqotel.AttrQueue)
		assert.Equal(t, "reports", q.AsString())
		v, _ := dp.Attributes.Value(key)
		out[v.String()] += dp.Value
	}
	return out
}

// counts returns a histogram's counts by the value of key.
func counts(t *testing.T, m metricdata.Metrics, key attribute.Key) map[string]uint64 {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "%s is a %T", m.Name, m.Data)
	out := map[string]uint64{}
	for _, dp := range h.DataPoints {
		v, _ := dp.Attributes.Value(key)
		out[v.String()] += dp.Count
	}
	return out
}

func TestMetrics(t *testing.T) {
	// "flaky" fails its first attempt and succeeds on the second; "bad"
	// fails for good; "panic" panics on every attempt.
	var flaky atomic.Int32
	p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		switch string(req.Body) {
		case "flaky":
			if flaky.Add(1) == 1 {
				return nil, errors.New("try again")
			}
		case "bad":
			return nil, asyncreq.Permanent(errors.New("bad input"), http.StatusUnprocessableEntity)
		case "panic":
			panic("boom")
		}
		time.Sleep(10 * time.Millisecond)
		return &asyncreq.Result{Body: req.Body}, nil
	})
	var depth atomic.Int64
	depth.Store(7)
	stats := func(context.Context) (asyncreqotel.QueueStats, error) {
		return asyncreqotel.QueueStats{Depth: depth.Load(), OldestAge: 3 * time.Second}, nil
	}
	r := newRig(t, p, asyncreq.WorkerOptions{MaxAttempts: 2}, asyncreqotel.WithQueueStats(stats))

	for _, body := range []string{"ok", "flaky", "bad", "panic"} {
		r.wait(t, r.submit(t, body))
	}
	// A submit too large for MaxBodyBytes is refused.
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", 2<<20))))
	require.Equal(t, http.StatusRequestEntityTooLarge, w.Code)
	// Each request's last attempt is recorded before its final state is
	// visible, but the hook runs after the write: wait for the spans.
	r.spansNamed(t, "asyncreq.process", 6)

	m := r.collect(t)
	assert.Equal(t, map[string]int64{"false": 4}, sums(t, m["asyncreq.requests.accepted"], asyncreqotel.AttrReplay))
	assert.Equal(t, map[string]int64{"too_large": 1}, sums(t, m["asyncreq.requests.rejected"], "asyncreq.reason"))
	assert.Equal(t, map[string]int64{
		asyncreq.OutcomeSucceeded: 2, // ok, flaky's second
		asyncreq.OutcomeRetry:     1, // flaky's first
		asyncreq.OutcomeFailed:    1, // bad
		asyncreq.OutcomePanicked:  2, // panic, twice
	}, sums(t, m["asyncreq.attempts"], asyncreqotel.AttrOutcome))
	assert.Equal(t, map[string]uint64{
		asyncreq.OutcomeSucceeded: 2, asyncreq.OutcomeRetry: 1, asyncreq.OutcomeFailed: 1, asyncreq.OutcomePanicked: 2,
	}, counts(t, m["asyncreq.attempt.duration"], asyncreqotel.AttrOutcome))
	// Final outcomes only: ok, flaky, bad, and panic's second attempt.
	assert.Equal(t, map[string]uint64{
		asyncreq.OutcomeSucceeded: 2, asyncreq.OutcomeFailed: 1, asyncreq.OutcomePanicked: 1,
	}, counts(t, m["asyncreq.request.duration"], asyncreqotel.AttrOutcome))
	assert.Equal(t, map[string]uint64{"": 4}, counts(t, m["asyncreq.queue.wait"], asyncreqotel.AttrOutcome), "one wait per request")

	// The successful attempt of "ok" slept 10ms.
	h := m["asyncreq.attempt.duration"].Data.(metricdata.Histogram[float64])
	for _, dp := range h.DataPoints {
		if v, _ := dp.Attributes.Value(asyncreqotel.AttrOutcome); v.AsString() == asyncreq.OutcomeSucceeded {
			assert.GreaterOrEqual(t, dp.Sum, 0.02)
		}
	}

	g := m["asyncreq.queue.depth"].Data.(metricdata.Gauge[int64])
	require.Len(t, g.DataPoints, 1)
	assert.Equal(t, int64(7), g.DataPoints[0].Value)
	age := m["asyncreq.queue.oldest_age"].Data.(metricdata.Gauge[float64])
	require.Len(t, age.DataPoints, 1)
	assert.Equal(t, 3.0, age.DataPoints[0].Value)
}

func TestTraceContextKept(t *testing.T) {
	// Without a server span, the submit's own traceparent is kept even
	// though KeepHeaders keeps nothing, and the process span links to it.
	p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return nil, nil
	})
	r := newRig(t, p, asyncreq.WorkerOptions{})
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
	req.Header.Set("Traceparent", tp)
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req) // the rig's server span continues the client's trace
	require.Equal(t, http.StatusAccepted, w.Code)
	r.wait(t, w.Header().Get("Location"))
	post := r.spansNamed(t, "POST /reports", 1)[0]
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", post.SpanContext().TraceID().String())
	proc := r.spansNamed(t, "asyncreq.process", 1)[0]
	require.Len(t, proc.Links(), 1)
	assert.Equal(t, post.SpanContext().SpanID(), proc.Links()[0].SpanContext.SpanID(), "the server span, not the client's, is linked")
}

// Spans started at once from many goroutines each carry their own
// request's attributes and links: what a span's start is built in is
// reused from one span to the next.
func TestConcurrentSpansKeepTheirAttributes(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	obs, err := asyncreqotel.Instrument(asyncreqotel.WithTracerProvider(tp), asyncreqotel.WithQueue("reports"))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, obs.Close()) })
	h := obs.Hooks()

	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("%02d-%04d", g, i)
				// A submit span's context, as a traceparent, for the
				// claim's link.
				sc := trace.NewSpanContext(trace.SpanContextConfig{
					TraceID: trace.TraceID{1, byte(g), byte(i >> 8), byte(i)}, SpanID: trace.SpanID{1, byte(g), byte(i >> 8), byte(i)},
					TraceFlags: trace.FlagsSampled,
				})
				carrier := propagation.MapCarrier{}
				propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), carrier)
				h.Accepted(context.Background(), asyncreq.AcceptEvent{ID: id, Start: time.Now()})
				h.Claimed(context.Background(), asyncreq.ClaimEvent{ID: id, Attempt: i%3 + 1, Start: time.Now(), TraceParent: carrier.Get("traceparent")})
			}
		})
	}
	wg.Wait()

	ended := spans.Ended()
	require.Len(t, ended, 2*goroutines*each)
	for _, s := range ended {
		id := attr(s, asyncreqotel.AttrRequestID).AsString()
		var g, i int
		_, err := fmt.Sscanf(id, "%02d-%04d", &g, &i)
		require.NoError(t, err, "request id %q", id)
		assert.Equal(t, "reports", attr(s, asyncreqotel.AttrQueue).AsString())
		switch s.Name() {
		case "asyncreq.accept":
			assert.Len(t, s.Attributes(), 3)
		case "asyncreq.claim":
			assert.Equal(t, int64(i%3+1), attr(s, asyncreqotel.AttrAttempt).AsInt64(), id)
			require.Len(t, s.Links(), 1)
			assert.Equal(t, trace.SpanID{1, byte(g), byte(i >> 8), byte(i)}, s.Links()[0].SpanContext.SpanID(), id)
			assert.Len(t, s.Attributes(), 3)
		default:
			t.Fatalf("unexpected span %q", s.Name())
		}
	}
}

// A no-op TracerProvider turns tracing off: the hooks start no span, not
// even a no-op one, and keep no trace context with a request, while the
// metrics are still recorded.
func TestNoopTracerProviderStartsNoSpan(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	obs, err := asyncreqotel.Instrument(asyncreqotel.WithTracerProvider(noop.NewTracerProvider()), asyncreqotel.WithMeterProvider(mp))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, obs.Close()) })
	h := obs.Hooks()

	// A submit served inside another tracer's span, as behind an otelhttp
	// middleware.
	other := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = other.Shutdown(context.Background()) })
	ctx, span := other.Tracer("test").Start(context.Background(), "POST /reports")
	defer span.End()
	header := http.Header{}
	h.TraceContext(ctx, header)
	assert.Empty(t, header, "no trace context is kept")

	now := time.Now()
	h.Accepted(ctx, asyncreq.AcceptEvent{ID: "a", Start: now})
	h.Claimed(ctx, asyncreq.ClaimEvent{ID: "a", Attempt: 1, Start: now, CreatedAt: now, ClaimedAt: now})
	base := context.Background()
	actx := h.AttemptStarted(base, asyncreq.AttemptEvent{ID: "a", Attempt: 1, Start: now, CreatedAt: now})
	assert.True(t, actx == base, "the processor's context carries no span")
	h.AttemptFinished(actx, asyncreq.AttemptEvent{ID: "a", Attempt: 1, Start: now, CreatedAt: now, Outcome: asyncreq.OutcomeSucceeded, Final: true})

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	got := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = true
		}
	}
	for _, name := range []string{"asyncreq.requests.accepted", "asyncreq.attempts", "asyncreq.queue.wait", "asyncreq.request.duration"} {
		assert.True(t, got[name], "%s is recorded", name)
	}
}
