package memory_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// TestListMatchesSortedRecords lists a few thousand records, many created
// at the same instant, through updates and deletes that move them between
// the Backend's indexes, and checks every listing against the records
// sorted newest first and filtered.
func TestListMatchesSortedRecords(t *testing.T) {
	ctx := context.Background()
	b := memory.New(nil)
	defer b.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	owners := []string{"", "alice", "bob"}
	held := map[string]*asyncreq.Record{}
	for range 3000 {
		rec := &asyncreq.Record{
			ID:        asyncreq.NewID(),
			Owner:     owners[rng.IntN(len(owners))],
			State:     asyncreq.StatePending,
			CreatedAt: base.Add(time.Duration(rng.IntN(500)) * time.Millisecond),
			Body:      []byte("body"),
		}
		rec.UpdatedAt = rec.CreatedAt
		_, err := b.Create(ctx, rec)
		require.NoError(t, err)
		held[rec.ID] = rec
	}
	states := []asyncreq.State{asyncreq.StatePending, asyncreq.StateRunning, asyncreq.StateSucceeded, asyncreq.StateFailed, asyncreq.StateCanceled}
	for id := range held {
		switch rng.IntN(4) {
		case 0:
			require.NoError(t, b.Delete(ctx, id, false))
			delete(held, id)
		case 1:
			st := states[rng.IntN(len(states))]
			rec, err := b.Update(ctx, id, func(r *asyncreq.Record) error {
				r.State = st
				r.UpdatedAt = r.UpdatedAt.Add(time.Second)
				return nil
			})
			require.NoError(t, err)
			held[id] = rec
		}
	}
	check := func(q asyncreq.ListQuery) {
		var want []string
		for _, r := range held {
			if (q.State == "" || r.State == q.State) && (q.Owner == "" || r.Owner == q.Owner) {
				want = append(want, r.ID)
			}
		}
		slices.SortFunc(want, func(x, y string) int {
			if c := held[y].CreatedAt.Compare(held[x].CreatedAt); c != 0 {
				return c
			}
			return strings.Compare(y, x)
		})
		var got []string
		for {
			page, err := b.List(ctx, q)
			require.NoError(t, err)
			for _, r := range page.Records {
				require.Nil(t, r.Body)
				got = append(got, r.ID)
			}
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
		require.Equal(t, want, got, "List(%+v)", q)
	}
	for _, limit := range []int{1, 7, 50, 1000} {
		check(asyncreq.ListQuery{Limit: limit})
		for _, st := range states {
			check(asyncreq.ListQuery{State: st, Limit: limit})
			check(asyncreq.ListQuery{State: st, Owner: "alice", Limit: limit})
		}
		for _, o := range owners[1:] {
			check(asyncreq.ListQuery{Owner: o, Limit: limit})
		}
	}
	var want asyncreq.StateCounts
	for _, r := range held {
		want.Add(r.State, 1)
	}
	got, err := b.CountStates(ctx)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// TestRequeueKeepsWaitingEntry: a pending request canceled before a
// Dequeue took its entry and then retried is dequeued once, not twice.
func TestRequeueKeepsWaitingEntry(t *testing.T) {
	ctx := context.Background()
	b := memory.New(nil)
	defer b.Close()
	now := time.Now()
	rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now}
	_, err := b.Accept(ctx, rec)
	require.NoError(t, err)
	_, err = asyncreq.CancelRequest(ctx, b, rec.ID)
	require.NoError(t, err)
	got, err := asyncreq.RetryRequest(ctx, b, rec.ID)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StatePending, got.State)
	_, entries := b.Len()
	require.Equal(t, 1, entries, "the entry that was waiting is kept, no second one added")

	l, err := b.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	require.NoError(t, b.Ack(ctx, l))
	_, err = asyncreq.CancelRequest(ctx, b, rec.ID)
	require.NoError(t, err)
	_, err = asyncreq.RetryRequest(ctx, b, rec.ID)
	require.NoError(t, err)
	_, entries = b.Len()
	require.Equal(t, 1, entries, "a retry with no entry waiting adds one")
}
