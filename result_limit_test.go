package asyncreq_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// A Result larger than MaxResultBytes (10 MiB by default) fails the request
// for good with a problem that says so, and is never stored.
func TestWorkerResultTooLarge(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int64
		res   *asyncreq.Result
		ok    bool
	}{
		{"default limit", 0, &asyncreq.Result{Body: make([]byte, 10<<20+1)}, false},
		{"default limit, at it", 0, &asyncreq.Result{Body: make([]byte, 10<<20)}, true},
		{"body over", 100, &asyncreq.Result{Body: make([]byte, 101)}, false},
		{"headers count", 100, &asyncreq.Result{Header: http.Header{"X-Big": {string(make([]byte, 96))}}}, false},
		{"at the limit", 100, &asyncreq.Result{ContentType: "text/plain", Body: make([]byte, 90)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := memory.New(nil)
				h := newTestHandler(t, b, nil)
				var calls atomic.Int32
				logs := &workerLog{}
				startTestWorker(t, b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
					calls.Add(1)
					return tc.res, nil
				}), &asyncreq.WorkerOptions{MaxResultBytes: tc.limit, Logger: logs.logger()})
				id := postJob(t, h, "x")
				if tc.ok {
					rec := awaitState(t, b, id, asyncreq.StateSucceeded)
					require.NotNil(t, rec.Result)
					return
				}
				rec := awaitState(t, b, id, asyncreq.StateFailed)
				assert.EqualValues(t, 1, calls.Load(), "not retried")
				assert.Nil(t, rec.Result, "never stored")
				require.NotNil(t, rec.Error)
				assert.Equal(t, http.StatusInternalServerError, rec.Error.Status)
				assert.Contains(t, rec.Error.Detail, "result is larger than")
				p := checkProblem(t, serveReq(t, h, http.MethodGet, "/"+id, ""), http.StatusInternalServerError)
				assert.Contains(t, p.Detail, "result is larger than")
				assert.Contains(t, logs.String(), "too large")
			})
		})
	}
}

func TestWorkerMaxResultBytesValidation(t *testing.T) {
	b := newMemory(t)
	_, err := asyncreq.NewWorker(b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		return nil, nil
	}), &asyncreq.WorkerOptions{MaxResultBytes: -1})
	require.ErrorContains(t, err, "WorkerOptions.MaxResultBytes")
}

// streamInto writes chunk after chunk of size n until total bytes were
// offered or a Write fails; it returns the bytes accepted and the error.
func streamInto(w http.ResponseWriter, n, total int) (int, error) {
	w.Header().Set("Content-Type", "application/octet-stream")
	chunk := make([]byte, n)
	accepted := 0
	for accepted < total {
		m, err := w.Write(chunk)
		accepted += m
		if err != nil {
			return accepted, err
		}
	}
	return accepted, nil
}

// A wrapped handler's response is buffered only up to MaxResultBytes: the
// Write that passes it fails, the handler can stop, and the request fails
// for good with a problem that says the result was too large.
func TestAsyncResultTooLarge(t *testing.T) {
	const limit = 64 << 10
	type wrote struct {
		n   int
		err error
	}
	wrotec := make(chan wrote, 1)
	logs := &workerLog{}
	a := startAsync(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := streamInto(w, 1<<10, 1<<20)
		wrotec <- wrote{n, err}
	}), &asyncreq.AsyncOptions{Worker: asyncreq.WorkerOptions{MaxResultBytes: limit, Logger: logs.logger()}})

	id := postJob(t, a, "x")
	w := <-wrotec
	require.ErrorIs(t, w.err, asyncreq.ErrResultTooLarge, "the Write past the limit fails")
	assert.LessOrEqual(t, w.n, limit, "nothing past the limit is buffered")
	assert.Greater(t, w.n, limit-2<<10)

	var doc asyncreq.StatusDocument
	for !doc.Status.Final() {
		doc = readDoc(t, serveReq(t, a, http.MethodGet, "/"+id+"/status", "", "Prefer", "wait=5"))
	}
	assert.Equal(t, asyncreq.StateFailed, doc.Status)
	assert.Equal(t, 1, doc.Attempts, "not retried")
	p := checkProblem(t, serveReq(t, a, http.MethodGet, "/"+id, ""), http.StatusInternalServerError)
	assert.Contains(t, p.Detail, "result is larger than")
	assert.Contains(t, logs.String(), "result too large")
}

// Outside a Worker, HandlerProcessor buffers at most the default 10 MiB.
func TestHandlerProcessorDefaultResultLimit(t *testing.T) {
	var n int
	var werr error
	_, err := asyncreq.HandlerProcessor(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, werr = streamInto(w, 64<<10, 11<<20)
	})).Process(t.Context(), &asyncreq.Request{URL: "/"})
	require.ErrorIs(t, werr, asyncreq.ErrResultTooLarge)
	assert.LessOrEqual(t, n, 10<<20)
	var pe *asyncreq.PermanentError
	require.ErrorAs(t, err, &pe)
	require.ErrorIs(t, err, asyncreq.ErrResultTooLarge)

	// A response at the limit passes.
	res, err := asyncreq.HandlerProcessor(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "a/b")
		_, werr = w.Write(make([]byte, 10<<20-len("a/b")))
	})).Process(t.Context(), &asyncreq.Request{URL: "/"})
	require.NoError(t, werr)
	require.NoError(t, err)
	assert.Len(t, res.Body, 10<<20-3)
}
