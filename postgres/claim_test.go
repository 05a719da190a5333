package postgres_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// TestDequeueClaimPanicCommitsNothing: a claim function that panics in
// DequeueClaim panics in its caller, and nothing of the transaction
// commits, neither the leases nor the claims of the records before it:
// the jobs are delivered again as first deliveries, their records still
// pending.
func TestDequeueClaimPanicCommitsNothing(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := t.Context()
	ids := make([]string, 2)
	for i := range ids {
		rec := testRecord("", "", []byte("x"))
		_, err := s.Accept(ctx, rec)
		require.NoError(t, err)
		ids[i] = rec.ID
	}
	calls := 0
	require.PanicsWithValue(t, "boom", func() {
		_, _ = s.DequeueClaim(ctx, 2, time.Minute, func(l *asyncreq.Lease, r *asyncreq.Record) error {
			if calls++; calls == 2 {
				panic("boom")
			}
			return r.Claim("token", 3, time.Now())
		})
	})
	require.Equal(t, 2, calls, "the claim function ran on both records")
	for _, id := range ids {
		rec, err := s.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StatePending, rec.State, "a claim made before the panic must not commit")
		assert.Zero(t, rec.Attempts)
	}
	leases, err := s.DequeueBatch(ctx, 2, time.Minute)
	require.NoError(t, err)
	require.Len(t, leases, 2, "no lease taken by the panicking claim may commit")
	for _, l := range leases {
		assert.Equal(t, 1, l.Delivery)
		require.NoError(t, s.Ack(ctx, l))
	}
}
