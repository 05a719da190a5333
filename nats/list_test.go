package nats_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// TestRetryInterruptedIsSwept checks the retry of a request whose enqueue
// never happened (RetryRequest's first step, an Update back to pending,
// and then nothing): the record carries a "u." marker again, so the
// Worker's sweep (ListUnenqueued) finds it and enqueues it.
func TestRetryInterruptedIsSwept(t *testing.T) {
	b := newBackend(t, nil, nil)
	ctx := t.Context()
	now := time.Now()
	rec := &asyncreq.Record{
		ID: asyncreq.NewID(), Owner: "owner", State: asyncreq.StateFailed, Enqueued: true, Attempts: 3,
		Method: "POST", URL: "/jobs", CreatedAt: now, UpdatedAt: now,
		Retention: time.Hour, ExpiresAt: now.Add(time.Hour), TombstoneTTL: time.Hour,
		Error: &asyncreq.Problem{Status: 500, Title: "it broke"},
	}
	_, err := b.Create(ctx, rec)
	require.NoError(t, err)
	ids, err := b.ListUnenqueued(ctx, time.Now().Add(time.Hour), 10)
	require.NoError(t, err)
	require.Empty(t, ids)

	_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error { return r.Requeue(time.Now()) })
	require.NoError(t, err)
	ids, err = b.ListUnenqueued(ctx, time.Now().Add(time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{rec.ID}, ids, "a record put back to pending and not enqueued is swept")
}

// TestListAfterPurge checks that a record Purge replaced with its
// tombstone is neither listed nor counted.
func TestListAfterPurge(t *testing.T) {
	b := newBackend(t, nil, nil)
	ctx := t.Context()
	now := time.Now()
	gone := &asyncreq.Record{
		ID: asyncreq.NewID(), Owner: "owner", State: asyncreq.StateSucceeded, Enqueued: true, Attempts: 1,
		Method: "POST", URL: "/jobs", CreatedAt: now, UpdatedAt: now,
		Retention: time.Millisecond, ExpiresAt: now.Add(time.Millisecond), TombstoneTTL: time.Hour,
		Result: &asyncreq.Result{Body: []byte("done")},
	}
	kept := gone.Clone()
	kept.ID, kept.ExpiresAt = asyncreq.NewID(), now.Add(time.Hour)
	for _, r := range []*asyncreq.Record{gone, kept} {
		_, err := b.Create(ctx, r)
		require.NoError(t, err)
	}
	n, err := b.Purge(ctx, now.Add(time.Minute), 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	page, err := b.List(ctx, asyncreq.ListQuery{})
	require.NoError(t, err)
	require.Len(t, page.Records, 1)
	require.Equal(t, kept.ID, page.Records[0].ID)
	require.Nil(t, page.Records[0].Result.Body)
	c, err := b.CountStates(ctx)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateCounts{Succeeded: 1}, c)
}
