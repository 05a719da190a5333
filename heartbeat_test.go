package asyncreq_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// readCounter is a memory Backend's Store that counts the worker's reads
// and watches of records.
type readCounter struct {
	*memory.Backend
	gets, watches atomic.Int32
}

func (c *readCounter) Get(ctx context.Context, id string) (*asyncreq.Record, error) {
	c.gets.Add(1)
	return c.Backend.Get(ctx, id)
}

func (c *readCounter) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	c.watches.Add(1)
	return c.Backend.Watch(ctx, id)
}

// TestShortAttemptCostsNoHeartbeat: a request whose processor returns
// before the heartbeat starts (50ms) costs no watch and no read of its
// record; one that runs longer is watched, and read once the watch is
// set.
func TestShortAttemptCostsNoHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		s := &readCounter{Backend: b}
		var runFor atomic.Int64
		startTestWorker(t, asyncreq.Pair(s, queueOnly{b}), asyncreq.ProcessorFunc(func(ctx context.Context, _ *asyncreq.Request) (*asyncreq.Result, error) {
			time.Sleep(time.Duration(runFor.Load()))
			return &asyncreq.Result{Body: []byte("ok")}, nil
		}), nil)

		runFor.Store(int64(49 * time.Millisecond))
		for range 3 {
			awaitState(t, b, acceptJob(t, b, "short"), asyncreq.StateSucceeded)
		}
		assert.Zero(t, s.watches.Load(), "watches")
		assert.Zero(t, s.gets.Load(), "reads")

		runFor.Store(int64(time.Second))
		awaitState(t, b, acceptJob(t, b, "long"), asyncreq.StateSucceeded)
		assert.Equal(t, int32(1), s.watches.Load(), "watches")
		assert.Equal(t, int32(1), s.gets.Load(), "reads")
	})
}

// TestCancelBeforeHeartbeatNoticedAtItsStart: a client's cancel made
// before the heartbeat starts reaches the processor when it starts, 50ms
// after the processor did, by the read that follows its watch.
func TestCancelBeforeHeartbeatNoticedAtItsStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		h := newTestHandler(t, b, nil)
		started := make(chan time.Time, 1)
		canceled := make(chan time.Time, 1)
		startTestWorker(t, b, asyncreq.ProcessorFunc(func(ctx context.Context, _ *asyncreq.Request) (*asyncreq.Result, error) {
			started <- time.Now()
			<-ctx.Done()
			assert.ErrorIs(t, context.Cause(ctx), asyncreq.ErrCanceled)
			canceled <- time.Now()
			return nil, ctx.Err()
		}), nil)

		id := postJob(t, h, "x")
		start := <-started
		rr := serveReq(t, h, http.MethodDelete, "/"+id, "")
		require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
		assert.Equal(t, 50*time.Millisecond, (<-canceled).Sub(start))
		awaitState(t, b, id, asyncreq.StateCanceled)
	})
}

// TestSucceededAttemptLoggedAtDebug: a worker logging at Info writes no
// line for a request that succeeds, and one for an attempt that fails.
func TestSucceededAttemptLoggedAtDebug(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		var logs syncBuffer
		startTestWorker(t, b, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			if string(req.Body) == "fail" {
				return nil, asyncreq.Permanent(errors.New("no"), http.StatusUnprocessableEntity)
			}
			return &asyncreq.Result{Body: []byte("ok")}, nil
		}), &asyncreq.WorkerOptions{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})

		awaitState(t, b, acceptJob(t, b, "ok"), asyncreq.StateSucceeded)
		synctest.Wait()
		assert.Empty(t, logs.String())
		awaitState(t, b, acceptJob(t, b, "fail"), asyncreq.StateFailed)
		synctest.Wait()
		assert.Contains(t, logs.String(), "attempt finished")
		assert.Contains(t, logs.String(), "outcome=failed")
	})
}

// slowWrites is a memory Backend whose record writes (the claim and the
// outcome) each take two seconds, as on a database under load. It counts
// them.
type slowWrites struct {
	*memory.Backend
	writes atomic.Int32
}

const slowWrite = 2 * time.Second

func (s *slowWrites) Update(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	s.writes.Add(1)
	time.Sleep(slowWrite)
	return s.Backend.Update(ctx, id, fn)
}

func (s *slowWrites) Complete(ctx context.Context, l *asyncreq.Lease, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	s.writes.Add(1)
	time.Sleep(slowWrite)
	return s.Backend.Complete(ctx, l, fn)
}

// TestSlowWritesKeepTheLease: the lease is extended from the dequeue
// until it is settled, not only while the processor runs. A short request
// whose claim and outcome writes take longer together than the lease
// still succeeds at its first attempt, with no redelivery.
func TestSlowWritesKeepTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		var log workerLog
		var calls atomic.Int32
		s := &slowWrites{Backend: b}
		startTestWorker(t, s, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			calls.Add(1)
			return &asyncreq.Result{Body: []byte("ok")}, nil
		}), &asyncreq.WorkerOptions{LeaseDuration: 3 * time.Second, Logger: log.logger()})
		id := acceptJob(t, b, "x")
		rec := awaitRecord(t, b, id, func(r *asyncreq.Record) bool { return r.State.Final() })
		time.Sleep(time.Minute) // any redelivery would be over
		synctest.Wait()
		assert.Equal(t, asyncreq.StateSucceeded, rec.State)
		assert.Equal(t, 1, rec.Attempts)
		assert.EqualValues(t, 1, calls.Load())
		assert.Zero(t, queueLen(b), "the entry is acked")
		assert.EqualValues(t, 2, s.writes.Load(), "one claim and one outcome: no redelivery")
		assert.NotContains(t, log.String(), "level=WARN")
	})
}

// lostDuringClaim is slowWrites whose leases are lost at their first
// extension.
type lostDuringClaim struct{ *slowWrites }

func (lostDuringClaim) Extend(context.Context, *asyncreq.Lease, time.Duration) error {
	return asyncreq.ErrLeaseLost
}

// TestLeaseLostDuringClaimCancelsProcessorAtStart: a lease found lost
// while the claim is being written cancels the processor as soon as it
// starts, not a beat later.
func TestLeaseLostDuringClaimCancelsProcessorAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		cause := make(chan error, 1)
		var ranFor time.Duration
		startTestWorker(t, lostDuringClaim{&slowWrites{Backend: b}}, asyncreq.ProcessorFunc(func(ctx context.Context, _ *asyncreq.Request) (*asyncreq.Result, error) {
			start := time.Now()
			select {
			case <-ctx.Done():
			case <-time.After(time.Minute):
			}
			ranFor = time.Since(start)
			cause <- context.Cause(ctx)
			return nil, ctx.Err()
		}), &asyncreq.WorkerOptions{LeaseDuration: 3 * time.Second})
		acceptJob(t, b, "x")
		assert.ErrorIs(t, <-cause, asyncreq.ErrLeaseLost)
		assert.Zero(t, ranFor, "canceled at its start: the lease was lost 1s into the 2s claim")
	})
}
