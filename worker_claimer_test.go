package asyncreq_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// claiming is a memory Backend that is an asyncreq.Claimer: DequeueClaim
// leases up to max (or, with extra, one more than max) entries and claims
// their records with Update, each claim taking slowClaim more. It counts
// the calls of each way to dequeue and of Update.
type claiming struct {
	*memory.Backend
	extra                         bool
	slowClaim                     time.Duration
	claimCalls, dequeues, updates atomic.Int32
}

func (c *claiming) DequeueClaim(ctx context.Context, max int, ttl time.Duration, claim func(*asyncreq.Lease, *asyncreq.Record) error) ([]asyncreq.Claim, error) {
	c.claimCalls.Add(1)
	if c.extra {
		max++
	}
	leases, err := c.Backend.DequeueBatch(ctx, max, ttl)
	if err != nil {
		return nil, err
	}
	claims := make([]asyncreq.Claim, len(leases))
	for i, l := range leases {
		rec, err := c.Backend.Update(ctx, l.ID, func(r *asyncreq.Record) error { return claim(l, r) })
		claims[i] = asyncreq.Claim{Lease: l, Record: rec, Err: err}
		time.Sleep(c.slowClaim)
	}
	return claims, nil
}

func (c *claiming) Dequeue(ctx context.Context, ttl time.Duration) (*asyncreq.Lease, error) {
	c.dequeues.Add(1)
	return c.Backend.Dequeue(ctx, ttl)
}

func (c *claiming) DequeueBatch(ctx context.Context, max int, ttl time.Duration) ([]*asyncreq.Lease, error) {
	c.dequeues.Add(1)
	return c.Backend.DequeueBatch(ctx, max, ttl)
}

func (c *claiming) Update(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	c.updates.Add(1)
	return c.Backend.Update(ctx, id, fn)
}

// A Worker whose Backend is a Claimer takes its leases and claims in one
// step: it neither dequeues nor updates a record to claim it apart.
func TestWorkerClaimsWithTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		c := &claiming{Backend: b}
		var attempts atomic.Int32
		startTestWorker(t, c, asyncreq.ProcessorFunc(func(_ context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			attempts.Add(int32(req.Attempt))
			return &asyncreq.Result{Body: []byte("ok")}, nil
		}), &asyncreq.WorkerOptions{Concurrency: 4})
		ids := []string{acceptJob(t, b, "a"), acceptJob(t, b, "b"), acceptJob(t, b, "c")}
		for _, id := range ids {
			rec := awaitRecord(t, b, id, func(r *asyncreq.Record) bool { return r.State.Final() })
			assert.Equal(t, asyncreq.StateSucceeded, rec.State)
			assert.Equal(t, 1, rec.Attempts)
		}
		assert.EqualValues(t, 3, attempts.Load(), "each request runs once, as its first attempt")
		assert.Positive(t, c.claimCalls.Load())
		assert.Zero(t, c.dequeues.Load(), "a Claimer's leases are taken with DequeueClaim only")
		assert.Zero(t, c.updates.Load(), "the claim is made in DequeueClaim, the outcome by Complete")
	})
}

// A lease a Claimer took beyond what the worker asked for is given back
// with its record handed back, so that the request runs later as its
// first attempt, not its second.
func TestWorkerHandsBackAnExtraClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		first := acceptJob(t, b, "first")
		second := acceptJob(t, b, "second")
		c := &claiming{Backend: b, extra: true}
		release := make(chan struct{})
		var ran atomic.Int32
		var log workerLog
		startTestWorker(t, c, asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
			if ran.Add(1) == 1 {
				<-release
			}
			assert.Equal(t, 1, req.Attempt, "no request may lose an attempt to a lease given back")
			return &asyncreq.Result{}, nil
		}), &asyncreq.WorkerOptions{Concurrency: 1, Logger: log.logger()})
		synctest.Wait()
		require.EqualValues(t, 1, ran.Load(), "one slot: one request runs")
		var waiting string
		for _, id := range []string{first, second} {
			rec, err := b.Get(t.Context(), id)
			require.NoError(t, err)
			if rec.State == asyncreq.StatePending {
				waiting = id
				assert.Zero(t, rec.Attempts, "the extra claim must be handed back")
				assert.Empty(t, rec.LeaseToken)
			}
		}
		require.NotEmpty(t, waiting, "the request claimed beyond the slot must be pending again")
		close(release)
		for _, id := range []string{first, second} {
			rec := awaitRecord(t, b, id, func(r *asyncreq.Record) bool { return r.State.Final() })
			assert.Equal(t, asyncreq.StateSucceeded, rec.State)
			assert.Equal(t, 1, rec.Attempts)
		}
		assert.NotContains(t, log.String(), "handing back a request claimed but not run")
	})
}

// A lease whose claims took most of LeaseDuration before the worker got it
// is extended at once, not a beat after the worker got it, when it would
// have run out.
func TestWorkerExtendsALeaseAgedByItsClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		c := &claiming{Backend: b, slowClaim: 2500 * time.Millisecond}
		var runs, canceled atomic.Int32
		var log workerLog
		startTestWorker(t, c, asyncreq.ProcessorFunc(func(ctx context.Context, _ *asyncreq.Request) (*asyncreq.Result, error) {
			runs.Add(1)
			select {
			case <-time.After(1500 * time.Millisecond):
				return &asyncreq.Result{}, nil
			case <-ctx.Done():
				canceled.Add(1)
				return nil, ctx.Err()
			}
		}), &asyncreq.WorkerOptions{LeaseDuration: 3 * time.Second, Concurrency: 1, Logger: log.logger()})
		id := acceptJob(t, b, "x")
		rec := awaitRecord(t, b, id, func(r *asyncreq.Record) bool { return r.State.Final() })
		assert.Equal(t, asyncreq.StateSucceeded, rec.State)
		assert.Equal(t, 1, rec.Attempts)
		assert.EqualValues(t, 1, runs.Load())
		assert.Zero(t, canceled.Load(), "the processor must keep its lease")
		assert.NotContains(t, log.String(), "lease lost")
	})
}
