package asyncreq_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/client"
	"github.com/asyncreq/asyncreq/memory"
)

// downstreamDetail is what a downstream service tells its own caller: it
// must never reach this request's client.
const downstreamDetail = "pgbouncer pool exhausted on 10.2.3.4"

// A *Problem found deep in an error's chain is someone else's answer (a
// downstream service's, wrapped with %w), not this request's verdict: the
// attempt is retried like any other failure, and when the attempts run out
// the client sees the generic 500, with the text only in the log.
func TestWorkerWrappedProblemIsRetried(t *testing.T) {
	downstream := &asyncreq.Problem{Title: "Service Unavailable", Status: http.StatusServiceUnavailable, Detail: downstreamDetail}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"client response error wrapped", fmt.Errorf("charging card: %w", &client.ResponseError{
			Method: http.MethodPost, URL: "https://payments.internal/charges",
			StatusCode: http.StatusServiceUnavailable, Problem: downstream,
		})},
		{"problem wrapped", fmt.Errorf("charging card: %w", downstream)},
		{"problem wrapped by RetryAfter", asyncreq.RetryAfter(downstream, time.Second)},
		{"problem joined", errors.Join(errors.New("charging card"), downstream)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := memory.New(nil)
				h := newTestHandler(t, b, nil)
				var calls atomic.Int32
				logs := &workerLog{}
				startTestWorker(t, b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
					calls.Add(1)
					return nil, tc.err
				}), &asyncreq.WorkerOptions{Logger: logs.logger()})
				id := postJob(t, h, "x")

				rec := awaitState(t, b, id, asyncreq.StateFailed)
				assert.EqualValues(t, 5, calls.Load(), "every attempt is used")
				assert.Equal(t, 5, rec.Attempts)
				require.NotNil(t, rec.Error)
				assert.Equal(t, asyncreq.Problem{Title: "Internal Server Error", Status: 500, Detail: "processing failed"}, *rec.Error)

				// What the client reads: the status document and the result.
				rr := serveReq(t, h, http.MethodGet, "/"+id+"/status", "")
				assert.NotContains(t, rr.Body.String(), "pgbouncer")
				assert.NotContains(t, rr.Body.String(), "charging")
				rr = serveReq(t, h, http.MethodGet, "/"+id, "")
				p := checkProblem(t, rr, http.StatusInternalServerError)
				assert.Equal(t, "processing failed", p.Detail)
				assert.NotContains(t, rr.Body.String(), "pgbouncer")
				assert.NotContains(t, rr.Body.String(), "charging")

				assert.Contains(t, logs.String(), downstreamDetail, "the real error is logged")
				synctest.Wait()
				assert.Zero(t, queueLen(b))
			})
		})
	}
}

// While attempts remain, the record of a retried attempt shows no Go error
// text either.
func TestWorkerRetryingAttemptLeaksNoErrorText(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		h := newTestHandler(t, b, nil)
		release := make(chan struct{})
		startTestWorker(t, b, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			if req.Attempt == 1 {
				return nil, fmt.Errorf("charging card: %w", &asyncreq.Problem{Status: 503, Detail: downstreamDetail})
			}
			<-release
			return &asyncreq.Result{}, nil
		}), &asyncreq.WorkerOptions{BackoffMin: 10 * time.Minute, BackoffMax: 10 * time.Minute})
		id := postJob(t, h, "x")
		rec := awaitRecord(t, b, id, func(r *asyncreq.Record) bool { return r.State == asyncreq.StatePending && r.Attempts == 1 })
		require.NotNil(t, rec.Error)
		assert.NotContains(t, rec.Error.Detail, "pgbouncer")
		rr := serveReq(t, h, http.MethodGet, "/"+id+"/status", "")
		assert.Equal(t, http.StatusOK, rr.Code)
		assert.NotContains(t, rr.Body.String(), "pgbouncer")
		close(release)
		awaitState(t, b, id, asyncreq.StateSucceeded)
	})
}

// Only Permanent, wherever it sits in the chain, and a *Problem returned
// as it is make a failure permanent. Permanent's own error is the detail,
// and its status wins over that of a problem wrapped inside it.
func TestWorkerPermanentMarkers(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want asyncreq.Problem
	}{
		{
			name: "permanent wrapped",
			err:  fmt.Errorf("validating: %w", asyncreq.Permanent(errors.New("no pages"), http.StatusUnprocessableEntity)),
			want: asyncreq.Problem{Title: "Unprocessable Content", Status: 422, Detail: "no pages"},
		},
		{
			name: "permanent of a problem",
			err:  asyncreq.Permanent(&asyncreq.Problem{Type: "https://example.com/stale", Detail: "stale version"}, http.StatusConflict),
			want: asyncreq.Problem{Type: "https://example.com/stale", Title: "Conflict", Status: 409, Detail: "stale version"},
		},
		{
			name: "permanent of a wrapped problem",
			err:  asyncreq.Permanent(fmt.Errorf("charging card: %w", &asyncreq.Problem{Title: "Service Unavailable", Status: 503, Detail: "pool exhausted"}), http.StatusBadGateway),
			want: asyncreq.Problem{Title: "Bad Gateway", Status: 502, Detail: "charging card: asyncreq: 503 Service Unavailable: pool exhausted"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := memory.New(nil)
				var calls atomic.Int32
				startTestWorker(t, b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
					calls.Add(1)
					return nil, tc.err
				}), nil)
				id := acceptJob(t, b, "x")
				rec := awaitState(t, b, id, asyncreq.StateFailed)
				require.NotNil(t, rec.Error)
				assert.Equal(t, tc.want, *rec.Error)
				assert.EqualValues(t, 1, calls.Load(), "not retried")
			})
		})
	}
}
