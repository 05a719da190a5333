package asyncreq_test

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/memory"
)

// The tests of this file run the handler and the worker as two processes
// on one database: each on its own asyncreqtest.InstanceView of a memory
// Backend, whose Watch sees only the changes made through that view, as
// the SQLite backend's Watch sees only its own process's writes (and
// PostgreSQL's does with DisableListen).

// update changes a stored record as a worker would, from a goroutine other
// than the test's; a failure shows in what the test reads afterwards.
func update(s asyncreq.Store, id string, fn func(*asyncreq.Record)) {
	_, _ = s.Update(context.Background(), id, func(r *asyncreq.Record) error {
		fn(r)
		r.UpdatedAt = time.Now()
		return nil
	})
}

// TestPreferWaitSeesAnotherProcessesOutcome: a submit with Prefer: wait
// answers with the result when a worker in another process finishes in
// time, although the handler's watch never reports that worker's writes.
func TestPreferWaitSeesAnotherProcessesOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		api, worker := asyncreqtest.InstanceView(b), asyncreqtest.InstanceView(b)
		h := newTestHandler(t, asyncreq.Pair(api, queueOnly{b}), nil)
		startTestWorker(t, asyncreq.Pair(worker, queueOnly{b}), asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			time.Sleep(time.Second)
			return &asyncreq.Result{ContentType: "text/plain", Body: []byte("done")}, nil
		}), nil)

		start := time.Now()
		rr := serveReq(t, h, http.MethodPost, "/", "x", "Prefer", "wait=5")
		elapsed := time.Since(start)
		require.Equal(t, http.StatusOK, rr.Code, "the final answer, not 202; body: %s", rr.Body.String())
		assert.Equal(t, "done", rr.Body.String())
		assert.Equal(t, "wait=5", rr.Header().Get("Preference-Applied"))
		assert.GreaterOrEqual(t, elapsed, time.Second)
		assert.LessOrEqual(t, elapsed, time.Second+500*time.Millisecond, "the record is read at least every 500ms while the watch is silent")
	})
}

// TestStatusLongPollSeesAnotherProcessesChange: a long poll of the status
// answers soon after a worker in another process finishes the request, and
// one that reaches its deadline answers with the record as it is then.
func TestStatusLongPollSeesAnotherProcessesChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		api, worker := asyncreqtest.InstanceView(b), asyncreqtest.InstanceView(b)
		h := newTestHandler(t, asyncreq.Pair(api, queueOnly{b}), &asyncreq.HandlerOptions{MaxWait: 30 * time.Second})
		id := postJob(t, h, "x")

		// The other process finishes the request 2s into the long poll.
		go func() {
			time.Sleep(2 * time.Second)
			update(worker, id, succeed(&asyncreq.Result{Body: []byte("r")}))
		}()
		start := time.Now()
		rr := serveReq(t, h, http.MethodGet, "/"+id+"/status", "", "Prefer", "wait=20")
		elapsed := time.Since(start)
		require.Equal(t, http.StatusSeeOther, rr.Code, rr.Body.String())
		assert.Equal(t, asyncreq.StateSucceeded, readDoc(t, rr).Status)
		assert.LessOrEqual(t, elapsed, 2*time.Second+500*time.Millisecond, "answered within a poll interval of the change")

		// The last read is at the deadline: a change 1ms before it, after
		// the last poll, is in the answer.
		id = postJob(t, h, "y")
		go func() {
			time.Sleep(10*time.Second - time.Millisecond)
			update(worker, id, func(r *asyncreq.Record) {
				r.Progress = &asyncreq.Progress{Percent: 10}
			})
		}()
		start = time.Now()
		rr = serveReq(t, h, http.MethodGet, "/"+id+"/status", "", "Prefer", "wait=10")
		assert.Equal(t, 10*time.Second, time.Since(start))
		require.Equal(t, http.StatusOK, rr.Code, rr.Body.String())
		doc := readDoc(t, rr)
		require.NotNil(t, doc.Progress, "the change made 1ms before the deadline")
		assert.Equal(t, 10, doc.Progress.Percent)
	})
}

// TestDeleteCancelsProcessorInAnotherProcess: DELETE of a request running
// in a worker of another process cancels its processor by the worker's
// next heartbeat, although the worker's watch never reports the handler's
// write.
func TestDeleteCancelsProcessorInAnotherProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		api, worker := asyncreqtest.InstanceView(b), asyncreqtest.InstanceView(b)
		h := newTestHandler(t, asyncreq.Pair(api, queueOnly{b}), nil)
		started := make(chan struct{})
		cause := make(chan error, 1)
		const lease = 3 * time.Second
		startTestWorker(t, asyncreq.Pair(worker, queueOnly{b}), asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			close(started)
			select {
			case <-ctx.Done():
				cause <- context.Cause(ctx)
				return nil, ctx.Err()
			case <-time.After(time.Minute):
				return &asyncreq.Result{Body: []byte("ran to the end")}, nil
			}
		}), &asyncreq.WorkerOptions{LeaseDuration: lease})

		id := postJob(t, h, "x")
		<-started
		synctest.Wait() // the heartbeat has read the record and waits
		rr := serveReq(t, h, http.MethodDelete, "/"+id, "")
		require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
		deleted := time.Now()

		select {
		case err := <-cause:
			assert.ErrorIs(t, err, asyncreq.ErrCanceled)
			assert.LessOrEqual(t, time.Since(deleted), lease/3, "noticed at the next heartbeat")
		case <-time.After(time.Minute):
			t.Fatal("the processor was not canceled")
		}
		rec := awaitState(t, b, id, asyncreq.StateCanceled)
		require.NotNil(t, rec.Error)
		rr = serveReq(t, h, http.MethodGet, "/"+id+"/status", "")
		require.Equal(t, http.StatusOK, rr.Code)
		assert.Equal(t, asyncreq.StateCanceled, readDoc(t, rr).Status)
	})
}
