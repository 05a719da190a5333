package asyncreq_test

import (
	"context"
	"errors"
	"runtime"
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

// mockReporter reports a mock's unexpected calls, which happen on the
// worker's goroutines: it marks the test failed with Errorf and ends only
// the calling goroutine (gomock cannot go on after Fatalf), whose deferred
// cleanup lets the worker still stop. testing's own Fatalf must not be
// called from a goroutine other than the test's.
type mockReporter struct{ *testing.T }

func (e mockReporter) Fatalf(format string, args ...any) {
	e.Helper()
	e.Errorf(format, args...)
	runtime.Goexit()
}

// dequeueBlocks makes every further Dequeue wait for its context.
func dequeueBlocks(q *MockQueue) {
	q.EXPECT().Dequeue(gomock.Any(), gomock.Any()).DoAndReturn(func(ctx context.Context, _ time.Duration) (*asyncreq.Lease, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}).AnyTimes()
}

func TestWorkerAckFailsAfterSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(mockReporter{t})
		b := memory.New(nil)
		q := NewMockQueue(ctrl)
		id := acceptJob(t, b, "x")
		l1 := &asyncreq.Lease{ID: id, Delivery: 1}
		l2 := &asyncreq.Lease{ID: id, Delivery: 2}
		acked := make(chan struct{})
		gomock.InOrder(
			q.EXPECT().Dequeue(gomock.Any(), 30*time.Second).Return(l1, nil),
			q.EXPECT().Ack(gomock.Any(), l1).DoAndReturn(func(context.Context, *asyncreq.Lease) error {
				close(acked)
				return errors.New("connection reset by peer")
			}),
		)
		gomock.InOrder(
			q.EXPECT().Dequeue(gomock.Any(), 30*time.Second).DoAndReturn(func(ctx context.Context, _ time.Duration) (*asyncreq.Lease, error) {
				// The queue kept the entry and, once the failed ack's lease
				// ran out, delivers it again.
				<-acked
				return l2, nil
			}),
			q.EXPECT().Ack(gomock.Any(), l2).Return(nil),
		)
		dequeueBlocks(q)

		var calls atomic.Int32
		startTestWorker(t, asyncreq.Pair(b, q), asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			calls.Add(1)
			return &asyncreq.Result{Body: []byte("once")}, nil
		}), nil)
		synctest.Wait()
		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StateSucceeded, rec.State)
		assert.Equal(t, "once", string(rec.Result.Body))
		assert.Equal(t, 1, rec.Attempts, "the redelivery is acked without running again")
		assert.EqualValues(t, 1, calls.Load())
	})
}

// mockRecord is a MockStore's record: each Update applies fn to a copy.
type mockRecord struct {
	rec *asyncreq.Record
}

func (s *mockRecord) update(_ context.Context, _ string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	c := s.rec.Clone()
	if err := fn(c); err != nil {
		return nil, err
	}
	s.rec = c
	return c.Clone(), nil
}

func TestWorkerStaleOutcomeIsFenced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(mockReporter{t})
		store := NewMockStore(ctrl)
		q := NewMockQueue(ctrl)
		id := asyncreq.NewID()
		sr := &mockRecord{rec: &asyncreq.Record{ID: id, State: asyncreq.StatePending, Retention: time.Hour}}
		l := &asyncreq.Lease{ID: id, Delivery: 1}
		q.EXPECT().Dequeue(gomock.Any(), gomock.Any()).Return(l, nil)
		dequeueBlocks(q)

		var writeErr error
		gomock.InOrder(
			store.EXPECT().Update(gomock.Any(), id, gomock.Any()).DoAndReturn(sr.update), // claim
			store.EXPECT().Update(gomock.Any(), id, gomock.Any()).DoAndReturn(
				func(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
					// Meanwhile another worker claimed the request.
					sr.rec.LeaseToken = "newer-attempt"
					_, writeErr = sr.update(ctx, id, fn)
					return nil, writeErr
				}),
		)
		// The attempt no longer owns the record: it acks its lease, which
		// removes a duplicate entry and is refused when the newer attempt
		// holds the same entry.
		q.EXPECT().Ack(gomock.Any(), l).Return(asyncreq.ErrLeaseLost)

		startTestWorker(t, asyncreq.Pair(store, q), asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			return &asyncreq.Result{Body: []byte("stale")}, nil
		}), &asyncreq.WorkerOptions{PurgeInterval: -1})
		synctest.Wait()
		assert.ErrorIs(t, writeErr, asyncreq.ErrLeaseLost)
		assert.Equal(t, asyncreq.StateRunning, sr.rec.State)
		assert.Nil(t, sr.rec.Result)
		assert.Equal(t, "newer-attempt", sr.rec.LeaseToken)
	})
}

func TestWorkerProgressAfterTakeoverCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(mockReporter{t})
		store := NewMockStore(ctrl)
		q := NewMockQueue(ctrl)
		id := asyncreq.NewID()
		sr := &mockRecord{rec: &asyncreq.Record{ID: id, State: asyncreq.StatePending}}
		l := &asyncreq.Lease{ID: id, Delivery: 1}
		q.EXPECT().Dequeue(gomock.Any(), gomock.Any()).Return(l, nil)
		dequeueBlocks(q)
		gomock.InOrder(
			store.EXPECT().Update(gomock.Any(), id, gomock.Any()).DoAndReturn(sr.update), // claim
			store.EXPECT().Update(gomock.Any(), id, gomock.Any()).DoAndReturn(
				func(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
					sr.rec.LeaseToken = "newer-attempt"
					return sr.update(ctx, id, fn)
				}),
		)
		// The abandoned attempt finds its record taken over and acks its
		// lease, which is refused: the newer attempt holds the entry.
		store.EXPECT().Get(gomock.Any(), id).DoAndReturn(func(context.Context, string) (*asyncreq.Record, error) {
			return sr.rec.Clone(), nil
		})
		q.EXPECT().Ack(gomock.Any(), l).Return(asyncreq.ErrLeaseLost)
		type outcome struct{ progressErr, cause error }
		got := make(chan outcome, 1)
		startTestWorker(t, asyncreq.Pair(store, q), asyncreq.ProcessorFunc(func(ctx context.Context, _ *asyncreq.Request) (*asyncreq.Result, error) {
			err := asyncreq.ReportProgress(ctx, 50, "half")
			<-ctx.Done()
			got <- outcome{err, context.Cause(ctx)}
			return nil, ctx.Err()
		}), &asyncreq.WorkerOptions{PurgeInterval: -1})
		o := <-got
		assert.ErrorIs(t, o.progressErr, asyncreq.ErrLeaseLost)
		assert.ErrorIs(t, o.cause, asyncreq.ErrLeaseLost)
		synctest.Wait()
		assert.Nil(t, sr.rec.Progress)
	})
}

func TestWorkerExtendLeaseLostCancelsProcessor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(mockReporter{t})
		b := memory.New(nil)
		q := NewMockQueue(ctrl)
		id := acceptJob(t, b, "x")
		l := &asyncreq.Lease{ID: id, Delivery: 1}
		q.EXPECT().Dequeue(gomock.Any(), 3*time.Second).Return(l, nil)
		dequeueBlocks(q)
		gomock.InOrder(
			q.EXPECT().Extend(gomock.Any(), l, 3*time.Second).Return(nil),
			q.EXPECT().Extend(gomock.Any(), l, 3*time.Second).Return(asyncreq.ErrLeaseLost),
		)
		// No Ack: the record is still this attempt's, and the lease, lost in
		// the Queue only, may hold the request's only entry.
		cause := make(chan error, 1)
		var canceledAt time.Time
		start := time.Now()
		startTestWorker(t, asyncreq.Pair(b, q), asyncreq.ProcessorFunc(func(ctx context.Context, _ *asyncreq.Request) (*asyncreq.Result, error) {
			<-ctx.Done()
			canceledAt = time.Now()
			cause <- context.Cause(ctx)
			return nil, ctx.Err()
		}), &asyncreq.WorkerOptions{LeaseDuration: 3 * time.Second})
		assert.ErrorIs(t, <-cause, asyncreq.ErrLeaseLost)
		assert.Equal(t, 2*time.Second, canceledAt.Sub(start), "heartbeats every LeaseDuration/3")
		synctest.Wait()
		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StateRunning, rec.State, "nothing written: the next delivery takes over")
		assert.Equal(t, 1, rec.Attempts)
	})
}

func TestWorkerClaimStoreErrorNacksWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(mockReporter{t})
		store := NewMockStore(ctrl)
		q := NewMockQueue(ctrl)
		l := &asyncreq.Lease{ID: asyncreq.NewID(), Delivery: 1}
		q.EXPECT().Dequeue(gomock.Any(), gomock.Any()).Return(l, nil)
		dequeueBlocks(q)
		store.EXPECT().Update(gomock.Any(), l.ID, gomock.Any()).Return(nil, errors.New("store unavailable"))
		var delay time.Duration
		q.EXPECT().Nack(gomock.Any(), l, gomock.Any()).DoAndReturn(func(_ context.Context, _ *asyncreq.Lease, d time.Duration) error {
			delay = d
			return nil
		})
		startTestWorker(t, asyncreq.Pair(store, q), asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			t.Error("processor called without a claim")
			return nil, nil
		}), &asyncreq.WorkerOptions{PurgeInterval: -1, BackoffMin: time.Second, BackoffMax: time.Minute})
		synctest.Wait()
		assert.GreaterOrEqual(t, delay, time.Second)
		assert.LessOrEqual(t, delay, 2*time.Second)
	})
}

func TestWorkerOutcomeWriteFailureLeavesLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(mockReporter{t})
		store := NewMockStore(ctrl)
		q := NewMockQueue(ctrl)
		id := asyncreq.NewID()
		sr := &mockRecord{rec: &asyncreq.Record{ID: id, State: asyncreq.StatePending}}
		q.EXPECT().Dequeue(gomock.Any(), gomock.Any()).Return(&asyncreq.Lease{ID: id, Delivery: 1}, nil)
		dequeueBlocks(q)
		gomock.InOrder(
			store.EXPECT().Update(gomock.Any(), id, gomock.Any()).DoAndReturn(sr.update),
			store.EXPECT().Update(gomock.Any(), id, gomock.Any()).Return(nil, errors.New("store unavailable")),
		)
		// Neither Ack nor Nack: the lease runs out and the request is
		// delivered again, so the lost outcome is computed anew.
		logs := &workerLog{}
		startTestWorker(t, asyncreq.Pair(store, q), asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			return &asyncreq.Result{}, nil
		}), &asyncreq.WorkerOptions{PurgeInterval: -1, Logger: logs.logger()})
		synctest.Wait()
		assert.Contains(t, logs.String(), "store unavailable")
	})
}

func TestWorkerDequeueErrorsBackOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctrl := gomock.NewController(mockReporter{t})
		b := memory.New(nil)
		q := NewMockQueue(ctrl)
		var calls atomic.Int32
		q.EXPECT().Dequeue(gomock.Any(), gomock.Any()).DoAndReturn(func(context.Context, time.Duration) (*asyncreq.Lease, error) {
			calls.Add(1)
			return nil, errors.New("broker unreachable")
		}).AnyTimes()
		logs := &workerLog{}
		w, err := asyncreq.NewWorker(asyncreq.Pair(b, q), asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			return nil, nil
		}), &asyncreq.WorkerOptions{Logger: logs.logger()})
		require.NoError(t, err)
		require.NoError(t, w.Start(t.Context()))
		time.Sleep(time.Minute)
		require.NoError(t, w.Stop(t.Context()))
		// 50ms doubling up to 5s (with jitter): no more than ~20 in a minute.
		n := calls.Load()
		assert.GreaterOrEqual(t, n, int32(10))
		assert.LessOrEqual(t, n, int32(30))
		assert.Contains(t, logs.String(), "broker unreachable")
	})
}

func TestWorkerQueueClosedStopsFetching(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		logs := &workerLog{}
		w, err := asyncreq.NewWorker(b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			return nil, nil
		}), &asyncreq.WorkerOptions{Logger: logs.logger(), PurgeInterval: -1, SweepInterval: -1})
		require.NoError(t, err)
		require.NoError(t, w.Start(t.Context()))
		synctest.Wait()
		require.NoError(t, b.Close())
		synctest.Wait()
		assert.Contains(t, logs.String(), "queue closed")
		require.NoError(t, w.Stop(t.Context()))
	})
}

// batchSpy records the largest batch a worker asked for.
type batchSpy struct {
	*memory.Backend
	largest atomic.Int32
	calls   atomic.Int32
}

func (q *batchSpy) DequeueBatch(ctx context.Context, n int, ttl time.Duration) ([]*asyncreq.Lease, error) {
	q.calls.Add(1)
	for {
		old := q.largest.Load()
		if int32(n) <= old || q.largest.CompareAndSwap(old, int32(n)) {
			break
		}
	}
	return q.Backend.DequeueBatch(ctx, n, ttl)
}

func TestWorkerUsesBatchDequeue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		q := &batchSpy{Backend: b}
		ids := make([]string, 8)
		for i := range ids {
			ids[i] = acceptJob(t, b, "x")
		}
		release := make(chan struct{})
		var started atomic.Int32
		startTestWorker(t, asyncreq.Pair(b, q), asyncreq.ProcessorFunc(func(ctx context.Context, _ *asyncreq.Request) (*asyncreq.Result, error) {
			started.Add(1)
			<-release
			return &asyncreq.Result{}, nil
		}), &asyncreq.WorkerOptions{Concurrency: 4})
		synctest.Wait()
		assert.EqualValues(t, 4, q.largest.Load(), "all free capacity asked for at once")
		assert.EqualValues(t, 1, q.calls.Load(), "one call fills four slots")
		assert.EqualValues(t, 4, started.Load())
		close(release)
		for _, id := range ids {
			awaitState(t, b, id, asyncreq.StateSucceeded)
		}
	})
}
