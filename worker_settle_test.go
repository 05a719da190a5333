package asyncreq_test

import (
	"context"
	"errors"
	"fmt"
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

// A second queue entry of one id (made by a sweep, an operator's retry,
// or a queue that delivers at least once) must not take the request away
// from the attempt running it: delivered for the first time while the
// request runs, it is acked and dropped.
func TestWorkerDuplicateQueueEntryIsSettled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		release := make(chan struct{})
		var calls atomic.Int32
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			calls.Add(1)
			select {
			case <-release:
				return &asyncreq.Result{Body: []byte(fmt.Sprint("attempt ", req.Attempt))}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		id := acceptJob(t, b, "x")
		require.NoError(t, b.Enqueue(t.Context(), id, 0), "a duplicate entry")
		const lease = 3 * time.Second
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{LeaseDuration: lease, PurgeInterval: -1})
		synctest.Wait()
		time.Sleep(10 * lease) // many lease lengths: an abandoned entry would have come back
		synctest.Wait()

		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, asyncreq.StateRunning, rec.State)
		assert.Equal(t, 1, rec.Attempts, "the duplicate entry did not take the attempt over")
		assert.EqualValues(t, 1, calls.Load())
		assert.Equal(t, 1, queueLen(b), "the duplicate entry was acked; the running attempt holds the other")

		close(release)
		rec = awaitState(t, b, id, asyncreq.StateSucceeded)
		assert.Equal(t, "attempt 1", string(rec.Result.Body))
		synctest.Wait()
		assert.Zero(t, queueLen(b))
	})
}

// A request whose accept could not mark it enqueued is marked when a
// worker claims it, so that the sweep does not enqueue it a second time
// while it waits for a retry.
func TestWorkerClaimMarksEnqueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		id := asyncreq.NewID()
		now := time.Now()
		_, err := b.Create(t.Context(), &asyncreq.Record{
			ID: id, State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now, Retention: time.Hour,
		})
		require.NoError(t, err)
		require.NoError(t, b.Enqueue(t.Context(), id, 0)) // and the mark that follows was lost

		var calls atomic.Int32
		p := asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			if calls.Add(1) == 1 {
				return nil, errors.New("transient")
			}
			return &asyncreq.Result{}, nil
		})
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{
			BackoffMin: time.Minute, BackoffMax: time.Minute,
			SweepInterval: time.Second, SweepAge: time.Second, PurgeInterval: -1,
		})
		time.Sleep(30 * time.Second) // thirty sweeps, within the backoff
		synctest.Wait()
		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StatePending, rec.State)
		assert.True(t, rec.Enqueued)
		assert.EqualValues(t, 1, calls.Load(), "not run again before its backoff")
		assert.Equal(t, 1, queueLen(b), "not enqueued twice")

		rec = awaitState(t, b, id, asyncreq.StateSucceeded)
		assert.Equal(t, 2, rec.Attempts)
	})
}

// watchCounter is a Store and Queue whose Watch counts the watches that
// are live: made, and their context not yet ended.
type watchCounter struct {
	*memory.Backend
	live atomic.Int32
}

func (c *watchCounter) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	ch, err := c.Backend.Watch(ctx, id)
	if err != nil {
		return nil, err
	}
	c.live.Add(1)
	context.AfterFunc(ctx, func() { c.live.Add(-1) })
	return ch, nil
}

// A running request that reports progress often keeps one watch, not one
// per change.
func TestWorkerReleasesReplacedWatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		wc := &watchCounter{Backend: b}
		release := make(chan struct{})
		p := asyncreq.ProcessorFunc(func(ctx context.Context, _ *asyncreq.Request) (*asyncreq.Result, error) {
			for i := range 100 {
				if err := asyncreq.ReportProgress(ctx, i, "step"); err != nil {
					return nil, err
				}
				time.Sleep(time.Second) // on the bubble's clock: the worker watches again
			}
			select {
			case <-release:
				return &asyncreq.Result{}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		id := acceptJob(t, b, "x")
		startTestWorker(t, wc, p, &asyncreq.WorkerOptions{PurgeInterval: -1})
		awaitRecord(t, b, id, func(r *asyncreq.Record) bool { return r.Progress != nil && r.Progress.Percent == 99 })
		synctest.Wait()
		assert.EqualValues(t, 1, wc.live.Load(), "one live watch")
		close(release)
		awaitState(t, b, id, asyncreq.StateSucceeded)
		synctest.Wait()
		assert.Zero(t, wc.live.Load())
	})
}

// Stop is bounded even when the Store hangs on the write that hands a
// request back: the write gets LeaseDuration, then the lease is left to run
// out.
func TestWorkerStopBoundedWhenStoreHangs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(mockReporter{t})
		store := NewMockStore(ctrl)
		q := NewMockQueue(ctrl)
		id := asyncreq.NewID()
		sr := &mockRecord{rec: &asyncreq.Record{ID: id, State: asyncreq.StatePending}}
		l := &asyncreq.Lease{ID: id, Delivery: 1}
		q.EXPECT().Dequeue(gomock.Any(), gomock.Any()).Return(l, nil)
		dequeueBlocks(q)
		// The lease is kept while the hand-back is being written.
		q.EXPECT().Extend(gomock.Any(), l, 30*time.Second).Return(nil).AnyTimes()
		gomock.InOrder(
			store.EXPECT().Update(gomock.Any(), id, gomock.Any()).DoAndReturn(sr.update), // claim
			store.EXPECT().Update(gomock.Any(), id, gomock.Any()).DoAndReturn(
				func(ctx context.Context, _ string, _ func(*asyncreq.Record) error) (*asyncreq.Record, error) {
					<-ctx.Done() // hung until the caller gives up
					return nil, ctx.Err()
				}),
		)
		started := make(chan struct{})
		w, err := asyncreq.NewWorker(asyncreq.Pair(store, q), asyncreq.ProcessorFunc(func(ctx context.Context, _ *asyncreq.Request) (*asyncreq.Result, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}), &asyncreq.WorkerOptions{LeaseDuration: 30 * time.Second, PurgeInterval: -1})
		require.NoError(t, err)
		require.NoError(t, w.Start(t.Context()))
		<-started

		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		require.ErrorIs(t, w.Stop(ctx), context.DeadlineExceeded)
		assert.Equal(t, 31*time.Second, time.Since(start), "a second for the work, then the lease length for the hand-back")
	})
}

// A faulty Store that answers a read with neither a record nor an error
// gets a log line from the heartbeat, not a panic of the process.
func TestWorkerHeartbeatSurvivesStoreReturningNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(mockReporter{t})
		store := NewMockStore(ctrl)
		q := NewMockQueue(ctrl)
		id := asyncreq.NewID()
		sr := &mockRecord{rec: &asyncreq.Record{ID: id, State: asyncreq.StatePending}}
		l := &asyncreq.Lease{ID: id, Delivery: 1}
		q.EXPECT().Dequeue(gomock.Any(), gomock.Any()).Return(l, nil)
		dequeueBlocks(q)
		q.EXPECT().Extend(gomock.Any(), l, gomock.Any()).Return(nil).AnyTimes()
		store.EXPECT().Update(gomock.Any(), id, gomock.Any()).DoAndReturn(sr.update).Times(2) // claim, outcome
		store.EXPECT().Get(gomock.Any(), id).Return(nil, nil).MinTimes(1)
		q.EXPECT().Ack(gomock.Any(), l).Return(nil)

		logs := &workerLog{}
		startTestWorker(t, asyncreq.Pair(store, q), asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			time.Sleep(time.Minute) // several heartbeats
			return &asyncreq.Result{Body: []byte("ok")}, nil
		}), &asyncreq.WorkerOptions{PurgeInterval: -1, Logger: logs.logger()})
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		assert.Equal(t, asyncreq.StateSucceeded, sr.rec.State)
		assert.Contains(t, logs.String(), "neither a record nor an error")
	})
}

// counting is a memory Backend that counts its Complete and Ack calls.
type counting struct {
	*memory.Backend
	completes, acks atomic.Int32
}

func (c *counting) Complete(ctx context.Context, l *asyncreq.Lease, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	c.completes.Add(1)
	return c.Backend.Complete(ctx, l, fn)
}

func (c *counting) Ack(ctx context.Context, l *asyncreq.Lease) error {
	c.acks.Add(1)
	return c.Backend.Ack(ctx, l)
}

// onlyQueue hides every method of a Queue but the Queue's own.
type onlyQueue struct{ asyncreq.Queue }

// A Worker whose Backend is a Completer records outcomes and acks in one
// Complete call; with the same backend paired with a Queue that is a
// different value, it uses Update and Ack, since a Completer can only
// settle its own leases.
func TestWorkerUsesCompleterOfItsOwnQueue(t *testing.T) {
	for _, same := range []bool{true, false} {
		t.Run(fmt.Sprint("same=", same), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := &counting{Backend: memory.New(nil)}
				var backend asyncreq.Backend = b
				if !same {
					backend = asyncreq.Pair(b, onlyQueue{b})
				}
				ids := []string{acceptJob(t, b.Backend, "a"), acceptJob(t, b.Backend, "b"), acceptJob(t, b.Backend, "c")}
				p := asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
					return &asyncreq.Result{}, nil
				})
				startTestWorker(t, backend, p, &asyncreq.WorkerOptions{PurgeInterval: -1})
				for _, id := range ids {
					awaitState(t, b.Backend, id, asyncreq.StateSucceeded)
				}
				synctest.Wait()
				assert.Zero(t, queueLen(b.Backend), "every entry is settled")
				if same {
					assert.EqualValues(t, len(ids), b.completes.Load())
					assert.Zero(t, b.acks.Load())
				} else {
					assert.Zero(t, b.completes.Load())
					assert.EqualValues(t, len(ids), b.acks.Load())
				}
			})
		})
	}
}

// Concurrency bounds the processors running at once, not the outcomes
// being written: a slot is free for the next request as soon as the
// processor returns, while the outcome is still being stored.
func TestWorkerFreesSlotBeforeOutcomeIsWritten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &slowOutcomes{Backend: memory.New(nil), release: make(chan struct{})}
		first, second := acceptJob(t, b.Backend, "1"), acceptJob(t, b.Backend, "2")
		var ran atomic.Int32
		p := asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			ran.Add(1)
			return &asyncreq.Result{}, nil
		})
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{Concurrency: 1, PurgeInterval: -1})
		synctest.Wait()
		assert.EqualValues(t, 2, ran.Load(), "with one slot, the second request ran while the first one's outcome was still being written")
		close(b.release)
		awaitState(t, b.Backend, first, asyncreq.StateSucceeded)
		awaitState(t, b.Backend, second, asyncreq.StateSucceeded)
	})
}

// slowOutcomes is a memory Backend whose writes of final records wait for
// release.
type slowOutcomes struct {
	*memory.Backend
	release chan struct{}
}

func (s *slowOutcomes) Complete(ctx context.Context, l *asyncreq.Lease, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Backend.Complete(ctx, l, fn)
}
