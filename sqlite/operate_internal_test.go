package sqlite

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// entries counts the queue entries of id.
func entries(t *testing.T, b *Backend, id string) int {
	t.Helper()
	var n int
	require.NoError(t, b.eng.rdb.QueryRowContext(t.Context(),
		`SELECT count(*) FROM `+b.prefix+`queue WHERE queue = ? AND id = ?`, b.queue, id).Scan(&n))
	return n
}

// TestRequeueKeepsWaitingEntry: a pending request canceled before a
// Worker dequeued it keeps its queue entry; retried, it is enqueued on
// that entry, not on a second one that would run it twice. A failed
// request, whose entry was acknowledged, gets a new one.
func TestRequeueKeepsWaitingEntry(t *testing.T) {
	ctx := t.Context()
	b, err := Open(ctx, filepath.Join(t.TempDir(), "requeue.db"), nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	now := time.Now()
	rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now}
	_, err = b.Accept(ctx, rec)
	require.NoError(t, err)
	_, err = asyncreq.CancelRequest(ctx, b, rec.ID)
	require.NoError(t, err)
	require.Equal(t, 1, entries(t, b, rec.ID))
	got, err := asyncreq.RetryRequest(ctx, b, rec.ID)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StatePending, got.State)
	require.Equal(t, 1, entries(t, b, rec.ID), "the entry that waited is kept, no second one added")

	// Run it to failure, as a Worker would: claim, fail, and complete.
	l, err := b.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, rec.ID, l.ID)
	_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error { return r.Claim("token", 3, time.Now()) })
	require.NoError(t, err)
	_, err = b.Complete(ctx, l, func(r *asyncreq.Record) error {
		return r.Fail("token", &asyncreq.Problem{Status: 500, Title: "broke"}, time.Now())
	})
	require.NoError(t, err)
	require.Zero(t, entries(t, b, rec.ID), "completing the failed attempt acknowledged its entry")
	_, err = asyncreq.RetryRequest(ctx, b, rec.ID)
	require.NoError(t, err)
	require.Equal(t, 1, entries(t, b, rec.ID), "a retry with no entry waiting adds one")
}

// TestListCursorIsExact: CreatedAt is stored in nanoseconds, and so is the
// cursor, so a listing of records created a nanosecond apart, some at the
// same instant, with and without a location, pages through each record
// once, in order.
func TestListCursorIsExact(t *testing.T) {
	ctx := t.Context()
	b, err := Open(ctx, filepath.Join(t.TempDir(), "cursor.db"), nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	base := time.Date(2026, 12, 4, 19, 0, 0, 123456789, time.FixedZone("CET", 3600))
	type made struct {
		id string
		at time.Time
	}
	var recs []made
	for i := range 40 {
		at := base.Add(time.Duration(i/3) * time.Nanosecond) // three at each instant
		if i%2 == 0 {
			at = at.UTC()
		}
		rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, CreatedAt: at, UpdatedAt: at}
		_, err := b.Create(ctx, rec)
		require.NoError(t, err)
		recs = append(recs, made{rec.ID, at})
	}
	// Newest first: by instant, then by id, descending.
	slices.SortFunc(recs, func(x, y made) int {
		if c := y.at.Compare(x.at); c != 0 {
			return c
		}
		return strings.Compare(y.id, x.id)
	})
	var want []string
	for _, r := range recs {
		want = append(want, r.id)
	}
	for _, limit := range []int{1, 2, 3, 7} {
		var got []string
		q := asyncreq.ListQuery{Limit: limit}
		for {
			page, err := b.List(ctx, q)
			require.NoError(t, err)
			for _, r := range page.Records {
				got = append(got, r.ID)
			}
			if page.Next == "" {
				break
			}
			c, err := asyncreq.ParseListCursor(page.Next)
			require.NoError(t, err)
			last := page.Records[len(page.Records)-1]
			require.True(t, c.CreatedAt.Equal(last.CreatedAt), "the cursor holds the last record's CreatedAt to the nanosecond")
			q.Cursor = page.Next
		}
		require.Equal(t, want, got, "pages of %d", limit)
	}
}

// TestMigrateFillsUpdatedAt: records stored before migration 0004 get
// their updated_at from their JSON, to the nanosecond, so that
// PurgeFinished finds them.
func TestMigrateFillsUpdatedAt(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "v3.db")
	rec := expiredRecord(time.Now())
	rec.UpdatedAt = time.Date(2026, 12, 1, 10, 0, 0, 987654321, time.UTC)
	rec.ExpiresAt = time.Now().Add(time.Hour)
	databaseAt(t, path, 3, func(tx *wtx) error {
		enc, err := encodeRecord(rec)
		if err != nil {
			return err
		}
		_, err = tx.exec(`INSERT INTO asyncreq_records
			(queue, id, owner, idem_key, state, enqueued, created_at, expires_at, tombstone_ttl, data, body, result_body, id_key)
			VALUES (?1, ?2, 'alice', NULL, 'succeeded', 1, ?3, ?4, ?5, ?6, ?7, ?8, ?9)`,
			defaultQueue, rec.ID, rec.CreatedAt.UnixNano(), rec.ExpiresAt.UnixNano(), int64(rec.TombstoneTTL),
			enc.data, enc.body, enc.resultBody, idKey(rec.ID))
		return err
	})

	b, err := Open(ctx, path, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	counts, err := b.CountStates(ctx)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateCounts{Succeeded: 1}, counts, "the migration counts the records stored before it")
	n, err := b.PurgeFinished(ctx, rec.UpdatedAt, 10, true)
	require.NoError(t, err)
	require.Zero(t, n, "a record changed at the time given is not purged")
	page, err := b.List(ctx, asyncreq.ListQuery{Owner: "alice"})
	require.NoError(t, err)
	require.Len(t, page.Records, 1, "a record stored before 0004 is listed")
	n, err = b.PurgeFinished(ctx, rec.UpdatedAt.Add(time.Nanosecond), 10, true)
	require.NoError(t, err)
	require.Equal(t, 1, n, "a record changed a nanosecond before the time given is purged")
	_, err = b.Get(ctx, rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrGone)
}

// TestPurgeFinishedYieldsToAccepts: PurgeFinished deletes in background
// transactions of at most purgeChunk records each, so that the writes of
// requests wait for one at most.
func TestPurgeFinishedYieldsToAccepts(t *testing.T) {
	ctx := t.Context()
	b, err := Open(ctx, filepath.Join(t.TempDir(), "purge.db"), nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	const n = 1000
	fillMixed(t, b, n)
	finals := 0
	for i := range n {
		if mixedState(i).Final() {
			finals++
		}
	}
	var (
		mu      sync.Mutex
		changes []int64
		last    int64
	)
	require.NoError(t, b.eng.wconn.QueryRowContext(ctx, "SELECT total_changes()").Scan(&last))
	b.eng.commitHook = func(int) error {
		var total int64
		if err := b.eng.wconn.QueryRowContext(context.Background(), "SELECT total_changes()").Scan(&total); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		changes = append(changes, total-last)
		last = total
		return nil
	}
	got, err := asyncreq.PurgeFinished(ctx, b, time.Now().Add(time.Hour), 0)
	require.NoError(t, err)
	require.Equal(t, finals, got)
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(changes), finals/purgeChunk)
	for i, c := range changes {
		// A purged record is a deleted row and a tombstone; the count of
		// each final state is updated once.
		require.LessOrEqual(t, c, int64(2*purgeChunk+3), "transaction %d of the purge changed %d rows", i, c)
	}
	counts, err := b.CountStates(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(n-finals), counts.Total(), "only the pending and running records are left")
}

// TestStateCountsFollowWrites: the counts CountStates reads stay equal to
// the records by state through every kind of write: accepts, updates that
// change the state and ones that do not, deletes, purges and requeues.
func TestStateCountsFollowWrites(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "counts.db")
	b, err := Open(ctx, path, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	other, err := Open(ctx, path, &Options{Queue: "other"})
	require.NoError(t, err)
	defer func() { require.NoError(t, other.Close()) }()
	check := func(what string) {
		t.Helper()
		for _, be := range []*Backend{b, other} {
			var want asyncreq.StateCounts
			rows, err := be.eng.rdb.QueryContext(ctx,
				`SELECT state, count(*) FROM `+be.prefix+`records WHERE queue = ? GROUP BY state`, be.queue)
			require.NoError(t, err)
			for rows.Next() {
				var st string
				var n int64
				require.NoError(t, rows.Scan(&st, &n))
				want.Add(asyncreq.State(st), n)
			}
			require.NoError(t, rows.Err())
			require.NoError(t, rows.Close())
			got, err := be.CountStates(ctx)
			require.NoError(t, err)
			require.Equal(t, want, got, "after %s, queue %s", what, be.queue)
		}
	}
	fillMixed(t, b, 300)
	check("filling")
	now := time.Now()
	var ids []string
	for range 10 {
		rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now,
			Retention: time.Minute, TombstoneTTL: time.Minute}
		_, err := b.Accept(ctx, rec)
		require.NoError(t, err)
		_, err = other.Accept(ctx, rec.Clone())
		require.NoError(t, err)
		ids = append(ids, rec.ID)
	}
	check("accepts")
	for i, id := range ids {
		_, err := b.Update(ctx, id, func(r *asyncreq.Record) error { return r.Claim("token", 3, now) })
		require.NoError(t, err)
		_, err = b.Update(ctx, id, func(r *asyncreq.Record) error { r.Attempts++; return nil })
		require.NoError(t, err)
		if i%2 == 0 {
			_, err = b.Update(ctx, id, func(r *asyncreq.Record) error {
				return r.Fail("token", &asyncreq.Problem{Status: 500, Title: "broke"}, now)
			})
		} else {
			_, err = b.Update(ctx, id, func(r *asyncreq.Record) error { return r.Cancel("token", now) })
		}
		require.NoError(t, err)
	}
	check("updates")
	for _, id := range ids[:4] {
		_, err := asyncreq.RetryRequest(ctx, b, id)
		require.NoError(t, err)
	}
	check("requeues")
	require.NoError(t, b.Delete(ctx, ids[0], true))
	require.NoError(t, b.Delete(ctx, ids[5], false))
	check("deletes")
	_, err = b.Purge(ctx, now.Add(48*time.Hour), 1000)
	require.NoError(t, err)
	check("purge")
	_, err = asyncreq.PurgeFinished(ctx, other, now.Add(time.Hour), 7)
	require.NoError(t, err)
	check("purge of finished")
}
