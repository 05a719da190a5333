package asyncreq_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hookLog records what Hooks were told; it is safe for concurrent use.
type hookLog struct {
	mu       sync.Mutex
	accepted []asyncreq.AcceptEvent
	rejected []asyncreq.RejectEvent
	served   []asyncreq.ServeEvent
	claimed  []asyncreq.ClaimEvent
	started  []asyncreq.AttemptEvent
	finished []asyncreq.AttemptEvent
	ctxOK    []bool // AttemptFinished got the context AttemptStarted returned
}

type hookKey struct{}

func (l *hookLog) hooks() *asyncreq.Hooks {
	lock := func(f func()) { l.mu.Lock(); defer l.mu.Unlock(); f() }
	return &asyncreq.Hooks{
		Accepted: func(_ context.Context, e asyncreq.AcceptEvent) { lock(func() { l.accepted = append(l.accepted, e) }) },
		Rejected: func(_ context.Context, e asyncreq.RejectEvent) { lock(func() { l.rejected = append(l.rejected, e) }) },
		Served:   func(_ context.Context, e asyncreq.ServeEvent) { lock(func() { l.served = append(l.served, e) }) },
		Claimed:  func(_ context.Context, e asyncreq.ClaimEvent) { lock(func() { l.claimed = append(l.claimed, e) }) },
		AttemptStarted: func(ctx context.Context, e asyncreq.AttemptEvent) context.Context {
			lock(func() { l.started = append(l.started, e) })
			return context.WithValue(ctx, hookKey{}, e.Attempt)
		},
		AttemptFinished: func(ctx context.Context, e asyncreq.AttemptEvent) {
			lock(func() {
				l.finished = append(l.finished, e)
				l.ctxOK = append(l.ctxOK, ctx.Value(hookKey{}) == e.Attempt)
			})
		},
	}
}

func TestHooksHandler(t *testing.T) {
	b := memory.New(nil)
	var l hookLog
	h, err := asyncreq.NewHandler(b, &asyncreq.HandlerOptions{Hooks: l.hooks(), MaxBodyBytes: 10})
	require.NoError(t, err)
	do := func(method, target, body string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	w := do(http.MethodPost, "/", "a", "Idempotency-Key", "k", "Traceparent", tp, "Tracestate", "v=1")
	require.Equal(t, http.StatusAccepted, w.Code)
	require.Equal(t, http.StatusAccepted, do(http.MethodPost, "/", "a", "Idempotency-Key", "k").Code)
	require.Equal(t, http.StatusUnprocessableEntity, do(http.MethodPost, "/", "b", "Idempotency-Key", "k").Code)
	require.Equal(t, http.StatusRequestEntityTooLarge, do(http.MethodPost, "/", strings.Repeat("x", 11)).Code)
	require.Equal(t, http.StatusBadRequest, do(http.MethodPost, "/", "c", asyncreq.CallbackHeader, "https://example.com/hook").Code)
	statusURL := w.Header().Get("Location")
	require.Equal(t, http.StatusOK, do(http.MethodGet, statusURL, "").Code)
	id := strings.TrimSuffix(strings.TrimPrefix(statusURL, "/"), "/status")
	require.Equal(t, http.StatusNotFound, do(http.MethodGet, "/"+id, "").Code)

	require.Len(t, l.accepted, 2)
	assert.Equal(t, id, l.accepted[0].ID)
	assert.False(t, l.accepted[0].Replay)
	assert.Equal(t, id, l.accepted[1].ID)
	assert.True(t, l.accepted[1].Replay)
	assert.Equal(t, []asyncreq.RejectEvent{
		{Status: http.StatusUnprocessableEntity, Reason: "invalid"},
		{Status: http.StatusRequestEntityTooLarge, Reason: "too_large"},
		{Status: http.StatusBadRequest, Reason: "bad_request"}, // a Callback-URL this handler does not serve
	}, l.rejected)
	assert.Equal(t, []asyncreq.ServeEvent{
		{Route: "status", ID: id, State: asyncreq.StatePending},
		{Route: "result", ID: id, State: asyncreq.StatePending},
	}, l.served)

	// The trace context is kept though KeepHeaders keeps nothing.
	rec, err := b.Get(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, http.Header{"Traceparent": {tp}, "Tracestate": {"v=1"}}, rec.Header)
}

func TestHooksTraceContextHook(t *testing.T) {
	b := memory.New(nil)
	const tp = "00-11111111111111111111111111111111-2222222222222222-01"
	hooks := &asyncreq.Hooks{TraceContext: func(ctx context.Context, h http.Header) { h.Set("Traceparent", tp) }}
	h, err := asyncreq.NewHandler(b, &asyncreq.HandlerOptions{Hooks: hooks})
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("a"))
	r.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusAccepted, w.Code)
	id := strings.TrimSuffix(strings.TrimPrefix(w.Header().Get("Location"), "/"), "/status")
	rec, err := b.Get(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, http.Header{"Traceparent": {tp}}, rec.Header)
}

// submitKey marks the context of a Go submit, to check that the hooks
// get it.
type submitKey struct{}

func TestHooksSubmit(t *testing.T) {
	b := newMemory(t)
	var l hookLog
	hooks := l.hooks()
	var wrongCtx int
	accepted, rejected := hooks.Accepted, hooks.Rejected
	hooks.Accepted = func(ctx context.Context, e asyncreq.AcceptEvent) {
		if ctx.Value(submitKey{}) == nil {
			wrongCtx++
		}
		accepted(ctx, e)
	}
	hooks.Rejected = func(ctx context.Context, e asyncreq.RejectEvent) {
		if ctx.Value(submitKey{}) == nil {
			wrongCtx++
		}
		rejected(ctx, e)
	}
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{
		Hooks:        hooks,
		MaxBodyBytes: 10,
		Validate: func(r *http.Request, body []byte) error {
			if string(body) == "invalid" {
				return errors.New("not that")
			}
			return nil
		},
	})
	ctx := context.WithValue(t.Context(), submitKey{}, true)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	s := asyncreq.Submission{
		Body: []byte("a"), IdempotencyKey: "k",
		Header: http.Header{"Traceparent": {tp}, "Tracestate": {"v=1"}, "X-Other": {"x"}},
	}
	sub, err := h.Submit(ctx, s)
	require.NoError(t, err)
	again, err := h.Submit(ctx, s) // a repeat: accepted again, as a replay
	require.NoError(t, err)
	require.True(t, again.Repeated)
	via, err := h.SubmitVia(ctx, asyncreq.Submission{Body: []byte("b"), Header: http.Header{"Tracestate": {"alone=1"}}}, b.Accept)
	require.NoError(t, err)

	_, err = h.Submit(ctx, asyncreq.Submission{Body: []byte("other"), IdempotencyKey: "k"})
	require.ErrorIs(t, err, asyncreq.ErrIdempotencyMismatch)
	_, err = h.Submit(ctx, asyncreq.Submission{Body: []byte("far too large")})
	var mbe *http.MaxBytesError
	require.ErrorAs(t, err, &mbe)
	_, err = h.Submit(ctx, asyncreq.Submission{Body: []byte("invalid")})
	require.ErrorIs(t, err, asyncreq.ErrRejected)
	_, err = h.Submit(ctx, asyncreq.Submission{Method: "NOT A METHOD"})
	require.Error(t, err)
	// A request stored but not yet enqueued is still being accepted.
	rec, err := h.NewRecord(ctx, asyncreq.Submission{Body: []byte("c"), IdempotencyKey: "half"})
	require.NoError(t, err)
	_, err = b.Create(ctx, rec)
	require.NoError(t, err)
	_, err = h.Submit(ctx, asyncreq.Submission{Body: []byte("c"), IdempotencyKey: "half"})
	require.ErrorIs(t, err, asyncreq.ErrStillAccepting)
	// A backend that cannot enqueue makes the submit unavailable.
	down := newTestHandler(t, asyncreq.Pair(b, refusingQueue{b}), &asyncreq.HandlerOptions{Hooks: hooks})
	_, err = down.Submit(ctx, asyncreq.Submission{Body: []byte("d")})
	require.Error(t, err)

	require.Len(t, l.accepted, 3)
	assert.Equal(t, sub.ID, l.accepted[0].ID)
	assert.False(t, l.accepted[0].Replay)
	assert.Equal(t, sub.ID, l.accepted[1].ID)
	assert.True(t, l.accepted[1].Replay)
	assert.Equal(t, l.accepted[0].CreatedAt, l.accepted[1].CreatedAt, "a replay carries the first submit's time")
	assert.Equal(t, via.ID, l.accepted[2].ID)
	assert.False(t, l.accepted[2].Replay)
	for _, e := range l.accepted {
		assert.False(t, e.Start.IsZero())
		assert.GreaterOrEqual(t, e.Duration, time.Duration(0))
	}
	assert.Equal(t, []asyncreq.RejectEvent{
		{Status: http.StatusUnprocessableEntity, Reason: "invalid"},
		{Status: http.StatusRequestEntityTooLarge, Reason: "too_large"},
		{Status: http.StatusUnprocessableEntity, Reason: "invalid"},
		{Status: http.StatusBadRequest, Reason: "bad_request"},
		{Status: http.StatusConflict, Reason: "conflict"},
		{Status: http.StatusServiceUnavailable, Reason: "unavailable"},
	}, l.rejected)
	assert.Zero(t, wrongCtx, "the hooks get the submit's context")

	// The trace context is kept though KeepHeaders keeps nothing, as for
	// a POST.
	got, err := b.Get(ctx, sub.ID)
	require.NoError(t, err)
	assert.Equal(t, http.Header{"Traceparent": {tp}, "Tracestate": {"v=1"}}, got.Header)
	got, err = b.Get(ctx, via.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Header, "a tracestate without its traceparent is not kept")
}

func TestHooksSubmitTraceContextHook(t *testing.T) {
	b := newMemory(t)
	// The hook keeps the span the submit's context carries, as a tracer's
	// would.
	hooks := &asyncreq.Hooks{TraceContext: func(ctx context.Context, h http.Header) {
		if tp, ok := ctx.Value(submitKey{}).(string); ok {
			h.Set("Traceparent", tp)
		}
	}}
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{Hooks: hooks})
	const tp = "00-11111111111111111111111111111111-2222222222222222-01"
	ctx := context.WithValue(t.Context(), submitKey{}, tp)
	s := asyncreq.Submission{Body: []byte("a"), Header: http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}

	sub, err := h.Submit(ctx, s)
	require.NoError(t, err)
	got, err := b.Get(ctx, sub.ID)
	require.NoError(t, err)
	assert.Equal(t, http.Header{"Traceparent": {tp}}, got.Header)

	rec, err := h.NewRecord(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, http.Header{"Traceparent": {tp}}, rec.Header, "NewRecord keeps what a submit keeps")

	// The trace context is no part of the fingerprint: a repeat under a
	// new trace is the same request.
	s.IdempotencyKey = "k"
	first, err := h.Submit(ctx, s)
	require.NoError(t, err)
	again, err := h.Submit(context.WithValue(t.Context(), submitKey{}, "00-33333333333333333333333333333333-4444444444444444-01"), s)
	require.NoError(t, err)
	assert.True(t, again.Repeated)
	assert.Equal(t, first.ID, again.ID)
}

func TestHooksWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		var l hookLog
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			time.Sleep(time.Second)
			switch string(req.Body) {
			case "retry":
				if req.Attempt == 1 {
					return nil, asyncreq.RetryAfter(errors.New("busy"), 7*time.Second)
				}
			case "panic":
				panic("boom")
			case "slow":
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return nil, nil
		})
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{
			Hooks: l.hooks(), MaxAttempts: 1, Timeout: 5 * time.Second, Concurrency: 1,
		})
		ok := acceptJob(t, b, "ok")
		awaitState(t, b, ok, asyncreq.StateSucceeded)
		slow := acceptJob(t, b, "slow")
		awaitState(t, b, slow, asyncreq.StateFailed)
		pan := acceptJob(t, b, "panic")
		awaitState(t, b, pan, asyncreq.StateFailed)
		synctest.Wait()

		l.mu.Lock()
		defer l.mu.Unlock()
		require.Len(t, l.claimed, 3)
		assert.Equal(t, ok, l.claimed[0].ID)
		assert.Equal(t, 1, l.claimed[0].Attempt)
		require.Len(t, l.started, 3)
		require.Len(t, l.finished, 3)
		type got struct {
			id, outcome string
			final       bool
			d           time.Duration
		}
		var gots []got
		for _, e := range l.finished {
			gots = append(gots, got{e.ID, e.Outcome, e.Final, e.Duration})
		}
		assert.Equal(t, []got{
			{ok, asyncreq.OutcomeSucceeded, true, time.Second},
			{slow, asyncreq.OutcomeTimedOut, true, 5 * time.Second},
			{pan, asyncreq.OutcomePanicked, true, time.Second},
		}, gots)
		assert.Equal(t, []bool{true, true, true}, l.ctxOK)
		assert.Error(t, l.finished[2].Err)
	})
}

func TestHooksWorkerRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		var l hookLog
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			if req.Attempt == 1 {
				return nil, asyncreq.RetryAfter(errors.New("busy"), 7*time.Second)
			}
			return nil, nil
		})
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{Hooks: l.hooks()})
		id := acceptJob(t, b, "x")
		awaitState(t, b, id, asyncreq.StateSucceeded)
		synctest.Wait()

		l.mu.Lock()
		defer l.mu.Unlock()
		require.Len(t, l.finished, 2)
		assert.Equal(t, asyncreq.OutcomeRetry, l.finished[0].Outcome)
		assert.False(t, l.finished[0].Final)
		assert.Equal(t, 7*time.Second, l.finished[0].RetryIn)
		assert.Equal(t, asyncreq.OutcomeSucceeded, l.finished[1].Outcome)
		assert.Equal(t, 2, l.finished[1].Attempt)
		assert.True(t, l.finished[1].Final)
		assert.Zero(t, l.finished[1].RetryIn)
	})
}
