package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/redis"
)

// finished returns a record of owner that succeeded now and expires after
// the given time.
func finished(owner string, expiresIn time.Duration) *asyncreq.Record {
	rec := testRecord(owner, "")
	rec.State = asyncreq.StateSucceeded
	rec.Enqueued = true
	rec.Attempts = 1
	rec.Result = &asyncreq.Result{StatusCode: 200, Body: []byte("done")}
	rec.ExpiresAt = rec.UpdatedAt.Add(expiresIn)
	return rec
}

// listIDs returns the ids that List returns for q, all pages.
func listIDs(t *testing.T, b *redis.Backend, q asyncreq.ListQuery) []string {
	t.Helper()
	var ids []string
	for {
		page, err := b.List(t.Context(), q)
		require.NoError(t, err)
		for _, r := range page.Records {
			ids = append(ids, r.ID)
		}
		if page.Next == "" {
			return ids
		}
		q.Cursor = page.Next
	}
}

// indexKeys returns the listing-index keys under prefix.
func indexKeys(t *testing.T, b *redis.Backend, prefix string) []string {
	t.Helper()
	var out []string
	for _, k := range keys(t, newClient(t), prefix) {
		if i := strings.Index(k, "}:"); i >= 0 && strings.HasPrefix(k[i+2:], "l") {
			out = append(out, k)
		}
	}
	return out
}

// TestListSkipsExpired checks that a final record Redis expired is not
// listed or counted, and that Purge removes its index entries (and returns
// 0, since Redis deleted the record).
func TestListSkipsExpired(t *testing.T) {
	c := newClient(t)
	prefix := newPrefix(t, c)
	b, _ := newBackend(t, &redis.Options{Prefix: prefix})
	ctx := t.Context()
	short := finished("alice", 300*time.Millisecond)
	long := finished("alice", time.Hour)
	pending := testRecord("alice", "")
	for _, r := range []*asyncreq.Record{short, long, pending} {
		_, err := b.Create(ctx, r)
		require.NoError(t, err)
	}
	c0, err := b.CountStates(ctx)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateCounts{Pending: 1, Succeeded: 2}, c0)

	time.Sleep(time.Until(short.ExpiresAt.Add(50 * time.Millisecond))) // Redis's own expiry: no clock to inject
	_, err = b.Get(ctx, short.ID)
	require.ErrorIs(t, err, asyncreq.ErrGone, "Redis expired the record and kept its tombstone")

	c1, err := b.CountStates(ctx)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateCounts{Pending: 1, Succeeded: 1}, c1, "an expired record is not counted")
	require.ElementsMatch(t, []string{long.ID, pending.ID}, listIDs(t, b, asyncreq.ListQuery{Limit: 1}), "an expired record is not listed")
	require.Equal(t, []string{long.ID}, listIDs(t, b, asyncreq.ListQuery{Owner: "alice", State: asyncreq.StateSucceeded, Limit: 1}))

	before := c.ZCard(ctx, prefix+"{default}:ls:succeeded").Val()
	require.EqualValues(t, 2, before, "the expired record's entry is still indexed before Purge")
	n, err := b.Purge(ctx, time.Now(), 1)
	require.NoError(t, err)
	require.Zero(t, n, "Purge deletes no record: Redis did")
	for _, k := range []string{"ls:succeeded", "lo:5:alice:succeeded", "lf", "le:succeeded"} {
		require.EqualValues(t, 1, c.ZCard(ctx, prefix+"{default}:"+k).Val(), "Purge removes the expired record's entry from %s", k)
	}
	c2, err := b.CountStates(ctx)
	require.NoError(t, err)
	require.Equal(t, c1, c2)
}

// TestIndexesFollowRecords checks that the indexes hold nothing once every
// record is gone, whichever way it went.
func TestIndexesFollowRecords(t *testing.T) {
	c := newClient(t)
	prefix := newPrefix(t, c)
	b, _ := newBackend(t, &redis.Options{Prefix: prefix})
	ctx := t.Context()
	recs := []*asyncreq.Record{testRecord("a", "k"), testRecord("b", ""), finished("a", time.Hour), finished("c|d", time.Hour)}
	for _, r := range recs {
		_, err := b.Accept(ctx, r)
		require.NoError(t, err)
	}
	_, err := b.Update(ctx, recs[0].ID, func(r *asyncreq.Record) error {
		r.State, r.LeaseToken, r.Attempts = asyncreq.StateRunning, asyncreq.NewID(), 1
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{recs[0].ID}, listIDs(t, b, asyncreq.ListQuery{Owner: "a", State: asyncreq.StateRunning}))
	require.Equal(t, []string{recs[3].ID}, listIDs(t, b, asyncreq.ListQuery{Owner: "c|d"}), "an owner with the entry separator in it")
	require.NotEmpty(t, indexKeys(t, b, prefix))

	require.NoError(t, b.Delete(ctx, recs[0].ID, true))
	require.NoError(t, b.Delete(ctx, recs[1].ID, false))
	n, err := b.PurgeFinished(ctx, time.Now().Add(time.Second), 10, true)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Empty(t, indexKeys(t, b, prefix), "no index keeps an entry of a record that is gone")
	counts, err := b.CountStates(ctx)
	require.NoError(t, err)
	require.Zero(t, counts.Total())
}

// TestReindex checks that records written without index entries, as a
// version of the package before the listing indexes wrote them, are
// listed after Reindex, and that Reindex is idempotent.
func TestReindex(t *testing.T) {
	c := newClient(t)
	prefix := newPrefix(t, c)
	b, _ := newBackend(t, &redis.Options{Prefix: prefix + "*"}) // a glob character in the prefix
	ctx := t.Context()
	old := []*asyncreq.Record{testRecord("a", "k"), finished("b", time.Hour)}
	for _, r := range old {
		_, err := b.Create(ctx, r)
		require.NoError(t, err)
	}
	// Make them as the earlier version left them.
	for _, r := range old {
		require.NoError(t, c.HDel(ctx, prefix+"*{default}:r:"+r.ID, "i").Err())
	}
	require.NoError(t, c.Del(ctx, indexKeys(t, b, prefix)...).Err())
	_, err := b.Create(ctx, testRecord("c", ""))
	require.NoError(t, err)
	require.Len(t, listIDs(t, b, asyncreq.ListQuery{}), 1, "records without entries are not listed")

	n, err := b.Reindex(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Len(t, listIDs(t, b, asyncreq.ListQuery{}), 3)
	require.Equal(t, []string{old[1].ID}, listIDs(t, b, asyncreq.ListQuery{Owner: "b", State: asyncreq.StateSucceeded}))
	counts, err := b.CountStates(ctx)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateCounts{Pending: 2, Succeeded: 1}, counts)
	n, err = b.Reindex(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "a second Reindex finds nothing to add")
	p, err := b.PurgeFinished(ctx, time.Now().Add(time.Second), 10, false)
	require.NoError(t, err)
	require.Equal(t, 1, p, "a reindexed final record is purged")
}

// TestRequeueDoesNotRunTwice checks that a request retried while its old
// entry is still in the stream (it was canceled before a Worker dequeued
// it) runs once: the entry claimed second finds the record finished.
//
// The worker runs one request at a time, so the second entry is claimed
// after the first attempt ended. A worker that holds both entries at once
// claims the record twice, and the second claim takes the running record
// over as from an attempt whose lease ran out: the request then runs
// twice (seen once in 15 runs with the default Concurrency).
func TestRequeueDoesNotRunTwice(t *testing.T) {
	b, _ := newBackend(t, nil)
	ctx := t.Context()
	rec := testRecord("owner", "")
	_, err := b.Accept(ctx, rec)
	require.NoError(t, err)
	_, err = asyncreq.CancelRequest(ctx, b, rec.ID)
	require.NoError(t, err)
	_, err = asyncreq.RetryRequest(ctx, b, rec.ID)
	require.NoError(t, err)

	runs := make(chan string, 4)
	w, err := asyncreq.NewWorker(b, asyncreq.ProcessorFunc(func(_ context.Context, r *asyncreq.Request) (*asyncreq.Result, error) {
		runs <- r.ID
		return &asyncreq.Result{StatusCode: 200}, nil
	}), &asyncreq.WorkerOptions{Concurrency: 1, LeaseDuration: time.Second})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	require.Eventually(t, func() bool {
		got, err := b.Get(ctx, rec.ID)
		return err == nil && got.State == asyncreq.StateSucceeded
	}, 10*time.Second, 20*time.Millisecond)
	// Wait until the stream holds neither entry.
	require.Eventually(t, func() bool {
		st, err := b.QueueStats(ctx)
		return err == nil && st.Pending == 0 && st.Running == 0
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, w.Stop(ctx))
	close(runs)
	var n int
	for range runs {
		n++
	}
	require.Equal(t, 1, n, "the request ran once")
}
