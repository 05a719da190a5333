package asyncreq_test

import (
	"context"
	"errors"
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

// pausedLister is a memory Store whose first ListUnenqueued that finds
// something hands the ids to listed and returns only once resume is
// closed, so that a test can act between the sweep's listing and what the
// sweep does with the list.
type pausedLister struct {
	*memory.Backend
	listed chan []string
	resume chan struct{}
	paused atomic.Bool
}

func (p *pausedLister) ListUnenqueued(ctx context.Context, before time.Time, limit int) ([]string, error) {
	ids, err := p.Backend.ListUnenqueued(ctx, before, limit)
	if len(ids) > 0 && p.paused.CompareAndSwap(false, true) {
		p.listed <- ids
		<-p.resume
	}
	return ids, err
}

// newUnenqueued records a pending request whose accept stored it but did
// not mark it enqueued, created at the bubble's now.
func newUnenqueued(t *testing.T, s asyncreq.Store) string {
	t.Helper()
	id := asyncreq.NewID()
	now := time.Now()
	_, err := s.Create(t.Context(), &asyncreq.Record{
		ID: id, State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now, Retention: time.Hour,
	})
	require.NoError(t, err)
	return id
}

// A record that the sweep lists while it waits, unmarked, for its queue
// entry (the accept enqueued it but lost the mark), and that a worker
// claims from that entry before the sweep gets to it, is running: the
// sweep must not enqueue it again, or a second delivery takes the request
// from its live attempt, which is canceled and spends an attempt.
func TestWorkerSweepSkipsRunningRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		store := &pausedLister{Backend: b, listed: make(chan []string), resume: make(chan struct{})}
		id := newUnenqueued(t, b)

		release := make(chan struct{})
		var calls atomic.Int32
		var causes []error
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			calls.Add(1)
			select {
			case <-release:
				return &asyncreq.Result{}, nil
			case <-ctx.Done():
				causes = append(causes, context.Cause(ctx))
				return nil, ctx.Err()
			}
		})
		startTestWorker(t, asyncreq.Pair(store, b), p, &asyncreq.WorkerOptions{
			Concurrency: 2, SweepInterval: 30 * time.Second, SweepAge: time.Minute, PurgeInterval: -1,
		})

		ids := <-store.listed // the sweep at 90s lists it, still pending
		require.Equal(t, []string{id}, ids)
		// Its own queue entry is delivered now, and a worker runs it.
		require.NoError(t, b.Enqueue(t.Context(), id, 0))
		rec := awaitState(t, b, id, asyncreq.StateRunning)
		require.True(t, rec.Enqueued, "the claim marks it")
		close(store.resume)
		synctest.Wait()

		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StateRunning, rec.State)
		assert.Equal(t, 1, rec.Attempts, "no second attempt took it over")
		assert.EqualValues(t, 1, calls.Load(), "one run")
		assert.Empty(t, causes, "the live attempt was not canceled")
		assert.Equal(t, 1, queueLen(b), "only the entry being run")

		close(release)
		rec = awaitState(t, b, id, asyncreq.StateSucceeded)
		assert.Equal(t, 1, rec.Attempts)
		synctest.Wait()
		assert.Zero(t, queueLen(b))
	})
}

// The sweep takes only pending records: whatever a Store lists, a
// record that is running (or final) is not enqueued, while a pending one
// is enqueued and then marked.
func TestWorkerSweepEnqueuesOnlyPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(t)
		b := memory.New(nil)
		pending := newUnenqueued(t, b)
		running := newUnenqueued(t, b)
		_, err := b.Update(t.Context(), running, func(r *asyncreq.Record) error {
			r.State, r.Attempts, r.LeaseToken = asyncreq.StateRunning, 1, "another worker's"
			return nil
		})
		require.NoError(t, err)
		gone := asyncreq.NewID()

		lister := NewMockUnenqueuedLister(ctrl)
		lister.EXPECT().ListUnenqueued(gomock.Any(), gomock.Any(), gomock.Any()).
			Return([]string{gone, running, pending}, nil)
		lister.EXPECT().ListUnenqueued(gomock.Any(), gomock.Any(), gomock.Any()).Return(nil, nil).AnyTimes()
		queue := NewMockQueue(ctrl)
		queue.EXPECT().Enqueue(gomock.Any(), pending, time.Duration(0)).Return(nil)
		queue.EXPECT().Dequeue(gomock.Any(), gomock.Any()).DoAndReturn(
			func(ctx context.Context, _ time.Duration) (*asyncreq.Lease, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}).AnyTimes()
		store := struct {
			asyncreq.Store
			asyncreq.UnenqueuedLister
		}{b, lister}
		startTestWorker(t, asyncreq.Pair(store, queue), asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			return &asyncreq.Result{}, nil
		}), &asyncreq.WorkerOptions{SweepInterval: time.Minute, PurgeInterval: -1})
		time.Sleep(time.Minute)
		synctest.Wait()

		rec, err := b.Get(t.Context(), pending)
		require.NoError(t, err)
		assert.True(t, rec.Enqueued, "marked once enqueued")
		rec, err = b.Get(t.Context(), running)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StateRunning, rec.State)
		assert.Equal(t, "another worker's", rec.LeaseToken)
	})
}

// A sweep whose Enqueue fails leaves the record as it found it, unmarked,
// so that the next sweep enqueues it: nothing accepted is left pending
// forever.
func TestWorkerSweepRetriesFailedEnqueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(t)
		b := memory.New(nil)
		id := newUnenqueued(t, b)

		queue := NewMockQueue(ctrl)
		first := queue.EXPECT().Enqueue(gomock.Any(), id, time.Duration(0)).Return(errors.New("queue down"))
		queue.EXPECT().Enqueue(gomock.Any(), id, time.Duration(0)).Return(nil).After(first.Call)
		queue.EXPECT().Dequeue(gomock.Any(), gomock.Any()).DoAndReturn(
			func(ctx context.Context, _ time.Duration) (*asyncreq.Lease, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}).AnyTimes()
		startTestWorker(t, asyncreq.Pair(b, queue), asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			return &asyncreq.Result{}, nil
		}), &asyncreq.WorkerOptions{SweepInterval: time.Minute, SweepAge: time.Second, PurgeInterval: -1})

		time.Sleep(time.Minute) // the first sweep: Enqueue fails
		synctest.Wait()
		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		assert.False(t, rec.Enqueued, "not marked while not enqueued")
		time.Sleep(time.Minute) // the second sweep enqueues it
		synctest.Wait()
		rec, err = b.Get(t.Context(), id)
		require.NoError(t, err)
		assert.True(t, rec.Enqueued)
	})
}
