package client

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// realServer runs asyncreq's own handler and a worker over the memory
// backend, mounted at /jobs/, and returns the submit URL.
func realServer(t *testing.T, p asyncreq.Processor, hopts *asyncreq.HandlerOptions) string {
	t.Helper()
	b := memory.New(nil)
	t.Cleanup(func() { _ = b.Close() })
	h, err := asyncreq.NewHandler(b, hopts)
	require.NoError(t, err)
	w, err := asyncreq.NewWorker(b, p, &asyncreq.WorkerOptions{
		Concurrency:   4,
		BackoffMin:    time.Millisecond,
		BackoffMax:    5 * time.Millisecond,
		PurgeInterval: -1,
		SweepInterval: -1,
	})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, w.Stop(ctx))
	})
	mux := http.NewServeMux()
	mux.Handle("/jobs/", http.StripPrefix("/jobs", h))
	srv := newServer(t, mux)
	return srv.URL + "/jobs/"
}

func upper(_ context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
	return &asyncreq.Result{
		StatusCode:  http.StatusCreated,
		ContentType: "text/plain",
		Header:      http.Header{"X-Processed": {req.ID}},
		Body:        []byte(strings.ToUpper(string(req.Body))),
	}, nil
}

func TestRealHandlerSuccessWithProgress(t *testing.T) {
	seen := make(chan struct{})
	var once sync.Once
	url := realServer(t, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		if err := asyncreq.ReportProgress(ctx, 50, "half"); err != nil {
			return nil, err
		}
		select {
		case <-seen:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return upper(ctx, req)
	}), nil)
	c := newTestClient(t, &Options{Header: http.Header{"Authorization": {"Bearer t"}}})
	op, err := c.Submit(t.Context(), http.MethodPost, url, []byte("hello"), &SubmitOptions{ContentType: "text/plain"})
	require.NoError(t, err)
	require.True(t, asyncreq.ValidID(op.ID()))
	assert.Equal(t, url+op.ID()+"/status", op.StatusURL())
	assert.Equal(t, asyncreq.StatePending, op.Status().Status)

	var progress []string
	res, err := op.Wait(t.Context(), &WaitOptions{OnProgress: func(d *asyncreq.StatusDocument) {
		if d.Progress != nil {
			progress = append(progress, d.Progress.Message)
			if d.Progress.Percent == 50 {
				once.Do(func() { close(seen) })
			}
		}
	}})
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, res.StatusCode)
	assert.Equal(t, "HELLO", string(res.Body))
	assert.Equal(t, "text/plain", res.ContentType)
	assert.Equal(t, op.ID(), res.Header.Get("X-Processed"))
	assert.Equal(t, url+op.ID(), res.URL)
	assert.Contains(t, progress, "half")
	assert.Equal(t, url+op.ID(), op.ResultURL())
	assert.True(t, op.Done())
}

func TestRealHandlerFailure(t *testing.T) {
	url := realServer(t, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return nil, asyncreq.Permanent(errors.New("cannot parse the input"), http.StatusUnprocessableEntity)
	}), nil)
	c := newTestClient(t, nil)
	op, err := c.Submit(t.Context(), http.MethodPost, url, []byte("x"), nil)
	require.NoError(t, err)
	_, err = op.Wait(t.Context(), nil)
	var oe *OperationError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, asyncreq.StateFailed, oe.State)
	assert.Equal(t, op.ID(), oe.ID)
	var p *asyncreq.Problem
	require.ErrorAs(t, err, &p)
	assert.Equal(t, http.StatusUnprocessableEntity, p.Status)
	assert.Contains(t, p.Detail, "cannot parse the input")
	assert.NotErrorIs(t, err, asyncreq.ErrCanceled)
}

func TestRealHandlerCancelRunning(t *testing.T) {
	started := make(chan string, 1)
	url := realServer(t, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		started <- req.ID
		<-ctx.Done()
		return nil, ctx.Err()
	}), nil)
	c := newTestClient(t, nil)
	op, err := c.Submit(t.Context(), http.MethodPost, url, nil, nil)
	require.NoError(t, err)
	select {
	case id := <-started:
		require.Equal(t, op.ID(), id)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "processor did not start")
	}
	require.NoError(t, op.Cancel(t.Context()))
	_, err = op.Wait(t.Context(), nil)
	require.ErrorIs(t, err, asyncreq.ErrCanceled)
	var oe *OperationError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, asyncreq.StateCanceled, oe.State)
}

func TestRealHandlerCancelPending(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	url := realServer(t, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, ctx.Err()
	}), nil)
	c := newTestClient(t, nil)
	// Fill the worker's four slots so the fifth request stays pending.
	for range 4 {
		_, err := c.Submit(t.Context(), http.MethodPost, url, nil, nil)
		require.NoError(t, err)
	}
	op, err := c.Submit(t.Context(), http.MethodPost, url, nil, nil)
	require.NoError(t, err)
	require.NoError(t, op.Cancel(t.Context()))
	if op.Done() { // it was still pending: canceled at once
		_, err = op.Result(t.Context())
		require.ErrorIs(t, err, asyncreq.ErrCanceled)
	}
	_, err = op.Wait(t.Context(), nil)
	require.ErrorIs(t, err, asyncreq.ErrCanceled)
}

func TestRealHandlerResumeAndGone(t *testing.T) {
	url := realServer(t, asyncreq.ProcessorFunc(upper), &asyncreq.HandlerOptions{AcceptedWhilePending: true})
	c := newTestClient(t, nil)
	op, err := c.Submit(t.Context(), http.MethodPost, url, []byte("abc"), nil)
	require.NoError(t, err)
	tok, err := op.ResumeToken()
	require.NoError(t, err)

	// Another client (in effect another process) resumes and waits.
	c2 := newTestClient(t, nil)
	op2, err := c2.Resume(tok)
	require.NoError(t, err)
	res, err := op2.Wait(t.Context(), nil)
	require.NoError(t, err)
	assert.Equal(t, "ABC", string(res.Body))

	// Deleting the finished request forgets it; a third resume hears 410.
	require.NoError(t, op2.Cancel(t.Context()))
	op3, err := c2.Resume(tok)
	require.NoError(t, err)
	_, err = op3.Wait(t.Context(), nil)
	require.ErrorIs(t, err, asyncreq.ErrGone)
	var re *ResponseError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, http.StatusGone, re.StatusCode)
	require.NotNil(t, re.Problem)

	// An id that never existed is 404.
	bad, err := c2.Resume(mustToken(t, url+asyncreq.NewID()+"/status"))
	require.NoError(t, err)
	_, err = bad.Poll(t.Context())
	require.ErrorIs(t, err, asyncreq.ErrNotFound)
}

func TestRealHandlerPreferWait(t *testing.T) {
	url := realServer(t, asyncreq.ProcessorFunc(upper), nil)
	c := newTestClient(t, nil)
	op, err := c.Submit(t.Context(), http.MethodPost, url, []byte("inline"), &SubmitOptions{Wait: 10 * time.Second})
	require.NoError(t, err)
	require.True(t, op.Done(), "finished within the wait")
	assert.True(t, asyncreq.ValidID(op.ID()), "id from Content-Location")
	res, err := op.Result(t.Context())
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, res.StatusCode)
	assert.Equal(t, "INLINE", string(res.Body))
}

// A request that fails within the wait is answered 303 to its status URL
// (with the status document): the operation is finished with the failure,
// and a token resumes it from the status URL.
func TestRealHandlerPreferWaitFailure(t *testing.T) {
	url := realServer(t, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return nil, asyncreq.Permanent(errors.New("nope"), http.StatusUnprocessableEntity)
	}), nil)
	c := newTestClient(t, nil)
	op, err := c.Submit(t.Context(), http.MethodPost, url, nil, &SubmitOptions{Wait: 10 * time.Second})
	require.NoError(t, err, "a request that failed within the wait is not a failed submit")
	require.True(t, asyncreq.ValidID(op.ID()))
	assert.Equal(t, url+op.ID()+"/status", op.StatusURL())
	_, err = op.Wait(t.Context(), nil)
	var oe *OperationError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, http.StatusUnprocessableEntity, oe.Problem.Status)
	assert.Equal(t, op.ID(), oe.ID)

	tok, err := op.ResumeToken()
	require.NoError(t, err)
	resumed, err := c.Resume(tok)
	require.NoError(t, err)
	_, err = resumed.Wait(t.Context(), nil)
	require.ErrorAs(t, err, &oe, "the resumed operation reads the failure from the status URL")
	assert.Equal(t, http.StatusUnprocessableEntity, oe.Problem.Status)
}

// A result that is itself an error answer (a wrapped handler's 503) is the
// request's result, not a failed submit: the operation follows the 303 to
// it.
func TestRealHandlerPreferWaitErrorResult(t *testing.T) {
	url := realServer(t, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{StatusCode: http.StatusServiceUnavailable, ContentType: "text/plain", Body: []byte("upstream down")}, nil
	}), nil)
	c := newTestClient(t, nil)
	op, err := c.Submit(t.Context(), http.MethodPost, url, nil, &SubmitOptions{Wait: 10 * time.Second})
	require.NoError(t, err)
	res, err := op.Wait(t.Context(), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	assert.Equal(t, "upstream down", string(res.Body))
	assert.Equal(t, url+op.ID(), res.URL)
}

func TestRealHandlerIdempotentSubmit(t *testing.T) {
	url := realServer(t, asyncreq.ProcessorFunc(upper), nil)
	c := newTestClient(t, nil)
	op1, err := c.Submit(t.Context(), http.MethodPost, url, []byte("same"), &SubmitOptions{IdempotencyKey: "order-42"})
	require.NoError(t, err)
	op2, err := c.Submit(t.Context(), http.MethodPost, url, []byte("same"), &SubmitOptions{IdempotencyKey: "order-42"})
	require.NoError(t, err)
	assert.Equal(t, op1.ID(), op2.ID())
	_, err = c.Submit(t.Context(), http.MethodPost, url, []byte("different"), &SubmitOptions{IdempotencyKey: "order-42"})
	var re *ResponseError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, http.StatusUnprocessableEntity, re.StatusCode)
}

func TestRealHandlerLongPoll(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	url := realServer(t, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return upper(ctx, req)
	}), nil)
	// The long poll is held until the state changes (or a second passes);
	// the processor finishes once the client has waited after a first
	// answer.
	c := newTestClient(t, &Options{LongPoll: time.Second, PollMin: time.Millisecond, PollMax: time.Minute})
	var mu sync.Mutex
	var sleeps []time.Duration
	c.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		sleeps = append(sleeps, d)
		mu.Unlock()
		once.Do(func() { close(release) })
		return sleepCtx(ctx, d)
	}
	op, err := c.Submit(t.Context(), http.MethodPost, url, []byte("lp"), nil)
	require.NoError(t, err)
	res, err := op.Wait(t.Context(), nil)
	require.NoError(t, err)
	assert.Equal(t, "LP", string(res.Body))
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, sleeps)
	for _, d := range sleeps {
		assert.Equal(t, time.Millisecond, d, "after an applied long poll only the floor is waited, not Retry-After")
	}
}

func TestRealHandlerTracker(t *testing.T) {
	url := realServer(t, asyncreq.ProcessorFunc(upper), nil)
	c := newTestClient(t, nil)
	tr, err := NewTracker(c, &TrackerOptions{Concurrency: 2})
	require.NoError(t, err)
	require.NoError(t, tr.Start(t.Context()))
	defer stopTracker(t, tr)
	want := map[string]string{}
	for _, s := range []string{"a", "b", "c", "d"} {
		op, err := c.Submit(t.Context(), http.MethodPost, url, []byte(s), nil)
		require.NoError(t, err)
		k, err := tr.Track(t.Context(), op)
		require.NoError(t, err)
		want[k] = strings.ToUpper(s)
	}
	got := map[string]string{}
	for range want {
		select {
		case d := <-tr.Results():
			require.NoError(t, d.Err)
			got[d.Key] = string(d.Result.Body)
		case <-time.After(10 * time.Second):
			require.FailNow(t, "no delivery")
		}
	}
	assert.Equal(t, want, got)
}
