package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/redis"
)

// outcome is what one Create or Accept returned.
type outcome struct {
	other *asyncreq.Record
	err   error
}

// inOneBatch makes the calls, in this order, while a batch is held on the
// wire, so that they queue and are written as one batch (one script call),
// and returns their outcomes.
func inOneBatch(t *testing.T, b *redis.Backend, rt *roundTrips, calls ...func() (*asyncreq.Record, error)) []outcome {
	t.Helper()
	queued, release := redis.HoldCreates(b)
	out := make([]outcome, len(calls))
	queue := make([]func(), len(calls))
	for i, call := range calls {
		queue[i] = func() { out[i].other, out[i].err = call() }
	}
	wait := queueAll(t, queued, queue...)
	before := rt.n.Load()
	release()
	wait()
	require.Equal(t, int64(1), rt.n.Load()-before, "the queued calls take one round trip")
	return out
}

// queueAll starts the calls, in this order, each once the one before it
// has queued (queued reports how many wait), and returns a function that
// waits for all of them to return.
func queueAll(t *testing.T, queued func() int, calls ...func()) (wait func()) {
	t.Helper()
	done := make(chan struct{}, len(calls))
	for i, call := range calls {
		go func() {
			call()
			done <- struct{}{}
		}()
		require.Eventually(t, func() bool { return queued() == i+1 }, 5*time.Second, time.Millisecond,
			"call %d did not queue", i)
	}
	return func() {
		for range calls {
			<-done
		}
	}
}

// TestBatchedCreatesAreSerialized checks that the records of one batch
// are created one after the other, each with its own outcome, exactly as
// separate calls in that order: a duplicate idempotency key sees the
// earlier record of the same batch, a taken id fails only its own call,
// and each record is enqueued or listed as unenqueued as its call says.
func TestBatchedCreatesAreSerialized(t *testing.T) {
	b, c := newBackend(t, nil)
	rt := new(roundTrips)
	c.AddHook(rt)
	ctx := t.Context()

	taken := testRecord("", "")
	_, err := b.Create(ctx, taken)
	require.NoError(t, err)

	first := testRecord("alice", "key-1")
	dup := testRecord("alice", "key-1")
	otherOwner := testRecord("bob", "key-1")
	again := testRecord("", "")
	sameID := testRecord("", "")
	sameID.ID = again.ID
	unenqueued := testRecord("", "")
	final := testRecord("", "")
	final.State = asyncreq.StateSucceeded
	final.Result = &asyncreq.Result{Body: []byte("done")}
	final.ExpiresAt = time.Now().Add(time.Hour)
	noBody := testRecord("", "")
	noBody.Body = nil

	accept := func(rec *asyncreq.Record) func() (*asyncreq.Record, error) {
		return func() (*asyncreq.Record, error) { return b.Accept(ctx, rec) }
	}
	create := func(rec *asyncreq.Record) func() (*asyncreq.Record, error) {
		return func() (*asyncreq.Record, error) { return b.Create(ctx, rec) }
	}
	out := inOneBatch(t, b, rt,
		accept(first), accept(dup), accept(otherOwner), accept(taken), accept(again),
		accept(sameID), create(unenqueued), create(final), accept(noBody))

	require.NoError(t, out[0].err, "first")
	require.ErrorIs(t, out[1].err, asyncreq.ErrDuplicate, "the same key later in the batch")
	require.NotNil(t, out[1].other)
	require.Equal(t, first.ID, out[1].other.ID)
	require.True(t, out[1].other.Enqueued)
	require.NoError(t, out[2].err, "the same key of another owner")
	require.Error(t, out[3].err, "an id taken before the batch")
	require.NotErrorIs(t, out[3].err, asyncreq.ErrDuplicate)
	require.NoError(t, out[4].err)
	require.Error(t, out[5].err, "an id taken earlier in the batch")
	require.NotErrorIs(t, out[5].err, asyncreq.ErrDuplicate)
	for i := 6; i < len(out); i++ {
		require.NoError(t, out[i].err, "call %d", i)
	}

	_, err = b.Get(ctx, dup.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "a duplicate stores nothing")
	got, err := b.Get(ctx, final.ID)
	require.NoError(t, err)
	require.Equal(t, []byte("done"), got.Result.Body)
	recKeys, err := c.Keys(ctx, "*:r:"+final.ID).Result()
	require.NoError(t, err)
	require.Len(t, recKeys, 1)
	ttl, err := c.PTTL(ctx, recKeys[0]).Result()
	require.NoError(t, err)
	require.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5, "a record created final expires at its ExpiresAt")
	got, err = b.Get(ctx, noBody.ID)
	require.NoError(t, err)
	require.Nil(t, got.Body)
	got, err = b.Get(ctx, first.ID)
	require.NoError(t, err)
	require.Equal(t, first.Body, got.Body)

	ids, err := b.ListUnenqueued(ctx, time.Now().Add(time.Minute), 10)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{taken.ID, unenqueued.ID}, ids)

	ls, err := b.DequeueBatch(ctx, 10, time.Minute)
	require.NoError(t, err)
	var leased []string
	for _, l := range ls {
		leased = append(leased, l.ID)
	}
	require.Equal(t, []string{first.ID, otherOwner.ID, again.ID, noBody.ID}, leased,
		"the accepted records are enqueued in the order of the batch")
}

// TestBatchedCallCanceledWhileQueued checks that a call whose context ends
// while it waits for a batch returns at once and writes nothing, and that
// the other calls of the batch are written.
func TestBatchedCallCanceledWhileQueued(t *testing.T) {
	b, _ := newBackend(t, nil)
	ctx := t.Context()
	queued, release := redis.HoldCreates(b)

	cctx, cancel := context.WithCancel(ctx)
	canceled := testRecord("", "")
	errc := make(chan error, 1)
	go func() {
		_, err := b.Accept(cctx, canceled)
		errc <- err
	}()
	require.Eventually(t, func() bool { return queued() == 1 }, 5*time.Second, time.Millisecond)
	kept := testRecord("", "")
	keptErr := make(chan error, 1)
	go func() {
		_, err := b.Accept(ctx, kept)
		keptErr <- err
	}()
	require.Eventually(t, func() bool { return queued() == 2 }, 5*time.Second, time.Millisecond)

	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	require.Eventually(t, func() bool { return queued() == 1 }, 5*time.Second, time.Millisecond)
	release()
	require.NoError(t, <-keptErr)

	_, err := b.Get(ctx, canceled.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "a call canceled while queued writes nothing")
	_, err = b.Get(ctx, kept.ID)
	require.NoError(t, err)

	// With nothing on the wire, a lone call is written at once.
	_, err = b.Accept(ctx, testRecord("", ""))
	require.NoError(t, err)
}

// TestBatchedErrorFailsOnlyItsRecord checks that a record whose writes
// fail in Redis fails its own call only: the other records of the batch
// are written.
func TestBatchedErrorFailsOnlyItsRecord(t *testing.T) {
	c := newClient(t)
	prefix := newPrefix(t, c)
	b, err := redis.New(t.Context(), c, &redis.Options{Prefix: prefix})
	require.NoError(t, err)
	defer b.Close()
	rt := new(roundTrips)
	c.AddHook(rt)
	ctx := t.Context()
	// A key of the wrong type where the idempotency key goes.
	require.NoError(t, c.HSet(ctx, prefix+"{default}:k:5:carol:bad", "x", "1").Err())

	before, bad, after := testRecord("", ""), testRecord("carol", "bad"), testRecord("", "")
	accept := func(rec *asyncreq.Record) func() (*asyncreq.Record, error) {
		return func() (*asyncreq.Record, error) { return b.Accept(ctx, rec) }
	}
	out := inOneBatch(t, b, rt, accept(before), accept(bad), accept(after))
	require.NoError(t, out[0].err)
	require.ErrorContains(t, out[1].err, "WRONGTYPE")
	require.NoError(t, out[2].err)
	for _, rec := range []*asyncreq.Record{before, after} {
		_, err := b.Get(ctx, rec.ID)
		require.NoError(t, err)
	}
}
