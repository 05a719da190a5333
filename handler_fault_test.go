package asyncreq_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/asyncreq/asyncreq"
)

// errSecret is a backend error whose text must never reach a client.
var errSecret = errors.New("dial tcp 10.0.0.7:5432: password authentication failed for user \"secret\"")

// requireNoLeak checks that an answer carries no internal error text.
func requireNoLeak(t *testing.T, rr *httptest.ResponseRecorder) {
	t.Helper()
	require.NotContains(t, rr.Body.String(), "secret")
	require.NotContains(t, rr.Body.String(), "10.0.0.7")
}

// faultHandler returns a handler over mocks of a separate Store and Queue,
// logging into the returned buffer.
func faultHandler(t *testing.T) (*asyncreq.Handler, *MockStore, *MockQueue, *syncBuffer) {
	ctrl := gomock.NewController(t)
	store, queue := NewMockStore(ctrl), NewMockQueue(ctrl)
	var logs syncBuffer
	h := newTestHandler(t, asyncreq.Pair(store, queue), &asyncreq.HandlerOptions{Logger: logs.logger()})
	return h, store, queue, &logs
}

func TestSubmitQueueRefusesRollsBack(t *testing.T) {
	h, store, queue, logs := faultHandler(t)
	var created *asyncreq.Record
	gomock.InOrder(
		store.EXPECT().Create(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, r *asyncreq.Record) (*asyncreq.Record, error) {
			require.False(t, r.Enqueued, "created unenqueued")
			created = r.Clone()
			return nil, nil
		}),
		queue.EXPECT().Enqueue(gomock.Any(), gomock.Any(), time.Duration(0)).DoAndReturn(func(_ context.Context, id string, _ time.Duration) error {
			require.Equal(t, created.ID, id)
			return errSecret
		}),
		store.EXPECT().Delete(gomock.Any(), gomock.Any(), false).DoAndReturn(func(ctx context.Context, id string, _ bool) error {
			require.Equal(t, created.ID, id, "the record is rolled back")
			return nil
		}),
	)
	rr := serveReq(t, h, http.MethodPost, "/", "x")
	checkProblem(t, rr, http.StatusServiceUnavailable)
	assert.Equal(t, "1", rr.Header().Get("Retry-After"))
	assert.Empty(t, rr.Header().Get("Location"))
	requireNoLeak(t, rr)
	assert.Contains(t, logs.String(), "secret", "the error goes to the log")
}

func TestSubmitRollbackOutlivesTheClient(t *testing.T) {
	h, store, queue, _ := faultHandler(t)
	ctx, cancel := context.WithCancel(t.Context())
	gomock.InOrder(
		store.EXPECT().Create(gomock.Any(), gomock.Any()).Return(nil, nil),
		queue.EXPECT().Enqueue(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(func(context.Context, string, time.Duration) error {
			cancel() // the client goes away
			return context.Canceled
		}),
		store.EXPECT().Delete(gomock.Any(), gomock.Any(), false).DoAndReturn(func(ctx context.Context, _ string, _ bool) error {
			require.NoError(t, ctx.Err(), "the rollback is not canceled with the request")
			return nil
		}),
	)
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/", strings.NewReader("x"))
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, r)
	checkProblem(t, rr, http.StatusServiceUnavailable)
}

func TestSubmitRollbackFailureIsLogged(t *testing.T) {
	h, store, queue, logs := faultHandler(t)
	gomock.InOrder(
		store.EXPECT().Create(gomock.Any(), gomock.Any()).Return(nil, nil),
		queue.EXPECT().Enqueue(gomock.Any(), gomock.Any(), gomock.Any()).Return(errors.New("queue down")),
		store.EXPECT().Delete(gomock.Any(), gomock.Any(), false).Return(errors.New("store down too")),
	)
	rr := serveReq(t, h, http.MethodPost, "/", "x")
	checkProblem(t, rr, http.StatusServiceUnavailable)
	assert.Contains(t, logs.String(), "store down too")
	assert.Contains(t, logs.String(), "queue down")
}

func TestSubmitStoreRefuses(t *testing.T) {
	h, store, _, _ := faultHandler(t)
	store.EXPECT().Create(gomock.Any(), gomock.Any()).Return(nil, errSecret)
	rr := serveReq(t, h, http.MethodPost, "/", "x")
	checkProblem(t, rr, http.StatusServiceUnavailable)
	assert.Equal(t, "1", rr.Header().Get("Retry-After"))
	requireNoLeak(t, rr)
}

func TestSubmitMarkEnqueuedFailureStillAccepts(t *testing.T) {
	h, store, queue, logs := faultHandler(t)
	gomock.InOrder(
		store.EXPECT().Create(gomock.Any(), gomock.Any()).Return(nil, nil),
		queue.EXPECT().Enqueue(gomock.Any(), gomock.Any(), gomock.Any()).Return(nil),
		store.EXPECT().Update(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(
			func(_ context.Context, _ string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
				r := &asyncreq.Record{}
				require.NoError(t, fn(r))
				require.True(t, r.Enqueued)
				return nil, errSecret
			}),
	)
	rr := serveReq(t, h, http.MethodPost, "/", "x")
	require.Equal(t, http.StatusAccepted, rr.Code, "durable and queued: accepted")
	assert.Contains(t, logs.String(), "secret")
}

func TestSubmitDuplicateStillBeingAccepted(t *testing.T) {
	h, store, _, _ := faultHandler(t)
	store.EXPECT().Create(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, r *asyncreq.Record) (*asyncreq.Record, error) {
		return &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, BodyHash: r.BodyHash, IdempotencyKey: "k"}, asyncreq.ErrDuplicate
	})
	rr := serveReq(t, h, http.MethodPost, "/", "x", "Idempotency-Key", "k")
	checkProblem(t, rr, http.StatusConflict)
	assert.Equal(t, "1", rr.Header().Get("Retry-After"))

	store.EXPECT().Create(gomock.Any(), gomock.Any()).Return(
		&asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, BodyHash: "other", Enqueued: true}, asyncreq.ErrDuplicate)
	checkProblem(t, serveReq(t, h, http.MethodPost, "/", "x", "Idempotency-Key", "k"), http.StatusUnprocessableEntity)
}

// accepterBackend is one value that is Store, Queue and Accepter.
type accepterBackend struct {
	*MockStore
	*MockQueue
	*MockAccepter
}

func TestSubmitAccepterFailure(t *testing.T) {
	ctrl := gomock.NewController(t)
	b := &accepterBackend{NewMockStore(ctrl), NewMockQueue(ctrl), NewMockAccepter(ctrl)}
	h := newTestHandler(t, b, nil)

	b.MockAccepter.EXPECT().Accept(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, r *asyncreq.Record) (*asyncreq.Record, error) {
		require.True(t, r.Enqueued)
		return nil, nil
	})
	postJob(t, h, "x")

	b.MockAccepter.EXPECT().Accept(gomock.Any(), gomock.Any()).Return(nil, errSecret)
	rr := serveReq(t, h, http.MethodPost, "/", "x")
	checkProblem(t, rr, http.StatusServiceUnavailable)
	requireNoLeak(t, rr)
}

func TestStoreDownWhileReading(t *testing.T) {
	id := asyncreq.NewID()
	for _, tc := range []struct{ method, target string }{
		{http.MethodGet, "/" + id + "/status"},
		{http.MethodHead, "/" + id + "/status"},
		{http.MethodGet, "/" + id},
	} {
		h, store, _, logs := faultHandler(t)
		store.EXPECT().Get(gomock.Any(), id).Return(nil, errSecret)
		rr := serveReq(t, h, tc.method, tc.target, "")
		require.Equal(t, http.StatusServiceUnavailable, rr.Code)
		assert.Equal(t, "1", rr.Header().Get("Retry-After"))
		assert.Equal(t, "application/problem+json", rr.Header().Get("Content-Type"))
		if tc.method == http.MethodGet {
			checkProblem(t, rr, http.StatusServiceUnavailable)
			requireNoLeak(t, rr)
		}
		assert.Contains(t, logs.String(), "secret")
	}
}

func TestStoreDownWhileDeleting(t *testing.T) {
	id := asyncreq.NewID()
	h, store, _, _ := faultHandler(t)
	store.EXPECT().Update(gomock.Any(), id, gomock.Any()).Return(nil, errSecret)
	rr := serveReq(t, h, http.MethodDelete, "/"+id, "")
	checkProblem(t, rr, http.StatusServiceUnavailable)
	requireNoLeak(t, rr)

	// A final record whose Delete fails.
	store.EXPECT().Update(gomock.Any(), id, gomock.Any()).DoAndReturn(
		func(_ context.Context, _ string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
			return nil, fn(&asyncreq.Record{ID: id, State: asyncreq.StateSucceeded})
		})
	store.EXPECT().Delete(gomock.Any(), id, true).Return(errSecret)
	rr = serveReq(t, h, http.MethodDelete, "/"+id, "")
	checkProblem(t, rr, http.StatusServiceUnavailable)
	requireNoLeak(t, rr)
}

// watchingStore is a Store with a Watcher.
type watchingStore struct {
	*MockStore
	*MockWatcher
}

func TestLongPollWatchFailureFallsBackToPolling(t *testing.T) {
	ctrl := gomock.NewController(t)
	s := &watchingStore{NewMockStore(ctrl), NewMockWatcher(ctrl)}
	var logs syncBuffer
	h := newTestHandler(t, asyncreq.Pair(s, NewMockQueue(ctrl)), &asyncreq.HandlerOptions{Logger: logs.logger()})
	id := asyncreq.NewID()
	pending := &asyncreq.Record{ID: id, State: asyncreq.StatePending}
	running := &asyncreq.Record{ID: id, State: asyncreq.StateRunning}
	gomock.InOrder(
		s.MockStore.EXPECT().Get(gomock.Any(), id).Return(pending, nil),
		s.MockWatcher.EXPECT().Watch(gomock.Any(), id).Return(nil, errors.New("watch unsupported")),
		s.MockStore.EXPECT().Get(gomock.Any(), id).Return(pending, nil),
		s.MockStore.EXPECT().Get(gomock.Any(), id).Return(running, nil),
	)
	rr := serveReq(t, h, http.MethodGet, "/"+id+"/status", "", "Prefer", "wait=5")
	require.Equal(t, http.StatusOK, rr.Code)
	assert.Equal(t, asyncreq.StateRunning, readDoc(t, rr).Status)
	assert.Contains(t, logs.String(), "watch unsupported")
}

func TestLongPollStoreFailure(t *testing.T) {
	h, store, _, _ := faultHandler(t)
	id := asyncreq.NewID()
	gomock.InOrder(
		store.EXPECT().Get(gomock.Any(), id).Return(&asyncreq.Record{ID: id, State: asyncreq.StatePending}, nil),
		store.EXPECT().Get(gomock.Any(), id).Return(nil, errSecret),
	)
	rr := serveReq(t, h, http.MethodGet, "/"+id+"/status", "", "Prefer", "wait=5")
	checkProblem(t, rr, http.StatusServiceUnavailable)
	requireNoLeak(t, rr)
}

func TestMalformedIDNeverReachesTheStore(t *testing.T) {
	h, _, _, _ := faultHandler(t) // any Store call fails the test
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		checkProblem(t, serveReq(t, h, m, "/0123", ""), http.StatusNotFound)
	}
	checkProblem(t, serveReq(t, h, http.MethodGet, "/ZZZZZZZZZZZZZZZZZZZZZZZZZZ/status", ""), http.StatusNotFound)
}

func TestStatusDocumentTimesAreUTC(t *testing.T) {
	h, store, _, _ := faultHandler(t)
	id := asyncreq.NewID()
	zone := time.FixedZone("UTC+5", 5*3600)
	at := time.Date(2026, 11, 26, 15, 0, 0, 0, zone)
	store.EXPECT().Get(gomock.Any(), id).Return(&asyncreq.Record{
		ID: id, State: asyncreq.StateFailed, CreatedAt: at, UpdatedAt: at, ExpiresAt: at.Add(time.Hour),
		Error: &asyncreq.Problem{Status: 422, Detail: "bad input"},
	}, nil)
	rr := serveReq(t, h, http.MethodGet, "/"+id+"/status", "")
	require.Equal(t, http.StatusOK, rr.Code)
	body := rr.Body.String()
	assert.Contains(t, body, `"created_at":"2026-11-26T10:00:00Z"`)
	assert.Contains(t, body, `"updated_at":"2026-11-26T10:00:00Z"`)
	assert.Contains(t, body, `"expires_at":"2026-11-26T11:00:00Z"`)
	assert.Contains(t, body, `"error":{"type":"about:blank","title":"Unprocessable Content","status":422,"detail":"bad input"}`)
	assert.NotContains(t, body, "progress")
	assert.NotContains(t, body, "result_url")
}

func TestStoreReturningNothingIsNoPanic(t *testing.T) {
	h, store, _, logs := faultHandler(t)
	id := asyncreq.NewID()
	store.EXPECT().Get(gomock.Any(), id).Return(nil, nil)
	checkProblem(t, serveReq(t, h, http.MethodGet, "/"+id+"/status", ""), http.StatusServiceUnavailable)
	store.EXPECT().Update(gomock.Any(), id, gomock.Any()).Return(nil, nil)
	checkProblem(t, serveReq(t, h, http.MethodDelete, "/"+id, ""), http.StatusServiceUnavailable)
	assert.Contains(t, logs.String(), "neither a record nor an error")
}
