package nats_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// dequeue dequeues with a deadline, failing t if nothing comes.
func dequeue(t *testing.T, q asyncreq.Queue, within time.Duration) *asyncreq.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	l, err := q.Dequeue(ctx, testAckWait)
	require.NoError(t, err, "Dequeue within %v", within)
	return l
}

// requireEmpty checks that nothing is delivered within d.
func requireEmpty(t *testing.T, q asyncreq.Queue, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	l, err := q.Dequeue(ctx, testAckWait)
	if err == nil {
		t.Fatalf("Dequeue returned %q, want nothing for %v", l.ID, d)
	}
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestQueueAckAndDoubleAck(t *testing.T) {
	b := newBackend(t, nil, nil)
	ctx := t.Context()
	require.NoError(t, b.Enqueue(ctx, "a", 0))
	l := dequeue(t, b, 5*time.Second)
	require.Equal(t, "a", l.ID)
	require.Equal(t, 1, l.Delivery)
	require.NoError(t, b.Ack(ctx, l))
	require.ErrorIs(t, b.Ack(ctx, l), asyncreq.ErrLeaseLost, "a second Ack")
	require.ErrorIs(t, b.Nack(ctx, l, 0), asyncreq.ErrLeaseLost, "a Nack after Ack")
	require.ErrorIs(t, b.Extend(ctx, l, testAckWait), asyncreq.ErrLeaseLost, "an Extend after Ack")
	requireEmpty(t, b, 2*testAckWait+500*time.Millisecond)
}

func TestQueueLeaseExpiresAndStaleSettleIsLost(t *testing.T) {
	b := newBackend(t, nil, nil)
	ctx := t.Context()
	require.NoError(t, b.Enqueue(ctx, "a", 0))
	first := dequeue(t, b, 5*time.Second)
	second := dequeue(t, b, testAckWait+5*time.Second)
	require.Equal(t, "a", second.ID)
	require.Equal(t, 2, second.Delivery)
	require.ErrorIs(t, b.Extend(ctx, first, testAckWait), asyncreq.ErrLeaseLost)
	require.ErrorIs(t, b.Ack(ctx, first), asyncreq.ErrLeaseLost)
	require.NoError(t, b.Ack(ctx, second))
}

func TestQueueExtendKeepsLease(t *testing.T) {
	b := newBackend(t, nil, nil)
	ctx := t.Context()
	require.NoError(t, b.Enqueue(ctx, "a", 0))
	l := dequeue(t, b, 5*time.Second)
	deadline := time.Now().Add(3 * testAckWait)
	for time.Now().Before(deadline) {
		time.Sleep(testAckWait / 3)
		require.NoError(t, b.Extend(ctx, l, testAckWait))
	}
	requireEmpty(t, b, testAckWait/2)
	require.NoError(t, b.Ack(ctx, l))
}

func TestQueueNackDelay(t *testing.T) {
	b := newBackend(t, nil, nil)
	ctx := t.Context()
	require.NoError(t, b.Enqueue(ctx, "a", 0))
	l := dequeue(t, b, 5*time.Second)
	start := time.Now()
	require.NoError(t, b.Nack(ctx, l, 700*time.Millisecond))
	require.ErrorIs(t, b.Ack(ctx, l), asyncreq.ErrLeaseLost)
	again := dequeue(t, b, 5*time.Second)
	require.GreaterOrEqual(t, time.Since(start), 600*time.Millisecond, "the Nack delay")
	require.Equal(t, "a", again.ID)
	require.NoError(t, b.Nack(ctx, again, 0))
	third := dequeue(t, b, 5*time.Second)
	require.NoError(t, b.Ack(ctx, third))
}

func TestQueueDelayedEnqueue(t *testing.T) {
	b := newBackend(t, nil, nil)
	ctx := t.Context()
	start := time.Now()
	require.NoError(t, b.Enqueue(ctx, "late", 1500*time.Millisecond))
	require.NoError(t, b.Enqueue(ctx, "now", 0))
	l := dequeue(t, b, 5*time.Second)
	require.Equal(t, "now", l.ID)
	require.NoError(t, b.Ack(ctx, l))
	l = dequeue(t, b, 5*time.Second)
	require.Equal(t, "late", l.ID)
	require.GreaterOrEqual(t, time.Since(start), 1400*time.Millisecond)
	require.NoError(t, b.Ack(ctx, l))
}

func TestQueueCloseReleasesDequeue(t *testing.T) {
	b := newBackend(t, nil, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := b.Dequeue(context.Background(), testAckWait)
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, b.Close())
	select {
	case err := <-errc:
		require.ErrorIs(t, err, asyncreq.ErrClosed)
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not release Dequeue")
	}
	require.ErrorIs(t, b.Enqueue(t.Context(), "a", 0), asyncreq.ErrClosed)
}

func TestQueueDequeueContext(t *testing.T) {
	b := newBackend(t, nil, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Dequeue(ctx, testAckWait)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 2*time.Second)
	cctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = b.Dequeue(cctx, testAckWait)
	require.True(t, errors.Is(err, context.Canceled), "got %v", err)
}

// TestCrashedConsumer: a consumer takes a request and never settles it (as
// if its process died); after the AckWait another worker gets it and
// finishes it.
func TestCrashedConsumer(t *testing.T) {
	js := connect(t)
	opts := testOptions()
	b := newBackend(t, js, opts)
	ctx := t.Context()

	// Submit as the handler does: Create unenqueued, Enqueue, mark enqueued.
	rec := &asyncreq.Record{
		ID: asyncreq.NewID(), State: asyncreq.StatePending, CreatedAt: time.Now(), UpdatedAt: time.Now(),
		Retention: time.Hour, TombstoneTTL: time.Hour, Body: []byte("x"),
	}
	_, err := b.Create(ctx, rec)
	require.NoError(t, err)
	require.NoError(t, b.Enqueue(ctx, rec.ID, 0))
	_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error { r.Enqueued = true; return nil })
	require.NoError(t, err)

	// The crashed consumer: a second Backend on the same stream and consumer
	// that dequeues and claims, then goes away without a word.
	crashed := newBackend(t, js, opts)
	l := dequeue(t, crashed, 5*time.Second)
	require.Equal(t, rec.ID, l.ID)
	_, err = crashed.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateRunning
		r.Attempts++
		r.LeaseToken = "crashed"
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, crashed.Close())

	var runs atomic.Int32
	w, err := asyncreq.NewWorker(b, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		runs.Add(1)
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte("done " + req.ID)}, nil
	}), &asyncreq.WorkerOptions{Concurrency: 2, LeaseDuration: testAckWait, PurgeInterval: -1, SweepInterval: -1})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	defer func() { require.NoError(t, w.Stop(context.Background())) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := b.Get(ctx, rec.ID)
		require.NoError(t, err)
		if got.State == asyncreq.StateSucceeded {
			require.Equal(t, 2, got.Attempts, "the crashed attempt counts")
			require.Equal(t, "done "+rec.ID, string(got.Result.Body))
			break
		}
		require.True(t, time.Now().Before(deadline), "the request was not finished after the lease ran out (state %s)", got.State)
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, int32(1), runs.Load())
}

// TestWorkerSweepEnqueuesUnenqueued: a record whose accept stopped after
// Create is found by the worker's sweep and processed.
func TestWorkerSweepEnqueuesUnenqueued(t *testing.T) {
	b := newBackend(t, nil, nil)
	ctx := t.Context()
	rec := &asyncreq.Record{
		ID: asyncreq.NewID(), State: asyncreq.StatePending, CreatedAt: time.Now().Add(-time.Minute), UpdatedAt: time.Now(),
		Retention: time.Hour, TombstoneTTL: time.Hour,
	}
	_, err := b.Create(ctx, rec)
	require.NoError(t, err)
	w, err := asyncreq.NewWorker(b, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{Body: []byte("ok")}, nil
	}), &asyncreq.WorkerOptions{LeaseDuration: testAckWait, SweepInterval: 200 * time.Millisecond, SweepAge: time.Second, PurgeInterval: -1})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	defer func() { require.NoError(t, w.Stop(context.Background())) }()
	require.Eventually(t, func() bool {
		got, err := b.Get(ctx, rec.ID)
		return err == nil && got.State == asyncreq.StateSucceeded
	}, 10*time.Second, 50*time.Millisecond)
	ids, err := b.ListUnenqueued(ctx, time.Now(), 10)
	require.NoError(t, err)
	require.Empty(t, ids)
}

// TestPairsWithOtherStore: the NATS queue works with another Store too.
func TestPairsWithOtherStore(t *testing.T) {
	b := newBackend(t, nil, nil)
	store := memory.New(nil)
	t.Cleanup(func() { _ = store.Close() })
	ctx := t.Context()
	rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, Enqueued: true, CreatedAt: time.Now(), UpdatedAt: time.Now(), Retention: time.Hour}
	_, err := store.Create(ctx, rec)
	require.NoError(t, err)
	require.NoError(t, b.Enqueue(ctx, rec.ID, 0))
	w, err := asyncreq.NewWorker(asyncreq.Pair(store, b), asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{Body: []byte("ok")}, nil
	}), &asyncreq.WorkerOptions{LeaseDuration: testAckWait, PurgeInterval: -1, SweepInterval: -1})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	defer func() { require.NoError(t, w.Stop(context.Background())) }()
	require.Eventually(t, func() bool {
		got, err := store.Get(ctx, rec.ID)
		return err == nil && got.State == asyncreq.StateSucceeded
	}, 10*time.Second, 50*time.Millisecond)
}
