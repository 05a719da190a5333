package redis_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/redis"
)

// TestCompleteAcksInTheSameScript: the outcome of a request and the ack of
// its lease take one round trip, after which the stream holds nothing of
// it; an outcome that is not final leaves the entry pending.
func TestCompleteAcksInTheSameScript(t *testing.T) {
	b, c := newBackend(t, nil)
	rt := new(roundTrips)
	c.AddHook(rt)
	ctx := t.Context()
	for range 3 {
		_, err := b.Accept(ctx, testRecord("", ""))
		require.NoError(t, err)
	}
	leases, err := b.DequeueBatch(ctx, 3, time.Minute)
	require.NoError(t, err)
	require.Len(t, leases, 3)
	for _, l := range leases {
		_, err := b.Update(ctx, l.ID, func(r *asyncreq.Record) error { return r.Claim("token-"+l.ID, 3, time.Now()) })
		require.NoError(t, err)
	}
	stream := redis.StreamKey(b)

	succeed := func(l *asyncreq.Lease) func(r *asyncreq.Record) error {
		return func(r *asyncreq.Record) error {
			return r.Succeed("token-"+l.ID, &asyncreq.Result{Body: []byte("ok")}, time.Now())
		}
	}
	running, first, done := leases[0], leases[1], leases[2]
	_, err = b.Complete(ctx, first, succeed(first)) // loads the script
	require.NoError(t, err)
	rec, err := b.Complete(ctx, running, func(r *asyncreq.Record) error {
		return r.SetProgress("token-"+running.ID, asyncreq.Progress{Percent: 50}, time.Now())
	})
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateRunning, rec.State)

	n := rt.n.Load()
	rec, err = b.Complete(ctx, done, succeed(done))
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateSucceeded, rec.State)
	assert.Equal(t, int64(1), rt.n.Load()-n, "round trips of a final Complete")

	// Only the running request's entry is left, pending.
	assert.Equal(t, int64(1), c.XLen(ctx, stream).Val())
	pending, err := c.XPending(ctx, stream, "asyncreq").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), pending.Count)
	require.ErrorIs(t, b.Ack(ctx, done), asyncreq.ErrLeaseLost, "the final Complete settled its lease")
	require.NoError(t, b.Ack(ctx, running))
	assert.Zero(t, c.XLen(ctx, stream).Val())
}
