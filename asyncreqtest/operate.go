package asyncreqtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// The cases of the operator capabilities: asyncreq.Lister,
// asyncreq.FinishedPurger and asyncreq.Requeuer, and RetryRequest on a
// Backend.

func (k *storeKit) operateGroups() []group {
	return []group{
		{"Lister", []testCase{
			{"ListsNewestFirstInPages", k.listPages},
			{"FiltersByStateAndOwner", k.listFilters},
			{"LeavesOutBodies", k.listSummaries},
			{"FollowsUpdatesAndDeletes", k.listFollowsChanges},
			{"MalformedCursorIsErrBadCursor", k.listBadCursor},
			{"CountsByState", k.countStates},
		}},
		{"FinishedPurger", []testCase{
			{"DeletesFinishedBeforeTimeWithTombstones", k.purgeFinished},
			{"RespectsLimitAndTombstoneFlag", k.purgeFinishedLimit},
		}},
		{"Requeuer", []testCase{
			{"StoresAndEnqueues", k.requeueEnqueues},
			{"FunctionErrorChangesNothing", k.requeueFnError},
			{"UnknownIsNotFound", k.requeueUnknown},
		}},
	}
}

func (k *storeKit) lister(t *testing.T) (asyncreq.Store, asyncreq.Lister) {
	t.Helper()
	s := k.newStore(t)
	l, ok := s.(asyncreq.Lister)
	if !ok {
		t.Skipf("%T does not implement asyncreq.Lister", s)
	}
	return s, l
}

// listed returns a record as a Lister lists it: without its bodies.
func listed(rec *asyncreq.Record) *asyncreq.Record {
	return rec.WithoutBodies().Clone()
}

// finish makes rec final in state s at time at, with a Retention that
// keeps it for two hours from now at least: a Store whose engine expires
// records by itself (Redis) would drop one whose ExpiresAt passed, and a
// case would see it gone before it purged or listed it.
func finish(rec *asyncreq.Record, s asyncreq.State, at time.Time) *asyncreq.Record {
	rec.State = s
	rec.Enqueued = true
	rec.Attempts = 1
	rec.UpdatedAt = at
	if at.Add(rec.Retention).Before(time.Now().Add(time.Hour)) {
		rec.Retention = time.Since(at).Truncate(time.Second) + 2*time.Hour
	}
	rec.ExpiresAt = at.Add(rec.Retention)
	switch s {
	case asyncreq.StateSucceeded:
		rec.Result = lifecycleResult()
	case asyncreq.StateFailed:
		rec.Error = lifecycleProblem(500, "it broke")
	case asyncreq.StateCanceled:
		rec.Error = lifecycleProblem(409, "canceled")
	}
	return rec
}

// ids returns the ids of recs, in order.
func ids(recs []*asyncreq.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// listAll pages through q with the given page size and returns every
// record listed, failing t on an error or on a listing that does not end.
func listAll(t *testing.T, ctx context.Context, l asyncreq.Lister, q asyncreq.ListQuery) []*asyncreq.Record {
	t.Helper()
	var all []*asyncreq.Record
	for range 1000 {
		page, err := l.List(ctx, q)
		require.NoError(t, err, "List(%+v)", q)
		require.LessOrEqual(t, len(page.Records), q.PageLimit(), "a page holds at most the limit")
		all = append(all, page.Records...)
		if page.Next == "" {
			return all
		}
		require.NotEmpty(t, page.Records, "a page with a Next cursor must hold records")
		q.Cursor = page.Next
	}
	t.Fatalf("List(%+v) did not end within 1000 pages", q)
	return nil
}

// listFixture stores seven records of two owners in every state, created
// a millisecond apart except two created at the same instant, and returns
// them newest first (by CreatedAt, then ID, descending).
func listFixture(t *testing.T, ctx context.Context, s asyncreq.Store) []*asyncreq.Record {
	t.Helper()
	base := testTime().Add(-time.Hour)
	states := []asyncreq.State{
		asyncreq.StatePending, asyncreq.StateRunning, asyncreq.StateSucceeded, asyncreq.StateFailed,
		asyncreq.StateCanceled, asyncreq.StateFailed, asyncreq.StateSucceeded,
	}
	recs := make([]*asyncreq.Record, len(states))
	for i, st := range states {
		owner := "alice"
		if i%2 == 1 {
			owner = "bob"
		}
		rec := newRecord(owner, "")
		rec.CreatedAt = base.Add(time.Duration(i) * time.Millisecond)
		if i == 4 { // the same instant as the record before it
			rec.CreatedAt = recs[3].CreatedAt
		}
		rec.UpdatedAt = rec.CreatedAt
		switch {
		case st.Final():
			finish(rec, st, rec.CreatedAt.Add(time.Second))
		case st == asyncreq.StateRunning:
			rec.State = st
			rec.Enqueued = true
			rec.Attempts = 1
			rec.LeaseToken = asyncreq.NewID()
		}
		recs[i] = rec
	}
	create(t, ctx, s, recs...)
	newest := make([]*asyncreq.Record, 0, len(recs))
	for i := len(recs) - 1; i >= 0; i-- {
		newest = append(newest, recs[i])
	}
	// recs[3] and recs[4] share CreatedAt: the greater id comes first.
	if i3, i4 := len(recs)-1-3, len(recs)-1-4; newest[i3].ID > newest[i4].ID {
		newest[i3], newest[i4] = newest[i4], newest[i3]
	}
	return newest
}

func (k *storeKit) listPages(t *testing.T, ctx context.Context) {
	s, l := k.lister(t)
	want := listFixture(t, ctx, s)
	for _, size := range []int{1, 2, 3, 7, 50} {
		got := listAll(t, ctx, l, asyncreq.ListQuery{Limit: size})
		require.Equal(t, ids(want), ids(got), "pages of %d must list every record once, newest first (CreatedAt, then ID, descending)", size)
	}
	page, err := l.List(ctx, asyncreq.ListQuery{Limit: 7})
	require.NoError(t, err)
	require.Empty(t, page.Next, "a page that ends the listing has no Next cursor")
}

func (k *storeKit) listFilters(t *testing.T, ctx context.Context) {
	s, l := k.lister(t)
	all := listFixture(t, ctx, s)
	keep := func(f func(*asyncreq.Record) bool) []string {
		var out []string
		for _, r := range all {
			if f(r) {
				out = append(out, r.ID)
			}
		}
		return out
	}
	for _, st := range []asyncreq.State{asyncreq.StatePending, asyncreq.StateRunning, asyncreq.StateSucceeded, asyncreq.StateFailed, asyncreq.StateCanceled} {
		got := listAll(t, ctx, l, asyncreq.ListQuery{State: st, Limit: 1})
		require.Equal(t, keep(func(r *asyncreq.Record) bool { return r.State == st }), ids(got), "List by state %s", st)
	}
	got := listAll(t, ctx, l, asyncreq.ListQuery{Owner: "bob", Limit: 2})
	require.Equal(t, keep(func(r *asyncreq.Record) bool { return r.Owner == "bob" }), ids(got), "List by owner")
	got = listAll(t, ctx, l, asyncreq.ListQuery{Owner: "alice", State: asyncreq.StateSucceeded, Limit: 1})
	require.Equal(t, keep(func(r *asyncreq.Record) bool { return r.Owner == "alice" && r.State == asyncreq.StateSucceeded }),
		ids(got), "List by owner and state")
	got = listAll(t, ctx, l, asyncreq.ListQuery{Owner: "carol"})
	require.Empty(t, got, "List by an owner with no records")
	got = listAll(t, ctx, l, asyncreq.ListQuery{State: "nonsense"})
	require.Empty(t, got, "List by a state no record can be in")
}

func (k *storeKit) listSummaries(t *testing.T, ctx context.Context) {
	s, l := k.lister(t)
	done := finish(newRecord("owner", "key"), asyncreq.StateSucceeded, testTime())
	done.Header = map[string][]string{"X-Kept": {"yes"}}
	create(t, ctx, s, done)
	page, err := l.List(ctx, asyncreq.ListQuery{})
	require.NoError(t, err)
	require.Len(t, page.Records, 1)
	requireSameRecord(t, listed(done), page.Records[0], "List returns every field but Body and Result.Body")
	require.Nil(t, page.Records[0].Body, "List leaves out Body")
	require.Nil(t, page.Records[0].Result.Body, "List leaves out Result.Body")

	page.Records[0].Owner = "mutated"
	again, err := s.Get(ctx, done.ID)
	require.NoError(t, err)
	require.Equal(t, "owner", again.Owner, "a listed record must not share memory with the Store")
}

func (k *storeKit) listFollowsChanges(t *testing.T, ctx context.Context) {
	s, l := k.lister(t)
	all := listFixture(t, ctx, s)
	pending := all[len(all)-1]
	require.Equal(t, asyncreq.StatePending, pending.State)
	now := testTime()
	_, err := s.Update(ctx, pending.ID, func(r *asyncreq.Record) error { return r.RequestCancel(r.Owner, now) })
	require.NoError(t, err)
	got := listAll(t, ctx, l, asyncreq.ListQuery{State: asyncreq.StatePending})
	require.Empty(t, got, "a record canceled by Update is no longer listed as pending")
	got = listAll(t, ctx, l, asyncreq.ListQuery{State: asyncreq.StateCanceled})
	require.Contains(t, ids(got), pending.ID, "a record canceled by Update is listed as canceled")

	require.NoError(t, s.Delete(ctx, all[0].ID, true))
	got = listAll(t, ctx, l, asyncreq.ListQuery{})
	require.NotContains(t, ids(got), all[0].ID, "a deleted record is not listed")
	require.Len(t, got, len(all)-1)
}

func (k *storeKit) listBadCursor(t *testing.T, ctx context.Context) {
	_, l := k.lister(t)
	for _, c := range []string{"garbage!", "bm90IGEgY3Vyc29y", asyncreq.ListCursor{ID: "not an id"}.String()} {
		_, err := l.List(ctx, asyncreq.ListQuery{Cursor: c})
		require.ErrorIs(t, err, asyncreq.ErrBadCursor, "List with cursor %q", c)
	}
}

func (k *storeKit) countStates(t *testing.T, ctx context.Context) {
	s, l := k.lister(t)
	c, err := l.CountStates(ctx)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateCounts{}, c, "an empty Store counts nothing")
	listFixture(t, ctx, s)
	c, err = l.CountStates(ctx)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateCounts{Pending: 1, Running: 1, Succeeded: 2, Failed: 2, Canceled: 1}, c)
}

func (k *storeKit) finishedPurger(t *testing.T) (asyncreq.Store, asyncreq.FinishedPurger) {
	t.Helper()
	s := k.newStore(t)
	p, ok := s.(asyncreq.FinishedPurger)
	if !ok {
		t.Skipf("%T does not implement asyncreq.FinishedPurger", s)
	}
	return s, p
}

func (k *storeKit) purgeFinished(t *testing.T, ctx context.Context) {
	s, p := k.finishedPurger(t)
	now := testTime()
	old, recent := now.Add(-2*time.Hour), now.Add(-time.Minute)
	oldSucceeded := finish(newRecord("alice", "k1"), asyncreq.StateSucceeded, old)
	oldFailed := finish(newRecord("bob", ""), asyncreq.StateFailed, old)
	oldCanceled := finish(newRecord("", ""), asyncreq.StateCanceled, old)
	recentFailed := finish(newRecord("alice", ""), asyncreq.StateFailed, recent)
	oldPending := newRecord("alice", "")
	oldPending.CreatedAt, oldPending.UpdatedAt = old, old
	oldRunning := newRecord("alice", "")
	oldRunning.State, oldRunning.LeaseToken, oldRunning.Attempts = asyncreq.StateRunning, asyncreq.NewID(), 1
	oldRunning.CreatedAt, oldRunning.UpdatedAt = old, old
	create(t, ctx, s, oldSucceeded, oldFailed, oldCanceled, recentFailed, oldPending, oldRunning)

	n, err := p.PurgeFinished(ctx, now.Add(-time.Hour), 100, true)
	require.NoError(t, err)
	require.Equal(t, 3, n, "PurgeFinished deletes the final records last changed before the time")
	for _, rec := range []*asyncreq.Record{oldSucceeded, oldFailed, oldCanceled} {
		_, err := s.Get(ctx, rec.ID)
		requireGone(t, err, rec.Owner, fmt.Sprintf("a %s record purged with tombstones", rec.State))
	}
	for _, rec := range []*asyncreq.Record{recentFailed, oldPending, oldRunning} {
		got, err := s.Get(ctx, rec.ID)
		require.NoError(t, err, "a %s record changed at %v must stay", rec.State, rec.UpdatedAt)
		requireSameRecord(t, rec, got)
	}
	dup := newRecord("alice", "k1")
	_, err = s.Create(ctx, dup)
	require.NoError(t, err, "PurgeFinished frees the idempotency key of what it deletes")

	n, err = p.PurgeFinished(ctx, now.Add(-time.Hour), 100, true)
	require.NoError(t, err)
	require.Zero(t, n, "nothing is left to purge")
}

func (k *storeKit) purgeFinishedLimit(t *testing.T, ctx context.Context) {
	s, p := k.finishedPurger(t)
	old := testTime().Add(-2 * time.Hour)
	var recs []*asyncreq.Record
	for range 5 {
		recs = append(recs, finish(newRecord("owner", ""), asyncreq.StateSucceeded, old))
	}
	create(t, ctx, s, recs...)
	n, err := p.PurgeFinished(ctx, time.Now(), 2, false)
	require.NoError(t, err)
	require.Equal(t, 2, n, "PurgeFinished deletes at most limit records")
	n, err = p.PurgeFinished(ctx, time.Now(), 10, false)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	for _, rec := range recs {
		_, err := s.Get(ctx, rec.ID)
		require.ErrorIs(t, err, asyncreq.ErrNotFound, "a record purged without tombstones is not found")
		require.NotErrorIs(t, err, asyncreq.ErrGone, "a record purged without tombstones leaves none")
	}
}

func (k *storeKit) requeuer(t *testing.T) (asyncreq.Store, asyncreq.Requeuer, asyncreq.Queue) {
	t.Helper()
	s := k.newStore(t)
	r, ok := s.(asyncreq.Requeuer)
	if !ok {
		t.Skipf("%T does not implement asyncreq.Requeuer", s)
	}
	q, ok := s.(asyncreq.Queue)
	if !ok {
		t.Skipf("%T implements asyncreq.Requeuer but is not also the asyncreq.Queue", s)
	}
	return s, r, q
}

func (k *storeKit) requeueEnqueues(t *testing.T, ctx context.Context) {
	s, rq, q := k.requeuer(t)
	failed := finish(newRecord("owner", "key"), asyncreq.StateFailed, testTime())
	create(t, ctx, s, failed)
	now := testTime()
	got, err := rq.Requeue(ctx, failed.ID, func(r *asyncreq.Record) error {
		if err := r.Requeue(now); err != nil {
			return err
		}
		r.Enqueued = true
		return nil
	})
	require.NoError(t, err)
	want := failed.Clone()
	require.NoError(t, want.Requeue(now))
	want.Enqueued = true
	requireSameRecord(t, want, got, "Requeue returns the record as fn left it")
	stored, err := s.Get(ctx, failed.ID)
	require.NoError(t, err)
	requireSameRecord(t, want, stored, "Requeue stores the record as fn left it")

	l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	require.Equal(t, failed.ID, l.ID, "Requeue enqueues the id")
	require.NoError(t, q.Ack(ctx, l))
}

func (k *storeKit) requeueFnError(t *testing.T, ctx context.Context) {
	s, rq, q := k.requeuer(t)
	done := finish(newRecord("owner", ""), asyncreq.StateSucceeded, testTime())
	create(t, ctx, s, done)
	now := testTime()
	_, err := rq.Requeue(ctx, done.ID, func(r *asyncreq.Record) error { return r.Requeue(now) })
	require.ErrorIs(t, err, asyncreq.ErrNotRetryable, "Requeue returns fn's error")
	sentinel := errors.New("sentinel")
	_, err = rq.Requeue(ctx, done.ID, func(*asyncreq.Record) error { return sentinel })
	require.Equal(t, sentinel, err, "Requeue returns fn's error unwrapped")
	stored, err := s.Get(ctx, done.ID)
	require.NoError(t, err)
	requireSameRecord(t, done, stored, "a Requeue whose fn fails stores nothing")
	requireEmpty(t, ctx, q, k.cfg.leaseTTL, soon, "a Requeue whose fn fails enqueues nothing")
}

func (k *storeKit) requeueUnknown(t *testing.T, ctx context.Context) {
	_, rq, _ := k.requeuer(t)
	_, err := rq.Requeue(ctx, asyncreq.NewID(), func(*asyncreq.Record) error { return nil })
	require.ErrorIs(t, err, asyncreq.ErrNotFound)
}

// testRetryRequest checks asyncreq.RetryRequest on a Backend: a failed
// request goes back to pending, is dequeued again, and a succeeded one is
// refused. It runs on every Backend, Requeuer or not.
func testRetryRequest(t *testing.T, ctx context.Context, b asyncreq.Backend, cfg config) {
	store, queue := asyncreq.Parts(b)
	if _, ok := store.(asyncreq.Lister); !ok {
		t.Skipf("%T does not implement asyncreq.Lister: no operator capabilities", store)
	}
	failed := finish(newRecord("owner", ""), asyncreq.StateFailed, testTime())
	failed.Attempts = 3
	done := finish(newRecord("owner", ""), asyncreq.StateSucceeded, testTime())
	create(t, ctx, store, failed, done)

	rec, err := asyncreq.RetryRequest(ctx, b, failed.ID)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StatePending, rec.State)
	require.Zero(t, rec.Attempts, "a retry counts attempts from zero")
	require.Nil(t, rec.Error)
	require.True(t, rec.Enqueued, "RetryRequest returns the record marked enqueued")
	stored, err := store.Get(ctx, failed.ID)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StatePending, stored.State)
	require.True(t, stored.Enqueued)
	l := dequeueWithin(t, ctx, queue, cfg.leaseTTL, patience)
	require.Equal(t, failed.ID, l.ID, "RetryRequest enqueues the request")
	require.NoError(t, queue.Ack(ctx, l))

	_, err = asyncreq.RetryRequest(ctx, b, done.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotRetryable, "a succeeded request is not retried")
	_, err = asyncreq.RetryRequest(ctx, b, asyncreq.NewID())
	require.ErrorIs(t, err, asyncreq.ErrNotFound)

	rec, err = asyncreq.CancelRequest(ctx, b, failed.ID)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateCanceled, rec.State, "CancelRequest cancels a pending request of any owner")
	_, err = asyncreq.CancelRequest(ctx, b, failed.ID)
	require.ErrorIs(t, err, asyncreq.ErrFinished)

	require.NoError(t, asyncreq.DeleteRequest(ctx, b, failed.ID))
	_, err = store.Get(ctx, failed.ID)
	requireGone(t, err, "owner", "DeleteRequest keeps a tombstone")
}
