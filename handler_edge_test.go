package asyncreq_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// A submit answered with its result (Prefer: wait) is not a conditional
// GET of that result: If-None-Match must not turn it into 304.
func TestSubmitPreferWaitIgnoresIfNoneMatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		h := newTestHandler(t, b, nil)
		done := finishAfter(b, time.Second, succeed(&asyncreq.Result{ContentType: "text/plain", Body: []byte("done")}))
		rr := serveReq(t, h, http.MethodPost, "/", "x", "Prefer", "wait=10", "If-None-Match", "*")
		<-done
		require.Equal(t, http.StatusOK, rr.Code)
		assert.Equal(t, "done", rr.Body.String())

		// A GET of the result still honours it.
		rr = serveReq(t, h, http.MethodGet, rr.Header().Get("Content-Location"), "", "If-None-Match", rr.Header().Get("ETag"))
		assert.Equal(t, http.StatusNotModified, rr.Code)
	})
}

// A request target that starts with "//" (let through by a router or
// middleware that cleaned only r.URL.Path) must not become a Location that
// names another host.
func TestURLsNeverNameAnotherHost(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{BasePath: "/jobs"})
	for _, target := range []string{"//evil.example/jobs", `/\evil.example/jobs`, "http://host//evil.example/jobs"} {
		t.Run(target, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/jobs", strings.NewReader("x"))
			r.RequestURI = target // what the client sent; r.URL.Path was cleaned
			rr := httptest.NewRecorder()
			h.ServeHTTP(rr, r)
			require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
			loc := rr.Header().Get("Location")
			assert.Regexp(t, "^/jobs/[0-9A-Z]{30}/status$", loc)
			assert.Equal(t, loc, readDoc(t, rr).StatusURL)
		})
	}
}

// A long poll keeps one live watch, not one per change it sees.
func TestLongPollReleasesReplacedWatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		wc := &watchCounter{Backend: b}
		h := newTestHandler(t, wc, nil)
		id := postJob(t, h, "x")

		var answered atomic.Bool
		answer := make(chan int, 1)
		go func() {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("y"))
			r.Header.Set("Prefer", "wait=30")
			rr := httptest.NewRecorder()
			h.ServeHTTP(rr, r)
			answered.Store(true)
			answer <- rr.Code
		}()
		synctest.Wait()
		l, err := b.Dequeue(t.Context(), time.Hour) // the first request
		require.NoError(t, err)
		require.Equal(t, id, l.ID)
		l, err = b.Dequeue(t.Context(), time.Hour) // the one waited for
		require.NoError(t, err)
		for i := range 50 {
			setRecord(t, b, l.ID, func(r *asyncreq.Record) {
				r.State = asyncreq.StateRunning
				r.Progress = &asyncreq.Progress{Percent: i}
			})
			synctest.Wait()
		}
		assert.False(t, answered.Load())
		assert.EqualValues(t, 1, wc.live.Load(), "one live watch")
		setRecord(t, b, l.ID, succeed(&asyncreq.Result{Body: []byte("ok")}))
		synctest.Wait()
		assert.True(t, answered.Load())
		assert.Equal(t, http.StatusOK, <-answer)
		assert.Zero(t, wc.live.Load())
	})
}

// A handler whose answer cannot be replayed fails the request with a
// problem that shows no Go error text; the text goes to the log.
func TestAsyncUnreplayableAnswerLeaksNoErrorText(t *testing.T) {
	logs := &workerLog{}
	a := startAsync(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(42)
	}), &asyncreq.AsyncOptions{Worker: asyncreq.WorkerOptions{Logger: logs.logger()}})
	rr := serveReq(t, a, http.MethodPost, "/", "x", "Prefer", "wait=10")
	require.Equal(t, http.StatusSeeOther, rr.Code, "a request that failed in time: %s", rr.Body.String())
	assert.NotContains(t, rr.Body.String(), "asyncreq:")
	rr = serveReq(t, a, http.MethodGet, "/"+readDoc(t, rr).ID, "")
	p := checkProblem(t, rr, http.StatusInternalServerError)
	assert.Equal(t, "the handler's response cannot be replayed", p.Detail)
	assert.NotContains(t, rr.Body.String(), "asyncreq:")
	assert.NotContains(t, rr.Body.String(), "42")
	assert.Contains(t, logs.String(), "invalid status code 42")

	_, err := asyncreq.HandlerProcessor(http.NotFoundHandler()).Process(context.Background(), &asyncreq.Request{URL: "::not a url"})
	var prob *asyncreq.Problem
	require.ErrorAs(t, err, &prob)
	assert.NotContains(t, prob.Detail, "not a url")
}

// The mark that the Queue holds a new request is made even when the client
// has gone, but a Store that hangs must not hold the answer forever.
func TestSubmitMarkEnqueuedIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, store, queue, logs := faultHandler(t)
		gomock.InOrder(
			store.EXPECT().Create(gomock.Any(), gomock.Any()).Return(nil, nil),
			queue.EXPECT().Enqueue(gomock.Any(), gomock.Any(), gomock.Any()).Return(nil),
			store.EXPECT().Update(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(
				func(ctx context.Context, _ string, _ func(*asyncreq.Record) error) (*asyncreq.Record, error) {
					<-ctx.Done() // hung until the caller gives up
					return nil, ctx.Err()
				}),
		)
		start := time.Now()
		rr := serveReq(t, h, http.MethodPost, "/", "x")
		require.Equal(t, http.StatusAccepted, rr.Code)
		assert.Equal(t, 10*time.Second, time.Since(start))
		assert.Contains(t, logs.String(), "marking a request enqueued")
	})
}

// A *Problem answers as the Handler's own problems do: defaults filled in,
// a status that is not an error status made 500, no body for HEAD.
func TestProblemServeHTTP(t *testing.T) {
	rr := httptest.NewRecorder()
	(&asyncreq.Problem{Status: http.StatusRequestEntityTooLarge, Detail: "too big"}).ServeHTTP(rr, httptest.NewRequest(http.MethodPost, "/", nil))
	p := checkProblem(t, rr, http.StatusRequestEntityTooLarge)
	assert.Equal(t, "about:blank", p.Type)
	assert.Equal(t, "too big", p.Detail)
	assert.Equal(t, "nosniff", rr.Header().Get("X-Content-Type-Options"))

	rr = httptest.NewRecorder()
	(&asyncreq.Problem{Status: http.StatusOK, Detail: "not an error"}).ServeHTTP(rr, httptest.NewRequest(http.MethodPost, "/", nil))
	checkProblem(t, rr, http.StatusInternalServerError)

	rr = httptest.NewRecorder()
	(&asyncreq.Problem{Status: http.StatusConflict, Detail: "x"}).ServeHTTP(rr, httptest.NewRequest(http.MethodHead, "/", nil))
	assert.Equal(t, http.StatusConflict, rr.Code)
	assert.Zero(t, rr.Body.Len())
}
