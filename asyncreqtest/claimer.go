package asyncreqtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// testClaimer checks the asyncreq.Claimer contract of a Backend that
// implements it; it skips every case otherwise.
func testClaimer(t *testing.T, newBackend func(t *testing.T) asyncreq.Backend, opts *Options) {
	t.Helper()
	k := &capKit{cfg: newConfig(t, opts), newBackend: newBackend}
	runGroups(t, k.cfg, []group{
		{"DequeueClaim", []testCase{
			{"LeasesAndClaimsInOneStep", k.claimBatch},
			{"AtMostMax", k.claimAtMostMax},
			{"RefusedClaimIsThatLeasesAlone", k.claimRefused},
			{"MissingRecordIsNotFound", k.claimMissing},
			{"WaitsForADueEntry", k.claimWaits},
		}},
	})
}

// claimer returns a fresh Backend, as Store, Queue and Claimer, skipping
// t unless it implements asyncreq.Claimer.
func (k *capKit) claimer(t *testing.T) (asyncreq.Store, asyncreq.Queue, asyncreq.Claimer) {
	t.Helper()
	b, c := implementing[asyncreq.Claimer](t, k)
	return b, b, c
}

// queued creates and enqueues n pending records, and returns their ids.
func queued(t *testing.T, ctx context.Context, s asyncreq.Store, q asyncreq.Queue, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		rec := newRecord("", "")
		create(t, ctx, s, rec)
		require.NoError(t, q.Enqueue(ctx, rec.ID, 0))
		ids[i] = rec.ID
	}
	return ids
}

// claimRunning claims rec for l as a worker does: running, under a token of the
// lease's id.
func claimRunning(l *asyncreq.Lease, rec *asyncreq.Record) error {
	return rec.Claim("token-"+l.ID, 3, testTime())
}

// dequeueClaim calls DequeueClaim with fn until it returns claims, for at
// most patience.
func (k *capKit) dequeueClaim(t *testing.T, ctx context.Context, c asyncreq.Claimer, max int, fn func(*asyncreq.Lease, *asyncreq.Record) error) []asyncreq.Claim {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	claims, err := c.DequeueClaim(ctx, max, k.cfg.leaseTTL, fn)
	require.NoError(t, err, "DequeueClaim with due entries")
	require.NotEmpty(t, claims, "DequeueClaim must return a claim at least")
	return claims
}

func (k *capKit) claimBatch(t *testing.T, ctx context.Context) {
	s, q, c := k.claimer(t)
	ids := queued(t, ctx, s, q, 3)
	got := map[string]bool{}
	for len(got) < len(ids) {
		for _, cl := range k.dequeueClaim(t, ctx, c, len(ids), claimRunning) {
			require.NotNil(t, cl.Lease)
			require.NoError(t, cl.Err)
			require.NotNil(t, cl.Record, "a claim without error must return the stored record")
			assert.Equal(t, cl.Lease.ID, cl.Record.ID)
			assert.Equal(t, 1, cl.Lease.Delivery)
			assert.Equal(t, asyncreq.StateRunning, cl.Record.State)
			assert.Equal(t, "token-"+cl.Lease.ID, cl.Record.LeaseToken)
			assert.False(t, got[cl.Lease.ID], "one lease per entry")
			got[cl.Lease.ID] = true

			stored, err := s.Get(ctx, cl.Lease.ID)
			require.NoError(t, err)
			assert.Equal(t, asyncreq.StateRunning, stored.State, "the claim must be stored")
			assert.Equal(t, 1, stored.Attempts)
			assert.Equal(t, "token-"+cl.Lease.ID, stored.LeaseToken)
			require.NoError(t, q.Extend(ctx, cl.Lease, k.cfg.leaseTTL), "the lease must be held")
			require.NoError(t, q.Ack(ctx, cl.Lease))
		}
	}
	for _, id := range ids {
		assert.True(t, got[id], "every due entry must be leased and claimed")
	}
	requireEmpty(t, ctx, q, k.cfg.leaseTTL, 300*time.Millisecond, "every entry was acked")
}

func (k *capKit) claimAtMostMax(t *testing.T, ctx context.Context) {
	s, q, c := k.claimer(t)
	queued(t, ctx, s, q, 3)
	calls := 0
	claims := k.dequeueClaim(t, ctx, c, 1, func(l *asyncreq.Lease, rec *asyncreq.Record) error {
		calls++
		return claimRunning(l, rec)
	})
	require.Len(t, claims, 1, "DequeueClaim must take at most max leases")
	assert.Equal(t, 1, calls, "claim must be called once per lease taken")
}

func (k *capKit) claimRefused(t *testing.T, ctx context.Context) {
	s, q, c := k.claimer(t)
	ids := queued(t, ctx, s, q, 2)
	refused := &errFromFn{id: ids[0]}
	seen := map[string]asyncreq.Claim{}
	for len(seen) < len(ids) {
		for _, cl := range k.dequeueClaim(t, ctx, c, len(ids), func(l *asyncreq.Lease, rec *asyncreq.Record) error {
			_ = claimRunning(l, rec)
			if l.ID == ids[0] {
				return refused
			}
			return nil
		}) {
			seen[cl.Lease.ID] = cl
		}
	}
	bad, good := seen[ids[0]], seen[ids[1]]
	require.ErrorIs(t, bad.Err, refused, "the claim's error must be returned with its lease")
	assert.Nil(t, bad.Record)
	stored, err := s.Get(ctx, ids[0])
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StatePending, stored.State, "nothing of a refused claim may be stored")
	assert.Zero(t, stored.Attempts)
	require.NoError(t, q.Ack(ctx, bad.Lease), "a refused claim must leave its lease held")

	require.NoError(t, good.Err, "another lease's refused claim must not fail this one")
	stored, err = s.Get(ctx, ids[1])
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateRunning, stored.State)
	require.NoError(t, q.Ack(ctx, good.Lease))
}

func (k *capKit) claimMissing(t *testing.T, ctx context.Context) {
	_, q, c := k.claimer(t)
	id := asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, id, 0))
	called := false
	claims := k.dequeueClaim(t, ctx, c, 1, func(*asyncreq.Lease, *asyncreq.Record) error {
		called = true
		return nil
	})
	require.Len(t, claims, 1)
	cl := claims[0]
	assert.Equal(t, id, cl.Lease.ID)
	assert.True(t, errors.Is(cl.Err, asyncreq.ErrNotFound), "the claim of an id without a record: want ErrNotFound, got %v", cl.Err)
	assert.False(t, called, "claim must not be called without a record")
	require.NoError(t, q.Ack(ctx, cl.Lease), "the lease of an id without a record must be held")
}

func (k *capKit) claimWaits(t *testing.T, ctx context.Context) {
	s, q, c := k.claimer(t)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := c.DequeueClaim(short, 1, k.cfg.leaseTTL, claimRunning)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "DequeueClaim on an empty queue must wait until ctx ends")

	got := make(chan []asyncreq.Claim, 1)
	go func() {
		claims, _ := c.DequeueClaim(ctx, 1, k.cfg.leaseTTL, claimRunning)
		got <- claims
	}()
	ids := queued(t, ctx, s, q, 1)
	select {
	case claims := <-got:
		require.Len(t, claims, 1)
		assert.Equal(t, ids[0], claims[0].Lease.ID)
		require.NoError(t, claims[0].Err)
		require.NoError(t, q.Ack(ctx, claims[0].Lease))
	case <-time.After(patience):
		t.Fatalf("DequeueClaim did not return within %s of an enqueue", patience)
	}
}
