package asyncreq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// acceptJob records a pending request and enqueues it, as a handler would.
func acceptJob(t *testing.T, b *memory.Backend, body string) string {
	t.Helper()
	id := asyncreq.NewID()
	now := time.Now()
	_, err := b.Accept(t.Context(), &asyncreq.Record{
		ID:           id,
		State:        asyncreq.StatePending,
		Method:       http.MethodPost,
		URL:          "/jobs",
		Header:       http.Header{"X-Trace": {"abc"}},
		ContentType:  "text/plain",
		Body:         []byte(body),
		Owner:        "alice",
		CreatedAt:    now,
		UpdatedAt:    now,
		Retention:    time.Hour,
		TombstoneTTL: 24 * time.Hour,
	})
	require.NoError(t, err)
	return id
}

// startTestWorker starts a worker over b and stops it when the test ends.
func startTestWorker(t *testing.T, b asyncreq.Backend, p asyncreq.Processor, opts *asyncreq.WorkerOptions) *asyncreq.Worker {
	t.Helper()
	w, err := asyncreq.NewWorker(b, p, opts)
	require.NoError(t, err)
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		assert.NoError(t, w.Stop(ctx))
	})
	return w
}

// awaitRecord waits (on the bubble's clock) until id's record satisfies
// cond, and returns it. It fails the test after an hour.
func awaitRecord(t *testing.T, b *memory.Backend, id string, cond func(*asyncreq.Record) bool) *asyncreq.Record {
	t.Helper()
	deadline := time.NewTimer(time.Hour)
	defer deadline.Stop()
	for {
		ctx, cancel := context.WithCancel(t.Context())
		changed, err := b.Watch(ctx, id)
		require.NoError(t, err)
		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		if cond(rec) {
			cancel()
			return rec
		}
		select {
		case <-changed:
			cancel()
		case <-deadline.C:
			cancel()
			require.FailNow(t, "record never reached the expected state", "last: %+v", rec)
		}
	}
}

// awaitState waits until id's record is in state s.
func awaitState(t *testing.T, b *memory.Backend, id string, s asyncreq.State) *asyncreq.Record {
	t.Helper()
	return awaitRecord(t, b, id, func(r *asyncreq.Record) bool { return r.State == s })
}

// crashedWorker dequeues the one entry b holds and lets its lease run
// out, as a worker that crashed holding it: the entry's next delivery is
// its second, which takes a running record over.
func crashedWorker(t *testing.T, b *memory.Backend) {
	t.Helper()
	_, err := b.Dequeue(t.Context(), time.Second)
	require.NoError(t, err)
	time.Sleep(2 * time.Second)
}

// queueLen returns how many queue entries b holds.
func queueLen(b *memory.Backend) int {
	_, n := b.Len()
	return n
}

// workerLog collects a worker's log text; it is safe for concurrent use.
type workerLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *workerLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *workerLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *workerLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestWorkerSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		type seen struct {
			req      asyncreq.Request
			progress *asyncreq.Progress
			state    asyncreq.State
		}
		seenc := make(chan seen, 1)
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			if err := asyncreq.ReportProgress(ctx, 40, "counting"); err != nil {
				return nil, err
			}
			rec, err := b.Get(ctx, req.ID)
			if err != nil {
				return nil, err
			}
			seenc <- seen{req: *req, progress: rec.Progress, state: rec.State}
			return &asyncreq.Result{
				StatusCode:  http.StatusCreated,
				ContentType: "application/json",
				Header:      http.Header{"X-Result": {"yes"}},
				Body:        []byte(`{"n":` + fmt.Sprint(len(req.Body)) + `}`),
			}, nil
		})
		startTestWorker(t, b, p, nil)
		start := time.Now()
		id := acceptJob(t, b, "hello")

		rec := awaitState(t, b, id, asyncreq.StateSucceeded)
		s := <-seenc
		assert.Equal(t, id, s.req.ID)
		assert.Equal(t, http.MethodPost, s.req.Method)
		assert.Equal(t, "/jobs", s.req.URL)
		assert.Equal(t, "text/plain", s.req.ContentType)
		assert.Equal(t, []byte("hello"), s.req.Body)
		assert.Equal(t, "abc", s.req.Header.Get("X-Trace"))
		assert.Equal(t, "alice", s.req.Owner)
		assert.Equal(t, 1, s.req.Attempt)
		assert.Equal(t, start, s.req.CreatedAt)
		assert.Equal(t, asyncreq.StateRunning, s.state)
		assert.Equal(t, &asyncreq.Progress{Percent: 40, Message: "counting"}, s.progress)

		require.NotNil(t, rec.Result)
		assert.Equal(t, http.StatusCreated, rec.Result.StatusCode)
		assert.Equal(t, "application/json", rec.Result.ContentType)
		assert.Equal(t, `{"n":5}`, string(rec.Result.Body))
		assert.Equal(t, "yes", rec.Result.Header.Get("X-Result"))
		assert.Equal(t, 1, rec.Attempts)
		assert.Empty(t, rec.LeaseToken)
		assert.Nil(t, rec.Error)
		assert.Equal(t, rec.UpdatedAt.Add(time.Hour), rec.ExpiresAt)
		synctest.Wait()
		assert.Zero(t, queueLen(b), "the lease is acked")
	})
}

func TestWorkerNilResultIsEmptySuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		startTestWorker(t, b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			return nil, nil
		}), nil)
		id := acceptJob(t, b, "x")
		rec := awaitState(t, b, id, asyncreq.StateSucceeded)
		require.NotNil(t, rec.Result)
		assert.Equal(t, asyncreq.Result{}, *rec.Result)
	})
}

func TestWorkerRetryWithBackoffThenSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		var mu sync.Mutex
		var starts []time.Time
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			if req.Attempt < 3 {
				return nil, fmt.Errorf("connect to 10.0.0.7: secret-internal-detail (attempt %d)", req.Attempt)
			}
			return &asyncreq.Result{Body: []byte("done")}, nil
		})
		logs := &workerLog{}
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{
			BackoffMin: time.Second,
			BackoffMax: time.Minute,
			Logger:     logs.logger(),
		})
		id := acceptJob(t, b, "x")

		// After the first failure the record waits as pending, with a
		// problem that does not show the error's text.
		rec := awaitRecord(t, b, id, func(r *asyncreq.Record) bool {
			return r.State == asyncreq.StatePending && r.Attempts == 1
		})
		require.NotNil(t, rec.Error)
		assert.Equal(t, http.StatusInternalServerError, rec.Error.Status)
		assert.NotContains(t, rec.Error.Detail, "secret")
		assert.Empty(t, rec.LeaseToken)

		rec = awaitState(t, b, id, asyncreq.StateSucceeded)
		assert.Equal(t, 3, rec.Attempts)
		assert.Equal(t, "done", string(rec.Result.Body))
		assert.Nil(t, rec.Error)

		mu.Lock()
		defer mu.Unlock()
		require.Len(t, starts, 3)
		// After the n-th failure the wait is in [1s, 2^n s].
		for n, bounds := range [][2]time.Duration{{time.Second, 2 * time.Second}, {time.Second, 4 * time.Second}} {
			gap := starts[n+1].Sub(starts[n])
			assert.GreaterOrEqual(t, gap, bounds[0], "wait after failure %d", n+1)
			assert.LessOrEqual(t, gap, bounds[1], "wait after failure %d", n+1)
		}
		assert.Contains(t, logs.String(), "secret-internal-detail", "the real error is logged")
	})
}

func TestWorkerMaxAttemptsFails500WithoutLeakingText(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		var calls atomic.Int32
		p := asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			calls.Add(1)
			return nil, errors.New("pq: password authentication failed for user secret")
		})
		logs := &workerLog{}
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{MaxAttempts: 3, Logger: logs.logger()})
		id := acceptJob(t, b, "x")

		rec := awaitState(t, b, id, asyncreq.StateFailed)
		assert.EqualValues(t, 3, calls.Load())
		assert.Equal(t, 3, rec.Attempts)
		require.NotNil(t, rec.Error)
		assert.Equal(t, http.StatusInternalServerError, rec.Error.Status)
		assert.Equal(t, "Internal Server Error", rec.Error.Title)
		assert.Equal(t, "processing failed", rec.Error.Detail)
		assert.NotContains(t, rec.Error.Detail, "secret")
		assert.Empty(t, rec.LeaseToken)
		assert.Equal(t, rec.UpdatedAt.Add(time.Hour), rec.ExpiresAt)
		assert.Contains(t, logs.String(), "password authentication failed")
		synctest.Wait()
		assert.Zero(t, queueLen(b))
	})
}

func TestWorkerPermanentFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want asyncreq.Problem
	}{
		{
			name: "permanent 422",
			err:  asyncreq.Permanent(errors.New("body is not valid UTF-8"), http.StatusUnprocessableEntity),
			want: asyncreq.Problem{Title: "Unprocessable Content", Status: 422, Detail: "body is not valid UTF-8"},
		},
		{
			name: "permanent without status",
			err:  asyncreq.Permanent(errors.New("cannot do it"), 0),
			want: asyncreq.Problem{Title: "Internal Server Error", Status: 500, Detail: "cannot do it"},
		},
		{
			name: "problem",
			err:  &asyncreq.Problem{Type: "https://example.com/too-big", Title: "Too big", Status: 413, Detail: "at most 10 pages"},
			want: asyncreq.Problem{Type: "https://example.com/too-big", Title: "Too big", Status: 413, Detail: "at most 10 pages"},
		},
		{
			name: "permanent problem without title",
			err:  asyncreq.Permanent(&asyncreq.Problem{Status: 409, Detail: "stale version"}, 0),
			want: asyncreq.Problem{Title: "Conflict", Status: 409, Detail: "stale version"},
		},
		{
			name: "permanent with a non-error status",
			err:  asyncreq.Permanent(errors.New("odd"), 200),
			want: asyncreq.Problem{Title: "Internal Server Error", Status: 500, Detail: "odd"},
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
				assert.Equal(t, 1, rec.Attempts)
				assert.EqualValues(t, 1, calls.Load(), "not retried")
				synctest.Wait()
				assert.Zero(t, queueLen(b))
			})
		})
	}
}

func TestWorkerRetryAfterDelayHonoured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		starts := make(chan time.Time, 2)
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			starts <- time.Now()
			if req.Attempt == 1 {
				return nil, asyncreq.RetryAfter(errors.New("rate limited"), 10*time.Minute)
			}
			return &asyncreq.Result{}, nil
		})
		// The asked delay is honoured even beyond BackoffMax.
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{BackoffMin: time.Second, BackoffMax: 2 * time.Second})
		id := acceptJob(t, b, "x")
		awaitState(t, b, id, asyncreq.StateSucceeded)
		first, second := <-starts, <-starts
		assert.Equal(t, 10*time.Minute, second.Sub(first))
	})
}

func TestWorkerPanicIsAFailedAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			if string(req.Body) == "boom" {
				panic("nil map in processor")
			}
			return &asyncreq.Result{Body: req.Body}, nil
		})
		logs := &workerLog{}
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{MaxAttempts: 2, Logger: logs.logger()})
		boom := acceptJob(t, b, "boom")
		rec := awaitState(t, b, boom, asyncreq.StateFailed)
		assert.Equal(t, 2, rec.Attempts)
		assert.Equal(t, "processing failed", rec.Error.Detail)
		assert.NotContains(t, rec.Error.Detail, "nil map")
		assert.Contains(t, logs.String(), "nil map in processor")
		assert.Contains(t, logs.String(), "worker_test.go", "the stack is logged")

		// The worker is still alive.
		ok := acceptJob(t, b, "fine")
		rec = awaitState(t, b, ok, asyncreq.StateSucceeded)
		assert.Equal(t, "fine", string(rec.Result.Body))
	})
}

func TestWorkerTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		causes := make(chan error, 2)
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return nil, ctx.Err()
		})
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{Timeout: 5 * time.Second, MaxAttempts: 2})
		start := time.Now()
		id := acceptJob(t, b, "x")
		rec := awaitState(t, b, id, asyncreq.StateFailed)
		assert.ErrorIs(t, <-causes, asyncreq.ErrTimeout)
		assert.ErrorIs(t, <-causes, asyncreq.ErrTimeout)
		assert.Equal(t, 2, rec.Attempts, "a timeout counts as a failed attempt")
		assert.Equal(t, "processing timed out", rec.Error.Detail)
		assert.Equal(t, 500, rec.Error.Status)
		elapsed := time.Since(start)
		assert.GreaterOrEqual(t, elapsed, 11*time.Second) // two timeouts and at least BackoffMin
	})
}

func TestWorkerHeartbeatKeepsLongJobLeased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		var calls atomic.Int32
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			calls.Add(1)
			select {
			case <-time.After(time.Minute): // twenty leases long
				return &asyncreq.Result{}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		// Two workers: a redelivery would go to the idle one.
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{LeaseDuration: 3 * time.Second})
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{LeaseDuration: 3 * time.Second})
		id := acceptJob(t, b, "x")
		rec := awaitState(t, b, id, asyncreq.StateSucceeded)
		assert.EqualValues(t, 1, calls.Load(), "no redelivery while the heartbeat runs")
		assert.Equal(t, 1, rec.Attempts)
	})
}

// noExtendQueue is a Queue whose Extend pretends to work but does not extend:
// a worker that has stopped heartbeating, as after a crash or a long GC
// pause.
type noExtendQueue struct {
	*memory.Backend
}

func (noExtendQueue) Extend(context.Context, *asyncreq.Lease, time.Duration) error { return nil }

func TestWorkerLeaseExpiryRedeliversAndFencesStaleWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		staleStarted := make(chan struct{})
		release := make(chan struct{})
		staleCause := make(chan error, 1)
		stale := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			close(staleStarted)
			<-release
			staleCause <- context.Cause(ctx)
			// It ignores its context and claims success anyway.
			return &asyncreq.Result{Body: []byte("stale")}, nil
		})
		fresh := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			return &asyncreq.Result{Body: []byte(fmt.Sprintf("fresh attempt %d", req.Attempt))}, nil
		})
		opts := &asyncreq.WorkerOptions{LeaseDuration: 3 * time.Second, Concurrency: 1}
		startTestWorker(t, asyncreq.Pair(b, noExtendQueue{b}), stale, opts)
		id := acceptJob(t, b, "x")
		<-staleStarted

		// Only now does a healthy worker join; it gets the redelivery once
		// the stale lease runs out.
		startTestWorker(t, b, fresh, opts)
		rec := awaitState(t, b, id, asyncreq.StateSucceeded)
		assert.Equal(t, "fresh attempt 2", string(rec.Result.Body))
		assert.Equal(t, 2, rec.Attempts)

		synctest.Wait() // the stale worker has noticed the takeover
		close(release)
		assert.ErrorIs(t, <-staleCause, asyncreq.ErrLeaseLost, "the stale attempt was canceled when it lost the record")
		synctest.Wait()
		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, "fresh attempt 2", string(rec.Result.Body), "the stale outcome is fenced off")
		assert.Equal(t, asyncreq.StateSucceeded, rec.State)
		assert.Zero(t, queueLen(b))
	})
}

func TestWorkerCancelRunning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend func(*memory.Backend) asyncreq.Backend
	}{
		{"watcher", func(b *memory.Backend) asyncreq.Backend { return b }},
		{"polling", func(b *memory.Backend) asyncreq.Backend { return asyncreq.Pair(struct{ asyncreq.Store }{b}, b) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := memory.New(nil)
				started := make(chan struct{})
				cause := make(chan error, 1)
				p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
					close(started)
					<-ctx.Done()
					cause <- context.Cause(ctx)
					return nil, ctx.Err()
				})
				startTestWorker(t, tc.backend(b), p, &asyncreq.WorkerOptions{LeaseDuration: 3 * time.Second})
				id := acceptJob(t, b, "x")
				<-started

				// What the handler does for DELETE of a running request.
				_, err := b.Update(t.Context(), id, func(r *asyncreq.Record) error {
					r.CancelRequested = true
					return nil
				})
				require.NoError(t, err)
				rec := awaitState(t, b, id, asyncreq.StateCanceled)
				assert.ErrorIs(t, <-cause, asyncreq.ErrCanceled)
				require.NotNil(t, rec.Error)
				assert.Equal(t, http.StatusConflict, rec.Error.Status)
				assert.Empty(t, rec.LeaseToken)
				assert.False(t, rec.ExpiresAt.IsZero())
				synctest.Wait()
				assert.Zero(t, queueLen(b))
			})
		})
	}
}

func TestWorkerCancelRequestedBeforeClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		id := acceptJob(t, b, "x")
		// A worker crashed while running it, and the client canceled since.
		crashedWorker(t, b)
		_, err := b.Update(t.Context(), id, func(r *asyncreq.Record) error {
			r.State, r.Attempts, r.LeaseToken, r.CancelRequested = asyncreq.StateRunning, 1, "old", true
			return nil
		})
		require.NoError(t, err)
		var calls atomic.Int32
		startTestWorker(t, b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			calls.Add(1)
			return nil, nil
		}), nil)
		rec := awaitState(t, b, id, asyncreq.StateCanceled)
		assert.Zero(t, calls.Load())
		assert.Equal(t, 1, rec.Attempts)
		synctest.Wait()
		assert.Zero(t, queueLen(b))
	})
}

func TestWorkerCrashLoopFailsAtClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		id := acceptJob(t, b, "x")
		// Every attempt started and none recorded an outcome.
		crashedWorker(t, b)
		_, err := b.Update(t.Context(), id, func(r *asyncreq.Record) error {
			r.State, r.Attempts, r.LeaseToken = asyncreq.StateRunning, 3, "crashed"
			return nil
		})
		require.NoError(t, err)
		var calls atomic.Int32
		startTestWorker(t, b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			calls.Add(1)
			return nil, nil
		}), &asyncreq.WorkerOptions{MaxAttempts: 3})
		rec := awaitState(t, b, id, asyncreq.StateFailed)
		assert.Zero(t, calls.Load())
		assert.Equal(t, 500, rec.Error.Status)
		assert.Equal(t, "processing failed", rec.Error.Detail)
		assert.Empty(t, rec.LeaseToken)
		synctest.Wait()
		assert.Zero(t, queueLen(b))
	})
}

func TestWorkerSkipsFinishedAndMissing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		done := acceptJob(t, b, "x")
		_, err := b.Update(t.Context(), done, func(r *asyncreq.Record) error {
			r.State, r.Result = asyncreq.StateSucceeded, &asyncreq.Result{Body: []byte("kept")}
			return nil
		})
		require.NoError(t, err)
		require.NoError(t, b.Enqueue(t.Context(), asyncreq.NewID(), 0)) // no record
		var calls atomic.Int32
		startTestWorker(t, b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			calls.Add(1)
			return nil, nil
		}), nil)
		synctest.Wait()
		assert.Zero(t, calls.Load())
		assert.Zero(t, queueLen(b), "both leases are acked")
		rec, err := b.Get(t.Context(), done)
		require.NoError(t, err)
		assert.Equal(t, "kept", string(rec.Result.Body))
	})
}

func TestWorkerConcurrencyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		var running, peak atomic.Int32
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			n := running.Add(1)
			for {
				old := peak.Load()
				if n <= old || peak.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(time.Second)
			running.Add(-1)
			return &asyncreq.Result{}, nil
		})
		ids := make([]string, 10)
		for i := range ids {
			ids[i] = acceptJob(t, b, "x")
		}
		start := time.Now()
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{Concurrency: 3})
		for _, id := range ids {
			awaitState(t, b, id, asyncreq.StateSucceeded)
		}
		assert.EqualValues(t, 3, peak.Load())
		assert.Equal(t, 4*time.Second, time.Since(start), "10 one-second jobs, 3 at a time")
	})
}

func TestWorkerStopLetsRunningWorkFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		started := make(chan string, 2)
		release := make(chan struct{})
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			started <- req.ID
			select {
			case <-release:
				return &asyncreq.Result{Body: []byte("finished")}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		w, err := asyncreq.NewWorker(b, p, &asyncreq.WorkerOptions{Concurrency: 1})
		require.NoError(t, err)
		require.NoError(t, w.Start(t.Context()))
		first := acceptJob(t, b, "1")
		<-started

		stopped := make(chan error, 1)
		go func() { stopped <- w.Stop(context.Background()) }()
		second := acceptJob(t, b, "2") // must not be fetched any more
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case err := <-stopped:
			require.FailNow(t, "Stop returned while work was running", "err: %v", err)
		default:
		}
		close(release)
		require.NoError(t, <-stopped)

		rec, err := b.Get(t.Context(), first)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StateSucceeded, rec.State)
		rec, err = b.Get(t.Context(), second)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StatePending, rec.State)
		assert.Zero(t, rec.Attempts)
		assert.Len(t, started, 0)
		assert.NoError(t, w.Stop(t.Context()), "Stop is idempotent")
	})
}

func TestWorkerStopWithShortDeadlineHandsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		started := make(chan struct{})
		cause := make(chan error, 1)
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			_ = asyncreq.ReportProgress(ctx, 10, "working")
			close(started)
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return nil, ctx.Err()
		})
		w, err := asyncreq.NewWorker(b, p, nil)
		require.NoError(t, err)
		require.NoError(t, w.Start(t.Context()))
		id := acceptJob(t, b, "x")
		<-started

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		require.ErrorIs(t, w.Stop(ctx), context.DeadlineExceeded)
		assert.Equal(t, 5*time.Second, time.Since(start))
		assert.ErrorIs(t, <-cause, asyncreq.ErrShutdown)

		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StatePending, rec.State)
		assert.Zero(t, rec.Attempts, "the attempt is not spent")
		assert.Empty(t, rec.LeaseToken)
		assert.Nil(t, rec.Progress)

		// The request is due again at once.
		dctx, dcancel := context.WithTimeout(t.Context(), time.Millisecond)
		defer dcancel()
		l, err := b.Dequeue(dctx, time.Minute)
		require.NoError(t, err)
		assert.Equal(t, id, l.ID)
	})
}

// The end of Start's context is a graceful stop: fetching stops at once,
// a request that finishes within StopTimeout succeeds, and one that runs
// on is canceled with ErrShutdown at StopTimeout and handed back.
func TestWorkerStartContextEndIsGracefulStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		started := make(chan struct{}, 2)
		cause := make(chan error, 2)
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			started <- struct{}{}
			d := time.Hour
			if string(req.Body) == "quick" {
				d = 5 * time.Second
			}
			select {
			case <-time.After(d):
				return &asyncreq.Result{Body: []byte("done")}, nil
			case <-ctx.Done():
				cause <- context.Cause(ctx)
				return nil, ctx.Err()
			}
		})
		w, err := asyncreq.NewWorker(b, p, &asyncreq.WorkerOptions{StopTimeout: 10 * time.Second, PurgeInterval: -1})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		require.NoError(t, w.Start(ctx))
		quick, slow := acceptJob(t, b, "quick"), acceptJob(t, b, "slow")
		<-started
		<-started
		cancel()
		ended := time.Now()
		synctest.Wait()
		late := acceptJob(t, b, "late")

		assert.ErrorIs(t, <-cause, asyncreq.ErrShutdown)
		assert.Equal(t, 10*time.Second, time.Since(ended), "running requests get StopTimeout")
		synctest.Wait()
		assert.Empty(t, cause, "the quick request was not canceled")
		rec, err := b.Get(t.Context(), quick)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StateSucceeded, rec.State, "a request that finishes within StopTimeout succeeds")
		rec, err = b.Get(t.Context(), slow)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StatePending, rec.State, "handed back")
		assert.Zero(t, rec.Attempts, "without spending an attempt")
		rec, err = b.Get(t.Context(), late)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StatePending, rec.State, "nothing is fetched after the context ended")
		assert.Zero(t, rec.Attempts)
		require.NoError(t, w.Stop(t.Context()))
	})
}

// A negative StopTimeout cancels the running processors as soon as Start's
// context ends; a Stop called after the context ended waits no longer
// than its own context.
func TestWorkerStartContextEndBounds(t *testing.T) {
	block := func(cause chan<- error) asyncreq.Processor {
		return asyncreq.ProcessorFunc(func(ctx context.Context, _ *asyncreq.Request) (*asyncreq.Result, error) {
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return nil, ctx.Err()
		})
	}
	t.Run("negative", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := memory.New(nil)
			cause := make(chan error, 1)
			w, err := asyncreq.NewWorker(b, block(cause), &asyncreq.WorkerOptions{StopTimeout: -1})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(t.Context())
			require.NoError(t, w.Start(ctx))
			id := acceptJob(t, b, "x")
			awaitState(t, b, id, asyncreq.StateRunning)
			cancel()
			ended := time.Now()
			assert.ErrorIs(t, <-cause, asyncreq.ErrShutdown)
			assert.Zero(t, time.Since(ended), "canceled at once")
			require.NoError(t, w.Stop(t.Context()))
		})
	})
	t.Run("stop", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := memory.New(nil)
			cause := make(chan error, 1)
			w, err := asyncreq.NewWorker(b, block(cause), &asyncreq.WorkerOptions{StopTimeout: time.Hour})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(t.Context())
			require.NoError(t, w.Start(ctx))
			id := acceptJob(t, b, "x")
			awaitState(t, b, id, asyncreq.StateRunning)
			cancel()
			ended := time.Now()
			sctx, stop := context.WithTimeout(t.Context(), 2*time.Second)
			defer stop()
			assert.ErrorIs(t, w.Stop(sctx), context.DeadlineExceeded)
			assert.ErrorIs(t, <-cause, asyncreq.ErrShutdown)
			assert.Equal(t, 2*time.Second, time.Since(ended), "Stop's context bounds the wait")
			rec, err := b.Get(t.Context(), id)
			require.NoError(t, err)
			assert.Equal(t, asyncreq.StatePending, rec.State)
		})
	})
}

func TestWorkerLifecycleErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		p := asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) { return nil, nil })

		w, err := asyncreq.NewWorker(b, p, nil)
		require.NoError(t, err)
		require.NoError(t, w.Stop(t.Context()), "Stop before Start")
		require.NoError(t, w.Stop(t.Context()))
		require.ErrorContains(t, w.Start(t.Context()), "stopped")

		w, err = asyncreq.NewWorker(b, p, nil)
		require.NoError(t, err)
		require.NoError(t, w.Start(t.Context()))
		require.ErrorContains(t, w.Start(t.Context()), "already started")
		require.NoError(t, w.Stop(t.Context()))
		require.NoError(t, w.Stop(t.Context()))
		require.ErrorContains(t, w.Start(t.Context()), "stopped")
	})
}

func TestNewWorkerValidation(t *testing.T) {
	b := memory.New(nil)
	p := asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) { return nil, nil })
	for _, tc := range []struct {
		opts  asyncreq.WorkerOptions
		field string
	}{
		{asyncreq.WorkerOptions{Concurrency: -1}, "Concurrency"},
		{asyncreq.WorkerOptions{LeaseDuration: -time.Second}, "LeaseDuration"},
		{asyncreq.WorkerOptions{MaxAttempts: -1}, "MaxAttempts"},
		{asyncreq.WorkerOptions{BackoffMin: -1}, "BackoffMin"},
		{asyncreq.WorkerOptions{BackoffMax: -1}, "BackoffMax"},
		{asyncreq.WorkerOptions{BackoffMin: time.Minute, BackoffMax: time.Second}, "BackoffMax"},
		{asyncreq.WorkerOptions{Timeout: -1}, "Timeout"},
		{asyncreq.WorkerOptions{PurgeBatch: -1}, "PurgeBatch"},
		{asyncreq.WorkerOptions{SweepAge: -1}, "SweepAge"},
	} {
		t.Run(tc.field, func(t *testing.T) {
			opts := tc.opts
			_, err := asyncreq.NewWorker(b, p, &opts)
			require.ErrorContains(t, err, "WorkerOptions."+tc.field)
			assert.Equal(t, tc.opts, opts, "the caller's options are not modified")
		})
	}
	for _, ok := range []asyncreq.WorkerOptions{
		{},
		{PurgeInterval: -1, SweepInterval: -1},
		{BackoffMin: 10 * time.Minute}, // BackoffMax defaults to at least BackoffMin
	} {
		_, err := asyncreq.NewWorker(b, p, &ok)
		require.NoError(t, err)
	}
	_, err := asyncreq.NewWorker(asyncreq.Pair(nil, b), p, nil)
	require.ErrorContains(t, err, "Store")
	_, err = asyncreq.NewWorker(asyncreq.Pair(b, nil), p, nil)
	require.ErrorContains(t, err, "Queue")
	_, err = asyncreq.NewWorker(b, nil, nil)
	require.ErrorContains(t, err, "Processor")
}

func TestWorkerPurgesExpiredRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		startTestWorker(t, b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			return &asyncreq.Result{}, nil
		}), &asyncreq.WorkerOptions{PurgeInterval: time.Minute, PurgeBatch: 2})
		ids := make([]string, 5)
		for i := range ids {
			ids[i] = acceptJob(t, b, "x") // Retention 1h
		}
		for _, id := range ids {
			awaitState(t, b, id, asyncreq.StateSucceeded)
		}
		time.Sleep(59*time.Minute + 30*time.Second)
		synctest.Wait()
		_, err := b.Get(t.Context(), ids[0])
		require.NoError(t, err, "not expired yet")

		time.Sleep(time.Minute) // exactly one purge tick, at expiry
		synctest.Wait()
		for _, id := range ids {
			_, err := b.Get(t.Context(), id)
			assert.ErrorIs(t, err, asyncreq.ErrGone, "all purged in one tick, in batches of 2; tombstones kept")
		}
	})
}

func TestWorkerSweepsUnenqueuedRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		// Created but never enqueued: the handler crashed in between.
		id := asyncreq.NewID()
		now := time.Now()
		_, err := b.Create(t.Context(), &asyncreq.Record{
			ID: id, State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now, Retention: time.Hour,
		})
		require.NoError(t, err)
		var ran atomic.Int64
		startTestWorker(t, b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			ran.Store(time.Now().UnixNano())
			return &asyncreq.Result{}, nil
		}), &asyncreq.WorkerOptions{SweepInterval: 30 * time.Second, SweepAge: time.Minute})
		// The sweep marks it enqueued, possibly after it ran.
		rec := awaitRecord(t, b, id, func(r *asyncreq.Record) bool {
			return r.State == asyncreq.StateSucceeded && r.Enqueued
		})
		assert.Equal(t, 1, rec.Attempts)
		// Swept at the first tick after it was a minute old.
		assert.Equal(t, now.Add(90*time.Second).UnixNano(), ran.Load())
	})
}

func TestWorkerCancelDuringFailedAttemptIsNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		var calls atomic.Int32
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			calls.Add(1)
			// The client cancels, and the attempt fails before the worker
			// notices (no Watcher, no beat yet).
			if _, err := b.Update(ctx, req.ID, func(r *asyncreq.Record) error {
				r.CancelRequested = true
				return nil
			}); err != nil {
				return nil, err
			}
			return nil, errors.New("flaky")
		})
		startTestWorker(t, asyncreq.Pair(struct{ asyncreq.Store }{b}, b), p, nil)
		id := acceptJob(t, b, "x")
		rec := awaitState(t, b, id, asyncreq.StateCanceled)
		assert.Equal(t, http.StatusConflict, rec.Error.Status)
		synctest.Wait()
		assert.EqualValues(t, 1, calls.Load())
		assert.Zero(t, queueLen(b))
	})
}
