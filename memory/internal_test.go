package memory

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// Leases settled long before they would run out leave the heap of lease
// ends about as big as the leases held, not as the leases of the last
// lease duration; leases still held, extended or not, still run out.
func TestSettledLeasesLeaveTheHeap(t *testing.T) {
	ctx := context.Background()
	b := New(nil)
	t.Cleanup(func() { _ = b.Close() })
	enqueue := func(id string) {
		t.Helper()
		_, err := b.Accept(ctx, &asyncreq.Record{ID: id, State: asyncreq.StatePending, CreatedAt: time.Now(), UpdatedAt: time.Now()})
		require.NoError(t, err)
	}
	// Two leases held throughout: one runs out soon, one is extended.
	enqueue("held-short")
	enqueue("held-long")
	short, err := b.DequeueBatch(ctx, 1, 300*time.Millisecond)
	require.NoError(t, err)
	long, err := b.DequeueBatch(ctx, 1, 300*time.Millisecond)
	require.NoError(t, err)
	require.NoError(t, b.Extend(ctx, long[0], time.Hour))

	for i := range 5000 {
		id := asyncreq.NewID()
		enqueue(id)
		ls, err := b.DequeueBatch(ctx, 1, time.Hour)
		require.NoError(t, err, i)
		require.NoError(t, b.Ack(ctx, ls[0]))
		require.NoError(t, b.Extend(ctx, long[0], time.Hour))
	}
	b.mu.Lock()
	n := b.leases.Len()
	b.mu.Unlock()
	require.Less(t, n, 64*4, "items in the heap of lease ends")

	// The short lease runs out and is delivered again; the long one holds.
	again, err := b.DequeueBatch(ctx, 1, time.Hour)
	require.NoError(t, err)
	require.Equal(t, short[0].ID, again[0].ID)
	require.Equal(t, 2, again[0].Delivery)
	require.NoError(t, b.Extend(ctx, long[0], time.Hour))
}

// Records of no owner are listed from the indexes by state alone: they
// cost no index by owner, which no listing would read.
func TestOwnerlessRecordsAreInNoOwnersIndex(t *testing.T) {
	ctx := context.Background()
	b := New(nil)
	t.Cleanup(func() { _ = b.Close() })
	for _, owner := range []string{"", "", "alice"} {
		_, err := b.Accept(ctx, &asyncreq.Record{ID: asyncreq.NewID(), Owner: owner, State: asyncreq.StatePending, CreatedAt: time.Now(), UpdatedAt: time.Now()})
		require.NoError(t, err)
	}
	ls, err := b.DequeueBatch(ctx, 3, time.Minute)
	require.NoError(t, err)
	for _, l := range ls {
		_, err := b.Complete(ctx, l, func(r *asyncreq.Record) error {
			r.State, r.UpdatedAt = asyncreq.StateSucceeded, time.Now()
			return nil
		})
		require.NoError(t, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Len(t, b.idx.byOwnerState, 1)
	require.Equal(t, 1, b.idx.byOwnerState[ownerState{"alice", asyncreq.StateSucceeded}].n)
	require.Equal(t, 3, b.idx.byState[asyncreq.StateSucceeded].n)
}
