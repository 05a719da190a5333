package asyncreq_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// TestWorkerDropsSecondEntryOfRunningRequest: a second queue entry of a
// request that is running (a retry of a request canceled before it was
// dequeued, on a Queue that keeps both entries) is dropped when first
// delivered; it does not take the running attempt over and run the
// request a second time at once.
func TestWorkerDropsSecondEntryOfRunningRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		t.Cleanup(func() { _ = b.Close() })
		release := make(chan struct{})
		var runs atomic.Int32
		p := asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			runs.Add(1)
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return &asyncreq.Result{StatusCode: 200}, nil
		})
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{Concurrency: 2})
		id := acceptJob(t, b, "once")
		awaitState(t, b, id, asyncreq.StateRunning)

		require.NoError(t, b.Enqueue(t.Context(), id, 0))
		synctest.Wait()
		require.Equal(t, int32(1), runs.Load(), "the second entry must not start a second run")
		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, 1, rec.Attempts, "the second entry must not take the attempt over")

		close(release)
		awaitState(t, b, id, asyncreq.StateSucceeded)
		synctest.Wait()
		require.Equal(t, int32(1), runs.Load())
		require.Zero(t, queueLen(b), "the second entry is acknowledged")
	})
}
