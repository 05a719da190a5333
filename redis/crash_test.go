package redis_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/redis"
)

// TestCrashedConsumerRequestFinishedByAnother: a worker process takes a
// request, marks it running and dies without a word (no ack, no outcome).
// Another process's Worker, a Backend with a consumer name of its own,
// reclaims the entry once the lease has run out and finishes the request
// as its second attempt.
func TestCrashedConsumerRequestFinishedByAnother(t *testing.T) {
	c := newClient(t)
	prefix := newPrefix(t, c)
	ctx := t.Context()
	const lease = 500 * time.Millisecond

	crashed, err := redis.New(ctx, c, &redis.Options{Prefix: prefix, Consumer: "crashed"})
	require.NoError(t, err)
	rec := testRecord("", "")
	_, err = crashed.Accept(ctx, rec)
	require.NoError(t, err)
	old, err := crashed.Dequeue(ctx, lease)
	require.NoError(t, err)
	leasedAt := time.Now()
	require.Equal(t, rec.ID, old.ID)
	// The claim a Worker makes before it runs the processor.
	_, err = crashed.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateRunning
		r.Attempts++
		r.LeaseToken = asyncreq.NewID()
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, crashed.Close()) // and the process is gone

	survivor, err := redis.New(ctx, c, &redis.Options{Prefix: prefix, Consumer: "survivor", MaxBlock: 100 * time.Millisecond})
	require.NoError(t, err)
	defer survivor.Close()
	var attempt atomic.Int64
	p := asyncreq.ProcessorFunc(func(_ context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		attempt.Store(int64(req.Attempt))
		return &asyncreq.Result{ContentType: "text/plain", Body: fmt.Appendf(nil, "done by attempt %d", req.Attempt)}, nil
	})
	w, err := asyncreq.NewWorker(survivor, p, &asyncreq.WorkerOptions{LeaseDuration: lease, Concurrency: 2})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	defer func() { require.NoError(t, w.Stop(context.Background())) }()

	var final *asyncreq.Record
	require.Eventually(t, func() bool {
		got, err := survivor.Get(ctx, rec.ID)
		if err != nil || !got.State.Final() {
			return false
		}
		final = got
		return true
	}, 15*time.Second, 20*time.Millisecond, "the survivor never finished the request")
	// Redis measures the lease from the delivery, a little before leasedAt.
	require.GreaterOrEqual(t, time.Since(leasedAt), lease-100*time.Millisecond, "finished before the crashed lease could have run out")
	require.Equal(t, asyncreq.StateSucceeded, final.State)
	require.Equal(t, 2, final.Attempts, "the crashed attempt counts")
	require.Equal(t, int64(2), attempt.Load())
	require.Equal(t, "done by attempt 2", string(final.Result.Body))

	// The dead consumer's lease is fenced off for good.
	require.ErrorIs(t, survivor.Ack(ctx, old), asyncreq.ErrLeaseLost)
	require.Eventually(t, func() bool {
		n, err := c.XLen(ctx, prefix+"{default}:q").Result()
		return err == nil && n == 0
	}, 5*time.Second, 20*time.Millisecond, "the finished entry was acked and deleted")
}
