package tracelink_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/asyncreq/asyncreq"
	asyncreqotel "github.com/asyncreq/asyncreq/otel"
	"github.com/asyncreq/asyncreq/postgres"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// postgresBackend returns a Backend on a fresh schema of the database
// ASYNCREQ_TEST_POSTGRES names, dropped when t ends, or skips t.
func postgresBackend(t *testing.T) *postgres.Backend {
	t.Helper()
	dsn := os.Getenv("ASYNCREQ_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("ASYNCREQ_TEST_POSTGRES is not set; set it to a PostgreSQL URL such as " +
			"postgres://postgres@127.0.0.1:5432/test?sslmode=disable to check the trace links across PostgreSQL")
	}
	ctx := t.Context()
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "asyncreq_trace_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	opts := &postgres.Options{Schema: schema, Queue: "reports"}
	require.NoError(t, postgres.Migrate(ctx, pool, opts))
	be, err := postgres.New(ctx, pool, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = be.Close() })
	return be
}

// rig is a Handler and a started Worker over b, instrumented with an
// in-memory span recorder; h serves each request inside a server span, as
// an otelhttp middleware would.
type rig struct {
	handler *asyncreq.Handler
	h       http.Handler
	tracer  trace.Tracer
	spans   *tracetest.SpanRecorder
}

func newRig(t *testing.T, b asyncreq.Backend) *rig {
	t.Helper()
	r := &rig{spans: tracetest.NewSpanRecorder()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	obs, err := asyncreqotel.Instrument(asyncreqotel.WithTracerProvider(tp), asyncreqotel.WithQueue("reports"))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, obs.Close()) })

	p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{ContentType: "text/plain", Body: req.Body}, nil
	})
	r.handler, err = asyncreq.NewHandler(b, &asyncreq.HandlerOptions{Hooks: obs.Hooks()})
	require.NoError(t, err)
	w, err := asyncreq.NewWorker(b, p, &asyncreq.WorkerOptions{Hooks: obs.Hooks(), Concurrency: 2})
	require.NoError(t, err)
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() { assert.NoError(t, w.Stop(context.Background())) })

	r.tracer = tp.Tracer("test")
	r.h = http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		ctx := propagation.TraceContext{}.Extract(req.Context(), propagation.HeaderCarrier(req.Header))
		ctx, span := r.tracer.Start(ctx, "POST /reports", trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		r.handler.ServeHTTP(rw, req.WithContext(ctx))
	})
	return r
}

// wait long-polls statusURL until the request has succeeded.
func (r *rig) wait(t *testing.T, statusURL string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, statusURL, nil)
		req.Header.Set("Prefer", "wait=2")
		r.handler.ServeHTTP(w, req)
		if w.Code == http.StatusSeeOther {
			return
		}
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	}
	t.Fatal("the request did not finish")
}

// ended waits for the ended span of that name about request id.
func (r *rig) ended(t *testing.T, name, id string) sdktrace.ReadOnlySpan {
	t.Helper()
	var got sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, s := range r.spans.Ended() {
			if s.Name() == name && attr(s, asyncreqotel.AttrRequestID).AsString() == id {
				got = s
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "no %s span for %s", name, id)
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

// linked checks that s links to the span submit, and only to it.
func linked(t *testing.T, s sdktrace.ReadOnlySpan, submit trace.SpanContext) {
	t.Helper()
	require.Len(t, s.Links(), 1, s.Name())
	assert.Equal(t, submit.TraceID(), s.Links()[0].SpanContext.TraceID(), "%s links to the submit's trace", s.Name())
	assert.Equal(t, submit.SpanID(), s.Links()[0].SpanContext.SpanID(), "%s links to the submit's span", s.Name())
	assert.NotEqual(t, submit.TraceID(), s.SpanContext().TraceID(), "%s is a trace of its own", s.Name())
}

func TestProcessSpanLinksToSubmitPostgres(t *testing.T) {
	r := newRig(t, postgresBackend(t))

	// A POST, continuing its client's trace.
	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("over http"))
	req.Header.Set("Traceparent", "00-"+clientTrace+"-00f067aa0ba902b7-01")
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req)
	require.Equal(t, http.StatusAccepted, w.Code, w.Body.String())
	statusURL := w.Header().Get("Location")
	r.wait(t, statusURL)
	id := strings.TrimSuffix(strings.TrimPrefix(statusURL, "/"), "/status")

	var post sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Name() == "POST /reports" {
			post = s
		}
	}
	require.NotNil(t, post, "the submit's server span")
	assert.Equal(t, clientTrace, post.SpanContext().TraceID().String())
	accept := r.ended(t, "asyncreq.accept", id)
	assert.Equal(t, post.SpanContext().SpanID(), accept.Parent().SpanID(), "the accept span is under the submit's")
	linked(t, r.ended(t, "asyncreq.claim", id), post.SpanContext())
	proc := r.ended(t, "asyncreq.process", id)
	linked(t, proc, post.SpanContext())
	assert.Equal(t, "reports", attr(proc, asyncreqotel.AttrQueue).AsString())
	assert.Equal(t, asyncreq.OutcomeSucceeded, attr(proc, asyncreqotel.AttrOutcome).AsString())

	// A submit from Go, inside a span of its caller.
	ctx, caller := r.tracer.Start(t.Context(), "caller")
	sub, err := r.handler.Submit(ctx, asyncreq.Submission{ContentType: "text/plain", Body: []byte("from go")})
	caller.End()
	require.NoError(t, err)
	r.wait(t, sub.StatusURL)
	accept = r.ended(t, "asyncreq.accept", sub.ID)
	assert.Equal(t, caller.SpanContext().SpanID(), accept.Parent().SpanID(), "the accept span is under the caller's")
	linked(t, r.ended(t, "asyncreq.process", sub.ID), caller.SpanContext())
}
