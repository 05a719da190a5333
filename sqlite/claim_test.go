package sqlite_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/sqlite"
)

// A claim function that panics in DequeueClaim panics in its caller, and
// nothing of the transaction commits: not the lease, not the claims of the
// records before it. The entries are delivered again as first deliveries,
// their records still pending.
func TestDequeueClaimPanicCommitsNothing(t *testing.T) {
	b, _ := openTemp(t, nil)
	ctx := t.Context()
	ids := make([]string, 2)
	for i := range ids {
		ids[i] = asyncreq.NewID()
		_, err := b.Accept(ctx, &asyncreq.Record{ID: ids[i], State: asyncreq.StatePending, Method: "POST", URL: "/jobs/"})
		require.NoError(t, err)
	}
	require.PanicsWithValue(t, "boom", func() {
		_, _ = b.DequeueClaim(ctx, 2, time.Minute, panicOn(ids[1]))
	})
	requireNothingClaimed(t, ctx, b, ids, 2)
}

// requireNothingClaimed checks that the records ids are pending, never
// claimed, and that the queue delivers its n entries for the first time.
func requireNothingClaimed(t *testing.T, ctx context.Context, b *sqlite.Backend, ids []string, n int) {
	t.Helper()
	for _, id := range ids {
		rec, err := b.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StatePending, rec.State, "a claim made before the panic must not commit")
		assert.Zero(t, rec.Attempts)
	}
	leases, err := b.DequeueBatch(ctx, n, time.Minute)
	require.NoError(t, err)
	require.Len(t, leases, n, "no lease taken by the panicking claim may commit")
	for _, l := range leases {
		assert.Equal(t, 1, l.Delivery)
		require.NoError(t, b.Ack(ctx, l))
	}
}

// panicOn returns a claim function that claims every record but id, on
// which it panics (each time it is called).
func panicOn(id string) func(*asyncreq.Lease, *asyncreq.Record) error {
	return func(l *asyncreq.Lease, r *asyncreq.Record) error {
		if l.ID == id {
			panic("boom")
		}
		return r.Claim("token", 3, time.Now())
	}
}

// The same when the claim runs in one transaction with other writes: they
// commit, and nothing of the claim does.
func TestDequeueClaimPanicBesideOtherWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := openTemp(t, nil)
		ctx := context.Background()
		ids := []string{asyncreq.NewID(), asyncreq.NewID()}
		for _, id := range ids {
			_, err := b.Accept(ctx, &asyncreq.Record{ID: id, State: asyncreq.StatePending, Method: "POST", URL: "/jobs/"})
			require.NoError(t, err)
		}
		// The writer waits in the commit of a holder's write, while an
		// accept and the claim queue up to share the next transaction.
		hold := make(chan struct{})
		var commits atomic.Int32
		sqlite.SetCommitHook(b, func(int) error {
			if commits.Add(1) == 1 {
				<-hold
			}
			return nil
		})
		var wg sync.WaitGroup
		wg.Go(func() {
			_, err := b.Create(ctx, newRecord("holder"))
			assert.NoError(t, err)
		})
		synctest.Wait()
		other := newRecord("other")
		wg.Go(func() {
			_, err := b.Accept(ctx, other)
			assert.NoError(t, err, "a write beside the panicking claim commits")
		})
		synctest.Wait()
		wg.Go(func() {
			assert.PanicsWithValue(t, "boom", func() {
				_, _ = b.DequeueClaim(ctx, 2, time.Minute, panicOn(ids[1]))
			})
		})
		synctest.Wait()
		close(hold)
		wg.Wait()

		_, err := b.Get(ctx, other.ID)
		require.NoError(t, err, "the accept beside the claim must commit")
		requireNothingClaimed(t, ctx, b, ids, 3)
	})
}

// A lease taken by DequeueClaim runs for its ttl from the end of the
// claims, not from the lease: claims that took most of the ttl (large
// records on a busy writer) leave the worker its whole lease.
func TestDequeueClaimLeaseRunsFromTheClaims(t *testing.T) {
	var clock atomic.Int64
	start := time.Unix(1_000_000, 0)
	now := func() time.Time { return start.Add(time.Duration(clock.Load())) }
	b, _ := openTemp(t, &sqlite.Options{Now: now})
	ctx := t.Context()
	id := asyncreq.NewID()
	_, err := b.Accept(ctx, &asyncreq.Record{ID: id, State: asyncreq.StatePending, Method: "POST", URL: "/jobs/"})
	require.NoError(t, err)
	const ttl = time.Minute
	claims, err := b.DequeueClaim(ctx, 1, ttl, func(l *asyncreq.Lease, r *asyncreq.Record) error {
		clock.Add(int64(50 * time.Second)) // a slow claim
		return r.Claim("token", 3, now())
	})
	require.NoError(t, err)
	require.Len(t, claims, 1)
	require.NoError(t, claims[0].Err)
	clock.Add(int64(20 * time.Second)) // 70s after the lease was taken, 20s after the claim
	require.NoError(t, b.Extend(ctx, claims[0].Lease, ttl), "the lease must run from the end of the claims")
	require.NoError(t, b.Ack(ctx, claims[0].Lease))
}
