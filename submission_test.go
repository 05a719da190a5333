package asyncreq_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// upperProcessor answers the body in upper case.
var upperProcessor = asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
	return &asyncreq.Result{ContentType: "text/plain", Body: []byte(strings.ToUpper(string(req.Body)))}, nil
})

// startWorker starts a Worker running p over b, stopped when the test ends.
func startWorker(t testing.TB, b asyncreq.Backend, p asyncreq.Processor) {
	t.Helper()
	w, err := asyncreq.NewWorker(b, p, nil)
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
}

// ownerFromHeader is an Owner function trusting X-User, for tests.
func ownerFromHeader(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil }

func TestSubmitFromGoIsServedOverHTTP(t *testing.T) {
	b := newMemory(t)
	startWorker(t, b, upperProcessor)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{BasePath: "/jobs", Owner: ownerFromHeader})

	sub, err := h.Submit(context.Background(), asyncreq.Submission{
		ContentType: "text/plain", Body: []byte("hello"), Owner: "alice",
	})
	require.NoError(t, err)
	assert.True(t, asyncreq.ValidID(sub.ID))
	assert.Equal(t, "/jobs/"+sub.ID+"/status", sub.StatusURL)
	assert.Equal(t, "/jobs/"+sub.ID, sub.ResultURL)
	assert.Equal(t, asyncreq.StatePending, sub.State)
	assert.False(t, sub.Repeated)

	rr := serveReq(t, h, http.MethodGet, sub.StatusURL, "", "X-User", "alice", "Prefer", "wait=10")
	for rr.Code == http.StatusOK {
		rr = serveReq(t, h, http.MethodGet, sub.StatusURL, "", "X-User", "alice", "Prefer", "wait=10")
	}
	require.Equal(t, http.StatusSeeOther, rr.Code, rr.Body.String())
	require.Equal(t, sub.ResultURL, rr.Header().Get("Location"))
	rr = serveReq(t, h, http.MethodGet, sub.ResultURL, "", "X-User", "alice")
	assert.Equal(t, http.StatusOK, rr.Code)
	assert.Equal(t, "HELLO", rr.Body.String())

	// To another owner the request does not exist, as for a POST.
	rr = serveReq(t, h, http.MethodGet, sub.StatusURL, "", "X-User", "mallory")
	checkProblem(t, rr, http.StatusNotFound)
}

func TestSubmitFromGoIdempotency(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{BasePath: "/jobs", Owner: ownerFromHeader})
	ctx := context.Background()
	s := asyncreq.Submission{ContentType: "text/plain", Body: []byte("report"), Owner: "alice", IdempotencyKey: "k1"}

	first, err := h.Submit(ctx, s)
	require.NoError(t, err)
	again, err := h.Submit(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, first.ID, again.ID)
	assert.True(t, again.Repeated)

	// The same request POSTed with the same key is the same request: the
	// Go and HTTP paths record the same fields and fingerprint.
	rr := serveReq(t, h, http.MethodPost, "/jobs", "report", "Content-Type", "text/plain", "X-User", "alice", "Idempotency-Key", "k1")
	require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
	assert.Equal(t, first.StatusURL, rr.Header().Get("Location"))

	// Another owner's key is another key.
	other, err := h.Submit(ctx, asyncreq.Submission{Body: []byte("report"), ContentType: "text/plain", Owner: "bob", IdempotencyKey: "k1"})
	require.NoError(t, err)
	assert.NotEqual(t, first.ID, other.ID)

	// A different request under the key is refused, on both paths alike.
	s.Body = []byte("another report")
	_, err = h.Submit(ctx, s)
	require.ErrorIs(t, err, asyncreq.ErrIdempotencyMismatch)
	rr = serveReq(t, h, http.MethodPost, "/jobs", "another report", "Content-Type", "text/plain", "X-User", "alice", "Idempotency-Key", "k1")
	checkProblem(t, rr, http.StatusUnprocessableEntity)
}

func TestSubmitFromGoRefusals(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{
		MaxBodyBytes: 8,
		Validate: func(r *http.Request, body []byte) error {
			if r.Header.Get("Content-Type") != "text/plain" {
				return &asyncreq.Problem{Status: http.StatusUnsupportedMediaType, Detail: "text/plain only"}
			}
			return nil
		},
	})
	ctx := context.Background()

	_, err := h.Submit(ctx, asyncreq.Submission{ContentType: "text/plain", Body: []byte("123456789")})
	var mbe *http.MaxBytesError
	require.ErrorAs(t, err, &mbe)
	assert.EqualValues(t, 8, mbe.Limit)

	_, err = h.Submit(ctx, asyncreq.Submission{ContentType: "application/json", Body: []byte("{}")})
	require.ErrorIs(t, err, asyncreq.ErrRejected)
	var p *asyncreq.Problem
	require.ErrorAs(t, err, &p)
	assert.Equal(t, http.StatusUnsupportedMediaType, p.Status)

	for _, s := range []asyncreq.Submission{
		{Method: "GET POST"},
		{URL: "http://example.com/"},
		{URL: "jobs"},
		{IdempotencyKey: "a\x00b"},
		{IdempotencyKey: strings.Repeat("k", 256)},
		{IdempotencyKey: `"quoted"`},
	} {
		s.ContentType = "text/plain"
		_, err := h.Submit(ctx, s)
		assert.Error(t, err, "%+v", s)
	}
}

// refusingQueue is a Queue whose Enqueue fails.
type refusingQueue struct{ asyncreq.Queue }

func (refusingQueue) Enqueue(context.Context, string, time.Duration) error {
	return errors.New("queue down")
}

// creates records the ids a Store created.
type creates struct {
	asyncreq.Store
	ids []string
}

func (c *creates) Create(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	c.ids = append(c.ids, rec.ID)
	return c.Store.Create(ctx, rec)
}

func TestSubmitFromGoUndoesAFailedEnqueue(t *testing.T) {
	b := newMemory(t)
	store := &creates{Store: b}
	h := newTestHandler(t, asyncreq.Pair(store, refusingQueue{b}), nil)

	_, err := h.Submit(context.Background(), asyncreq.Submission{Body: []byte("x")})
	require.ErrorContains(t, err, "queue down")
	require.Len(t, store.ids, 1)
	_, err = b.Get(context.Background(), store.ids[0])
	assert.ErrorIs(t, err, asyncreq.ErrNotFound)
}

func TestSubmitVia(t *testing.T) {
	b := newMemory(t)
	startWorker(t, b, upperProcessor)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{KeepHeaders: []string{"X-Tenant"}})
	ctx := context.Background()

	var got []*asyncreq.Record
	accept := func(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
		got = append(got, rec.Clone())
		return b.Accept(ctx, rec)
	}
	s := asyncreq.Submission{
		ContentType: "text/plain", Body: []byte("via"), IdempotencyKey: "k",
		Header: http.Header{"X-Tenant": {"t1"}, "Authorization": {"Bearer secret"}},
	}
	sub, err := h.SubmitVia(ctx, s, accept)
	require.NoError(t, err)
	require.Len(t, got, 1)
	rec := got[0]
	assert.Equal(t, sub.ID, rec.ID)
	assert.Equal(t, asyncreq.StatePending, rec.State)
	assert.True(t, rec.Enqueued)
	assert.Equal(t, http.MethodPost, rec.Method)
	assert.Equal(t, "/", rec.URL)
	assert.Equal(t, http.Header{"X-Tenant": {"t1"}}, rec.Header, "only the kept headers are recorded")
	assert.NotEmpty(t, rec.BodyHash)
	assert.Positive(t, rec.Retention)
	assert.Positive(t, rec.TombstoneTTL)

	again, err := h.SubmitVia(ctx, s, accept)
	require.NoError(t, err)
	assert.Equal(t, sub.ID, again.ID)
	assert.True(t, again.Repeated)

	rr := serveReq(t, h, http.MethodGet, sub.StatusURL, "", "Prefer", "wait=10")
	for rr.Code == http.StatusOK {
		rr = serveReq(t, h, http.MethodGet, sub.StatusURL, "", "Prefer", "wait=10")
	}
	assert.Equal(t, http.StatusSeeOther, rr.Code)
}
