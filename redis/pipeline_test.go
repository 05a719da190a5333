package redis_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/redis"
)

// pipelined makes the calls while a pipeline is held on the wire, so that
// they queue and go out together, calls before (if not nil) just before
// the pipeline is released, and returns the calls' errors and the round
// trips from the release on.
func pipelined(t *testing.T, b *redis.Backend, rt *roundTrips, before func(), calls ...func() error) ([]error, int64) {
	t.Helper()
	queued, release := redis.HoldPipeline(b)
	errs := make([]error, len(calls))
	queue := make([]func(), len(calls))
	for i, call := range calls {
		queue[i] = func() { errs[i] = call() }
	}
	wait := queueAll(t, queued, queue...)
	if before != nil {
		before()
	}
	n := rt.n.Load()
	release()
	wait()
	return errs, rt.n.Load() - n
}

// TestCallsPipelined: updates of records, acks of leases and reads of
// records made while another is on the wire go out in one pipeline, and
// each gets its own outcome: an update its record, a stale ack
// ErrLeaseLost without failing the others, a read its record.
func TestCallsPipelined(t *testing.T) {
	// With the poll cache off, the Get among the calls reads Redis, and
	// no subscription opens a connection while the round trips are
	// counted.
	b, c := newBackend(t, &redis.Options{PollCacheAge: -1})
	rt := new(roundTrips)
	c.AddHook(rt)
	ctx := t.Context()

	const n = 6
	ids := make([]string, n)
	for i := range ids {
		rec := testRecord("", "")
		_, err := b.Accept(ctx, rec)
		require.NoError(t, err)
		ids[i] = rec.ID
	}
	leases, err := b.DequeueBatch(ctx, n, time.Minute)
	require.NoError(t, err)
	require.Len(t, leases, n)
	stale := *leases[0]
	require.NoError(t, b.Ack(ctx, leases[0]))

	var calls []func() error
	got := make([]*asyncreq.Record, n)
	for i, id := range ids {
		calls = append(calls, func() error {
			rec, err := b.Update(ctx, id, func(r *asyncreq.Record) error {
				r.Progress = &asyncreq.Progress{Percent: 10 * (i + 1)}
				return nil
			})
			got[i] = rec
			return err
		})
	}
	var read *asyncreq.Record
	calls = append(calls,
		func() error { return b.Ack(ctx, &stale) },
		func() error { return b.Ack(ctx, leases[1]) },
		func() (err error) {
			read, err = b.Get(ctx, ids[n-1])
			return err
		},
	)
	errs, trips := pipelined(t, b, rt, nil, calls...)
	assert.Equal(t, int64(1), trips, "the queued calls take one round trip")
	for i, id := range ids {
		require.NoError(t, errs[i])
		assert.Equal(t, id, got[i].ID)
		assert.Equal(t, 10*(i+1), got[i].Progress.Percent)
		stored, err := b.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, 10*(i+1), stored.Progress.Percent)
	}
	assert.ErrorIs(t, errs[n], asyncreq.ErrLeaseLost, "the stale ack")
	assert.NoError(t, errs[n+1])
	require.NoError(t, errs[n+2])
	assert.Equal(t, ids[n-1], read.ID, "the read")
	assert.ErrorIs(t, b.Ack(ctx, leases[1]), asyncreq.ErrLeaseLost, "acked in the pipeline")
}

// TestPipelinedScriptsLoadThemselves: a pipeline sent to a server that
// has forgotten the scripts (SCRIPT FLUSH, a restart) runs each call again
// with its script loaded.
func TestPipelinedScriptsLoadThemselves(t *testing.T) {
	b, c := newBackend(t, nil)
	rt := new(roundTrips)
	c.AddHook(rt)
	ctx := t.Context()
	ids := make([]string, 3)
	for i := range ids {
		rec := testRecord("", "")
		_, err := b.Create(ctx, rec)
		require.NoError(t, err)
		ids[i] = rec.ID
	}
	var calls []func() error
	for _, id := range ids {
		calls = append(calls, func() error {
			_, err := b.Update(ctx, id, func(r *asyncreq.Record) error { return r.RequestCancel("", time.Now()) })
			return err
		})
	}
	errs, _ := pipelined(t, b, rt, func() { require.NoError(t, c.ScriptFlush(ctx).Err()) }, calls...)
	require.NoError(t, errors.Join(errs...))
	for _, id := range ids {
		rec, err := b.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StateCanceled, rec.State)
	}
}
