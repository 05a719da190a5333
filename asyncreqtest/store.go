package asyncreqtest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// TestStore checks that the Stores newStore makes keep the asyncreq.Store
// contract, and the contracts of the optional interfaces they implement
// (Watcher, UnenqueuedLister, Lister, FinishedPurger, and Accepter and
// Requeuer when the Store is also the Queue). Each case runs as a subtest of t with a fresh Store from
// newStore; the cases of an interface the Store does not implement are
// skipped.
//
// The Lifecycle cases move records through every state transition the
// Handler and the Worker make with Update, and check that the Store keeps
// every field each one writes.
//
// Times are compared at microsecond precision (a Store may truncate or
// round what is finer, as SQL databases do) and in any location;
// durations must round-trip to the millisecond. An empty Header or Body
// may come back as nil.
func TestStore(t *testing.T, newStore func(t *testing.T) asyncreq.Store, opts *Options) {
	t.Helper()
	k := &storeKit{cfg: newConfig(t, opts), newStore: newStore}
	runGroups(t, k.cfg, append([]group{
		{"Create", []testCase{
			{"RoundTripsEveryField", k.createRoundTripsEveryField},
			{"RoundTripsZeroFields", k.createRoundTripsZeroFields},
			{"ReturnsNilOnSuccess", k.createReturnsNil},
			{"DuplicateKeyReturnsExistingAndStoresNothing", k.createDuplicateKey},
			{"KeyIsScopedByOwner", k.createKeyScopedByOwner},
			{"ConcurrentDuplicateKeysHaveOneWinner", k.createConcurrentDuplicates},
			{"LargeBodyAndResult", k.createLargeBody},
		}},
		{"Get", []testCase{
			{"UnknownIsNotFound", k.getUnknown},
		}},
		{"Update", []testCase{
			{"AppliesFunctionAndReturnsStoredRecord", k.updateApplies},
			{"RoundTripsEveryField", k.updateRoundTripsEveryField},
			{"FunctionErrorStoresNothingAndIsReturned", k.updateFnError},
			{"UnknownIsNotFound", k.updateUnknown},
			{"ConcurrentUpdatesLoseNothing", k.updateConcurrent},
		}},
		{"Delete", []testCase{
			{"WithoutTombstoneIsNotFound", k.deleteWithoutTombstone},
			{"WithTombstoneIsGone", k.deleteWithTombstone},
			{"TombstoneNamesOwner", k.deleteTombstoneOwner},
			{"UnknownIsNotFound", k.deleteUnknown},
			{"FreesIdempotencyKey", k.deleteFreesKey},
		}},
		{"Purge", []testCase{
			{"RemovesOnlyExpiredFinalRecordsAndKeepsTombstones", k.purge},
		}},
		{"Copies", []testCase{
			{"StoredRecordIsNotSharedWithCaller", k.copiesIn},
			{"ReturnedRecordsAreNotShared", k.copiesOut},
		}},
		{"Context", []testCase{
			{"CanceledIsReturnedAndChangesNothing", k.contextCanceled},
			{"DeadlineExceededIsReturned", k.contextDeadline},
		}},
		{"Watcher", []testCase{
			{"UpdateClosesChannel", k.watchUpdate},
			{"ContextEndClosesChannel", k.watchContextEnd},
		}},
		{"UnenqueuedLister", []testCase{
			{"ListsOnlyUnenqueuedUnfinishedBeforeCutoff", k.listUnenqueued},
		}},
		{"Lifecycle", k.lifecycleCases()},
		{"Accepter", []testCase{
			{"StoresEnqueuedAndDelivers", k.acceptDelivers},
			{"DuplicateKeyReturnsExistingAndEnqueuesNothing", k.acceptDuplicate},
		}},
	}, k.operateGroups()...))
}

type storeKit struct {
	cfg      config
	newStore func(t *testing.T) asyncreq.Store
}

// create stores recs in s, failing t on any error.
func create(t *testing.T, ctx context.Context, s asyncreq.Store, recs ...*asyncreq.Record) {
	t.Helper()
	for _, rec := range recs {
		_, err := s.Create(ctx, rec)
		require.NoError(t, err, "Create(%s)", rec.ID)
	}
}

func (k *storeKit) createRoundTripsEveryField(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	rec := fullRecord()
	create(t, ctx, s, rec)
	got, err := s.Get(ctx, rec.ID)
	require.NoError(t, err, "Get after Create")
	requireSameRecord(t, rec, got, "Get must return every field Create stored")
}

func (k *storeKit) createRoundTripsZeroFields(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	now := testTime()
	rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now}
	create(t, ctx, s, rec)
	got, err := s.Get(ctx, rec.ID)
	require.NoError(t, err, "Get after Create")
	requireSameRecord(t, rec, got, "fields left at their zero value must come back zero (nil pointers, zero ExpiresAt)")
}

func (k *storeKit) createReturnsNil(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	got, err := s.Create(ctx, newRecord("", ""))
	require.NoError(t, err)
	require.Nil(t, got, "Create of a new record returns (nil, nil)")
	got, err = s.Create(ctx, newRecord("owner", "key"))
	require.NoError(t, err)
	require.Nil(t, got, "Create of a new record with an idempotency key returns (nil, nil)")
}

func (k *storeKit) createDuplicateKey(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	first := newRecord("owner-a", "key-1")
	create(t, ctx, s, first)

	second := newRecord("owner-a", "key-1")
	second.Body = []byte("another body")
	second.BodyHash = bodyHash(second.Body)
	got, err := s.Create(ctx, second)
	require.ErrorIs(t, err, asyncreq.ErrDuplicate, "Create with an existing owner and idempotency key")
	requireSameRecord(t, first, got, "Create must return the existing record with ErrDuplicate")

	_, err = s.Get(ctx, second.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "the duplicate must not be stored")
	stored, err := s.Get(ctx, first.ID)
	require.NoError(t, err)
	requireSameRecord(t, first, stored, "the existing record must be unchanged")
}

func (k *storeKit) createKeyScopedByOwner(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	a := newRecord("owner-a", "shared-key")
	b := newRecord("owner-b", "shared-key")
	noOwner := newRecord("", "shared-key")
	_, err := s.Create(ctx, a)
	require.NoError(t, err)
	_, err = s.Create(ctx, b)
	require.NoError(t, err, "the same idempotency key under another owner is another request")
	_, err = s.Create(ctx, noOwner)
	require.NoError(t, err, "the same idempotency key with no owner is another request")

	// Records without a key never collide.
	for range 3 {
		_, err = s.Create(ctx, newRecord("owner-a", ""))
		require.NoError(t, err, "records without an idempotency key are never duplicates")
	}
	for _, rec := range []*asyncreq.Record{a, b, noOwner} {
		got, err := s.Get(ctx, rec.ID)
		require.NoError(t, err)
		requireSameRecord(t, rec, got)
	}
}

func (k *storeKit) createConcurrentDuplicates(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	const n = 20
	recs := make([]*asyncreq.Record, n)
	for i := range recs {
		recs[i] = newRecord("owner", "raced-key")
	}
	type result struct {
		rec *asyncreq.Record
		err error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			rec, err := s.Create(ctx, recs[i])
			results[i] = result{rec, err}
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, r := range results {
		if r.err == nil {
			require.Equal(t, -1, winner, "two concurrent Creates with the same owner and key both succeeded: %s and %s", recs[max(winner, 0)].ID, recs[i].ID)
			winner = i
		}
	}
	require.NotEqual(t, -1, winner, "no Create succeeded; errors: %v", results)
	for i, r := range results {
		if i == winner {
			continue
		}
		require.ErrorIs(t, r.err, asyncreq.ErrDuplicate, "a losing concurrent Create")
		require.NotNil(t, r.rec, "a losing Create must return the winner's record")
		require.Equal(t, recs[winner].ID, r.rec.ID, "a losing Create must return the winner's record")
		_, err := s.Get(ctx, recs[i].ID)
		require.ErrorIs(t, err, asyncreq.ErrNotFound, "a losing Create must store nothing")
	}
	got, err := s.Get(ctx, recs[winner].ID)
	require.NoError(t, err)
	requireSameRecord(t, recs[winner], got)
}

func (k *storeKit) createLargeBody(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	const size = 1 << 20
	rec := newRecord("", "")
	rec.Body = randomBytes(size)
	rec.BodyHash = bodyHash(rec.Body)
	create(t, ctx, s, rec)
	got, err := s.Get(ctx, rec.ID)
	require.NoError(t, err, "Get of a record with a 1 MiB body")
	require.Len(t, got.Body, size)
	require.True(t, bytes.Equal(rec.Body, got.Body), "the 1 MiB body must round-trip byte for byte")

	result := randomBytes(size)
	result[0] ^= 0x55
	upd, err := s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateSucceeded
		r.Result = &asyncreq.Result{ContentType: "application/octet-stream", Body: result}
		r.ExpiresAt = testTime().Add(time.Hour)
		return nil
	})
	require.NoError(t, err, "Update adding a 1 MiB result to a record with a 1 MiB body")
	require.True(t, bytes.Equal(result, upd.Result.Body), "Update must return the 1 MiB result")
	got, err = s.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.True(t, bytes.Equal(rec.Body, got.Body), "the 1 MiB body must survive the Update")
	require.NotNil(t, got.Result)
	require.True(t, bytes.Equal(result, got.Result.Body), "the 1 MiB result must round-trip byte for byte")
}

func (k *storeKit) getUnknown(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	create(t, ctx, s, newRecord("", ""))
	got, err := s.Get(ctx, asyncreq.NewID())
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "Get of an id never stored")
	require.Nil(t, got)
}

func (k *storeKit) updateApplies(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	rec := newRecord("owner", "key")
	create(t, ctx, s, rec)

	token := asyncreq.NewID()
	later := rec.UpdatedAt.Add(time.Second)
	var seen *asyncreq.Record
	got, err := s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		seen = r.Clone()
		r.State = asyncreq.StateRunning
		r.Attempts++
		r.LeaseToken = token
		r.Progress = &asyncreq.Progress{Percent: 10, Message: "started"}
		r.UpdatedAt = later
		return nil
	})
	require.NoError(t, err)
	require.NotNil(t, seen, "Update must call fn")
	requireSameRecord(t, rec, seen, "Update must call fn with the stored record")

	want := rec.Clone()
	want.State = asyncreq.StateRunning
	want.Attempts = 1
	want.LeaseToken = token
	want.Progress = &asyncreq.Progress{Percent: 10, Message: "started"}
	want.UpdatedAt = later
	requireSameRecord(t, want, got, "Update must return the record as stored")
	stored, err := s.Get(ctx, rec.ID)
	require.NoError(t, err)
	requireSameRecord(t, want, stored, "Get after Update must return what fn left")
}

func (k *storeKit) updateRoundTripsEveryField(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	full := fullRecord()
	rec := &asyncreq.Record{
		ID: full.ID, Owner: full.Owner, IdempotencyKey: full.IdempotencyKey,
		State: asyncreq.StatePending, CreatedAt: full.CreatedAt, UpdatedAt: full.CreatedAt,
	}
	create(t, ctx, s, rec)
	got, err := s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		*r = *full.Clone()
		return nil
	})
	require.NoError(t, err)
	requireSameRecord(t, full, got, "Update must return every field fn set")
	stored, err := s.Get(ctx, rec.ID)
	require.NoError(t, err)
	requireSameRecord(t, full, stored, "Get after Update must return every field fn set")

	// And back to zero values: cleared fields must not linger.
	got, err = s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		*r = *rec.Clone()
		return nil
	})
	require.NoError(t, err)
	requireSameRecord(t, rec, got, "fields fn cleared must come back cleared")
	stored, err = s.Get(ctx, rec.ID)
	require.NoError(t, err)
	requireSameRecord(t, rec, stored, "fields fn cleared must stay cleared")
}

func (k *storeKit) updateFnError(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	rec := newRecord("owner", "key")
	rec.Header = map[string][]string{"X-Kept": {"yes"}}
	create(t, ctx, s, rec)

	refused := &errFromFn{id: rec.ID}
	got, err := s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateFailed
		r.Attempts = 7
		mutate(r)
		return refused
	})
	require.ErrorIs(t, err, refused, "Update must return fn's error")
	var target *errFromFn
	require.ErrorAs(t, err, &target, "Update must return fn's error")
	require.Nil(t, got)

	stored, err := s.Get(ctx, rec.ID)
	require.NoError(t, err)
	requireSameRecord(t, rec, stored, "nothing may be stored when fn returns an error, not even what fn changed in place")
}

func (k *storeKit) updateUnknown(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	create(t, ctx, s, newRecord("", ""))
	called := false
	got, err := s.Update(ctx, asyncreq.NewID(), func(*asyncreq.Record) error {
		called = true
		return nil
	})
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "Update of an id never stored")
	require.Nil(t, got)
	require.False(t, called, "Update must not call fn when there is no record")
}

func (k *storeKit) updateConcurrent(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	rec := newRecord("", "")
	create(t, ctx, s, rec)
	const goroutines, each = 20, 5
	errs := make([]error, goroutines)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			<-start
			for range each {
				if _, err := s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
					r.Attempts++
					return nil
				}); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "goroutine %d", i)
	}
	got, err := s.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, goroutines*each, got.Attempts, "%d concurrent increments of Attempts through Update", goroutines*each)
}

func (k *storeKit) deleteWithoutTombstone(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	rec := newRecord("", "")
	other := newRecord("", "")
	create(t, ctx, s, rec, other)
	require.NoError(t, s.Delete(ctx, rec.ID, false))
	_, err := s.Get(ctx, rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "Get after Delete without a tombstone")
	_, err = s.Update(ctx, rec.ID, func(*asyncreq.Record) error { return nil })
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "Update after Delete without a tombstone")
	require.ErrorIs(t, s.Delete(ctx, rec.ID, false), asyncreq.ErrNotFound, "a second Delete")
	got, err := s.Get(ctx, other.ID)
	require.NoError(t, err, "Delete must remove only its record")
	requireSameRecord(t, other, got)
}

func (k *storeKit) deleteWithTombstone(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	rec := newRecord("", "")
	rec.State = asyncreq.StateSucceeded
	rec.ExpiresAt = testTime().Add(time.Hour)
	create(t, ctx, s, rec)
	require.NoError(t, s.Delete(ctx, rec.ID, true))
	_, err := s.Get(ctx, rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrGone, "Get after Delete with a tombstone")
	called := false
	_, err = s.Update(ctx, rec.ID, func(*asyncreq.Record) error {
		called = true
		return nil
	})
	require.ErrorIs(t, err, asyncreq.ErrGone, "Update after Delete with a tombstone")
	require.False(t, called, "Update must not call fn for a tombstone")
}

// requireGone requires err to be ErrGone as a *asyncreq.GoneError naming
// owner, the owner of the record the tombstone stands for.
func requireGone(t *testing.T, err error, owner string, msg string) {
	t.Helper()
	require.ErrorIs(t, err, asyncreq.ErrGone, msg)
	var ge *asyncreq.GoneError
	require.ErrorAs(t, err, &ge, "%s: ErrGone must come as a *asyncreq.GoneError that names the record's owner, "+
		"so that a handler answers 410 to that owner only", msg)
	require.Equal(t, owner, ge.Owner, "%s: the owner the tombstone keeps", msg)
}

// deleteTombstoneOwner checks that a tombstone keeps its record's owner:
// a handler must answer it 410 to that owner and 404 to any other.
func (k *storeKit) deleteTombstoneOwner(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	recs := []*asyncreq.Record{newRecord("alice", "k"), newRecord("tenant/é 1", ""), newRecord("", "")}
	recs[0].State = asyncreq.StateSucceeded
	recs[0].ExpiresAt = testTime().Add(time.Hour)
	create(t, ctx, s, recs...)
	for _, rec := range recs {
		require.NoError(t, s.Delete(ctx, rec.ID, true))
		_, err := s.Get(ctx, rec.ID)
		requireGone(t, err, rec.Owner, "Get after Delete with a tombstone")
		_, err = s.Update(ctx, rec.ID, func(*asyncreq.Record) error { return nil })
		requireGone(t, err, rec.Owner, "Update after Delete with a tombstone")
	}
}

func (k *storeKit) deleteUnknown(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	create(t, ctx, s, newRecord("", ""))
	require.ErrorIs(t, s.Delete(ctx, asyncreq.NewID(), false), asyncreq.ErrNotFound, "Delete of an id never stored")
	require.ErrorIs(t, s.Delete(ctx, asyncreq.NewID(), true), asyncreq.ErrNotFound, "Delete with tombstone of an id never stored")
}

func (k *storeKit) deleteFreesKey(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	for _, tombstone := range []bool{false, true} {
		first := newRecord("owner", "reused-key")
		create(t, ctx, s, first)
		require.NoError(t, s.Delete(ctx, first.ID, tombstone))
		second := newRecord("owner", "reused-key")
		got, err := s.Create(ctx, second)
		require.NoError(t, err, "Create with the key of a deleted record (tombstone %v)", tombstone)
		require.Nil(t, got)
		stored, err := s.Get(ctx, second.ID)
		require.NoError(t, err)
		requireSameRecord(t, second, stored)
		require.NoError(t, s.Delete(ctx, second.ID, false))
	}
}

// purge checks Purge with records that become final through Update, as
// the worker makes them, with an ExpiresAt one second ahead, so that a
// Store whose engine expires records by itself (a key TTL) can pass by
// doing so: the case judges what Get answers after ExpiresAt, not what
// Purge counts.
func (k *storeKit) purge(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	start := time.Now()
	expireAt := start.Add(time.Second)
	const shortTomb = 500 * time.Millisecond

	finish := func(state asyncreq.State, expires time.Time, tombTTL time.Duration) *asyncreq.Record {
		t.Helper()
		rec := newRecord("owner", asyncreq.NewID())
		rec.TombstoneTTL = tombTTL
		create(t, ctx, s, rec)
		got, err := s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
			r.State = state
			r.Attempts = 1
			r.ExpiresAt = expires
			r.UpdatedAt = testTime()
			if state == asyncreq.StateSucceeded {
				r.Result = &asyncreq.Result{ContentType: "text/plain", Body: []byte("done")}
			} else {
				r.Error = &asyncreq.Problem{Title: "Failed", Status: 500}
			}
			return nil
		})
		require.NoError(t, err)
		return got
	}
	expired := []*asyncreq.Record{
		finish(asyncreq.StateSucceeded, expireAt, time.Hour),
		finish(asyncreq.StateFailed, expireAt, time.Hour),
		finish(asyncreq.StateCanceled, expireAt, time.Hour),
	}
	short := finish(asyncreq.StateSucceeded, expireAt, shortTomb)
	due := append(slices.Clone(expired), short)
	kept := finish(asyncreq.StateSucceeded, start.Add(time.Hour), time.Hour)
	pending := newRecord("owner", "")
	running := newRecord("owner", "")
	running.State = asyncreq.StateRunning
	running.Attempts = 1
	running.LeaseToken = asyncreq.NewID()
	deleted := newRecord("owner", "")
	create(t, ctx, s, pending, running, deleted)
	require.NoError(t, s.Delete(ctx, deleted.ID, true))
	alive := []*asyncreq.Record{kept, pending, running}

	if time.Now().Before(expireAt.Add(-100 * time.Millisecond)) {
		n, err := s.Purge(ctx, time.Now(), 100)
		require.NoError(t, err)
		require.Zero(t, n, "Purge before any ExpiresAt passed must delete nothing")
		for _, rec := range append(slices.Clone(due), alive...) {
			_, err := s.Get(ctx, rec.ID)
			require.NoError(t, err, "a record whose ExpiresAt has not passed must stay")
		}
	}

	sleep(ctx, time.Until(expireAt.Add(50*time.Millisecond)))
	const limit = 2
	n, err := s.Purge(ctx, time.Now(), limit)
	require.NoError(t, err)
	require.LessOrEqual(t, n, limit, "Purge must delete at most limit records")
	require.GreaterOrEqual(t, n, 0)
	if n > 0 {
		present := 0
		for _, rec := range due {
			if _, err := s.Get(ctx, rec.ID); err == nil {
				present++
			}
		}
		require.Equal(t, len(due)-n, present, "Purge(limit %d) reported %d deletions of %d due records", limit, n, len(due))
	}
	total := n

	eventually(t, ctx, patience, 100*time.Millisecond, func() bool {
		n, err := s.Purge(ctx, time.Now(), 100)
		require.NoError(t, err)
		require.GreaterOrEqual(t, n, 0)
		total += n
		for _, rec := range due {
			_, err := s.Get(ctx, rec.ID)
			if err == nil {
				return false
			}
			if rec == short && errors.Is(err, asyncreq.ErrNotFound) {
				continue // its tombstone may already have run out
			}
			requireGone(t, err, rec.Owner, "a purged record must be Gone while its tombstone lasts")
		}
		return true
	}, says("final records whose ExpiresAt passed must be purged (Get answering ErrGone)"))
	require.LessOrEqual(t, total, len(due), "Purge reported more deletions than there were due records")

	for _, rec := range alive {
		got, err := s.Get(ctx, rec.ID)
		require.NoError(t, err, "Purge must leave alone pending, running and unexpired records (%s)", rec.State)
		requireSameRecord(t, rec, got)
	}
	_, err = s.Get(ctx, deleted.ID)
	requireGone(t, err, deleted.Owner, "Purge must keep a tombstone that has not run out")

	sleep(ctx, time.Until(expireAt.Add(shortTomb+50*time.Millisecond)))
	eventually(t, ctx, patience, 100*time.Millisecond, func() bool {
		_, err := s.Purge(ctx, time.Now(), 100)
		require.NoError(t, err)
		_, err = s.Get(ctx, short.ID)
		if errors.Is(err, asyncreq.ErrGone) {
			return false
		}
		require.ErrorIs(t, err, asyncreq.ErrNotFound, "Get after the tombstone ran out")
		return true
	}, says("a tombstone must go (Get answering ErrNotFound) once ExpiresAt plus TombstoneTTL passed"))
	for _, rec := range expired {
		_, err := s.Get(ctx, rec.ID)
		requireGone(t, err, rec.Owner, "a tombstone that has not run out must stay")
	}
}

func (k *storeKit) copiesIn(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	rec := fullRecord()
	want := rec.Clone()
	create(t, ctx, s, rec)
	mutate(rec)
	got, err := s.Get(ctx, want.ID)
	require.NoError(t, err)
	requireSameRecord(t, want, got, "changing the record passed to Create after the call must not change the stored one")

	var seen []*asyncreq.Record
	_, err = s.Update(ctx, want.ID, func(r *asyncreq.Record) error {
		seen = append(seen, r)
		r.Attempts++
		return nil
	})
	require.NoError(t, err)
	want.Attempts++
	for _, r := range seen {
		mutate(r)
	}
	got, err = s.Get(ctx, want.ID)
	require.NoError(t, err)
	requireSameRecord(t, want, got, "changing the record Update passed to fn after the call must not change the stored one")
}

func (k *storeKit) copiesOut(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	want := fullRecord()
	create(t, ctx, s, want)

	got, err := s.Get(ctx, want.ID)
	require.NoError(t, err)
	mutate(got)
	again, err := s.Get(ctx, want.ID)
	require.NoError(t, err)
	requireSameRecord(t, want, again, "changing a record Get returned must not change the stored one")

	upd, err := s.Update(ctx, want.ID, func(r *asyncreq.Record) error {
		r.Attempts++
		return nil
	})
	require.NoError(t, err)
	want.Attempts++
	mutate(upd)
	again, err = s.Get(ctx, want.ID)
	require.NoError(t, err)
	requireSameRecord(t, want, again, "changing the record Update returned must not change the stored one")

	dup := fullRecord()
	dup.Owner, dup.IdempotencyKey = want.Owner, want.IdempotencyKey
	existing, err := s.Create(ctx, dup)
	require.ErrorIs(t, err, asyncreq.ErrDuplicate)
	mutate(existing)
	again, err = s.Get(ctx, want.ID)
	require.NoError(t, err)
	requireSameRecord(t, want, again, "changing the record a duplicate Create returned must not change the stored one")
}

func (k *storeKit) contextCanceled(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	rec := newRecord("owner", "key")
	create(t, ctx, s, rec)
	cctx, cancel := context.WithCancel(ctx)
	cancel()

	fresh := newRecord("owner", "other-key")
	_, err := s.Create(cctx, fresh)
	assert.ErrorIs(t, err, context.Canceled, "Create")
	_, err = s.Get(cctx, rec.ID)
	assert.ErrorIs(t, err, context.Canceled, "Get")
	_, err = s.Update(cctx, rec.ID, func(r *asyncreq.Record) error {
		r.Attempts = 42
		return nil
	})
	assert.ErrorIs(t, err, context.Canceled, "Update")
	assert.ErrorIs(t, s.Delete(cctx, rec.ID, false), context.Canceled, "Delete")
	_, err = s.Purge(cctx, time.Now(), 10)
	assert.ErrorIs(t, err, context.Canceled, "Purge")
	if l, ok := s.(asyncreq.UnenqueuedLister); ok {
		_, err = l.ListUnenqueued(cctx, time.Now(), 10)
		assert.ErrorIs(t, err, context.Canceled, "ListUnenqueued")
	}
	if a, ok := s.(asyncreq.Accepter); ok {
		_, err = a.Accept(cctx, newRecord("owner", "accept-key"))
		assert.ErrorIs(t, err, context.Canceled, "Accept")
	}
	if w, ok := s.(asyncreq.Watcher); ok {
		ch, err := w.Watch(cctx, rec.ID)
		if err != nil {
			assert.ErrorIs(t, err, context.Canceled, "Watch")
		} else {
			select {
			case <-ch:
			case <-time.After(soon):
				t.Errorf("Watch with a canceled context returned neither an error nor a closed channel")
			}
		}
	}

	got, err := s.Get(ctx, rec.ID)
	require.NoError(t, err, "a Delete with a canceled context must not delete")
	requireSameRecord(t, rec, got, "an Update with a canceled context must not store")
	_, err = s.Get(ctx, fresh.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "a Create with a canceled context must not store")
}

func (k *storeKit) contextDeadline(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	rec := newRecord("", "")
	create(t, ctx, s, rec)
	dctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	_, err := s.Get(dctx, rec.ID)
	require.ErrorIs(t, err, context.DeadlineExceeded, "Get")
	_, err = s.Update(dctx, rec.ID, func(*asyncreq.Record) error { return nil })
	require.ErrorIs(t, err, context.DeadlineExceeded, "Update")
}

func (k *storeKit) watcher(t *testing.T) (asyncreq.Store, asyncreq.Watcher) {
	t.Helper()
	s := k.newStore(t)
	w, ok := s.(asyncreq.Watcher)
	if !ok {
		t.Skipf("%T does not implement asyncreq.Watcher", s)
	}
	return s, w
}

func (k *storeKit) watchUpdate(t *testing.T, ctx context.Context) {
	s, w := k.watcher(t)
	rec := newRecord("", "")
	create(t, ctx, s, rec)
	// A notification of the Create that arrives late is not a change after
	// the Watch; give it time to pass.
	sleep(ctx, 200*time.Millisecond)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()

	unknown, err := w.Watch(wctx, asyncreq.NewID())
	require.NoError(t, err, "Watch does not check that the record exists")
	ch, err := w.Watch(wctx, rec.ID)
	require.NoError(t, err)
	select {
	case <-ch:
		t.Fatal("the Watch channel was closed before the record changed")
	case <-time.After(100 * time.Millisecond):
	}

	_, err = s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateRunning
		return nil
	})
	require.NoError(t, err)
	select {
	case <-ch:
	case <-time.After(4 * soon):
		t.Fatalf("the Watch channel was not closed within %v of an Update", 4*soon)
	}
	select {
	case <-unknown:
		t.Fatal("the Watch channel of another id was closed by an Update")
	default:
	}

	// A watch made after the change waits for the next one.
	next, err := w.Watch(wctx, rec.ID)
	require.NoError(t, err)
	select {
	case <-next:
		t.Fatal("a new Watch channel was closed by a change made before Watch")
	case <-time.After(100 * time.Millisecond):
	}
	_, err = s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.Attempts++
		return nil
	})
	require.NoError(t, err)
	select {
	case <-next:
	case <-time.After(4 * soon):
		t.Fatalf("the second Watch channel was not closed within %v of an Update", 4*soon)
	}
}

func (k *storeKit) watchContextEnd(t *testing.T, ctx context.Context) {
	s, w := k.watcher(t)
	rec := newRecord("", "")
	create(t, ctx, s, rec)
	wctx, cancel := context.WithCancel(ctx)
	ch, err := w.Watch(wctx, rec.ID)
	require.NoError(t, err)
	cancel()
	select {
	case <-ch:
	case <-time.After(4 * soon):
		t.Fatalf("the Watch channel was not closed within %v of its context ending", 4*soon)
	}
}

func (k *storeKit) listUnenqueued(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	l, ok := s.(asyncreq.UnenqueuedLister)
	if !ok {
		t.Skipf("%T does not implement asyncreq.UnenqueuedLister", s)
	}
	unenqueued := func(state asyncreq.State) *asyncreq.Record {
		rec := newRecord("owner", "")
		rec.State = state
		if state.Final() {
			rec.ExpiresAt = testTime().Add(time.Hour)
		}
		return rec
	}
	pending := unenqueued(asyncreq.StatePending)
	running := unenqueued(asyncreq.StateRunning)
	failed := unenqueued(asyncreq.StateFailed)
	canceled := unenqueued(asyncreq.StateCanceled)
	enqueued := newRecord("owner", "")
	enqueued.Enqueued = true
	create(t, ctx, s, pending, running, failed, canceled, enqueued)

	// The cutoff lies between both the CreatedAt fields and the real
	// creation times of the records before it and after it.
	sleep(ctx, 20*time.Millisecond)
	cutoff := time.Now()
	sleep(ctx, 20*time.Millisecond)
	late := unenqueued(asyncreq.StatePending)
	create(t, ctx, s, late)

	ids, err := l.ListUnenqueued(ctx, cutoff, 100)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{pending.ID, running.ID}, ids,
		"ListUnenqueued must list exactly the records with Enqueued false, not final, created before the cutoff")

	ids, err = l.ListUnenqueued(ctx, cutoff, 1)
	require.NoError(t, err)
	require.Len(t, ids, 1, "ListUnenqueued must respect limit")
	require.Contains(t, []string{pending.ID, running.ID}, ids[0])

	_, err = s.Update(ctx, pending.ID, func(r *asyncreq.Record) error {
		r.Enqueued = true
		return nil
	})
	require.NoError(t, err)
	_, err = s.Update(ctx, running.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateFailed
		r.ExpiresAt = testTime().Add(time.Hour)
		return nil
	})
	require.NoError(t, err)
	ids, err = l.ListUnenqueued(ctx, time.Now().Add(time.Second), 100)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{late.ID}, ids,
		"a record set Enqueued or made final by Update must no longer be listed")
}

func (k *storeKit) accepter(t *testing.T) (asyncreq.Store, asyncreq.Accepter, asyncreq.Queue) {
	t.Helper()
	s := k.newStore(t)
	a, ok := s.(asyncreq.Accepter)
	if !ok {
		t.Skipf("%T does not implement asyncreq.Accepter", s)
	}
	q, ok := s.(asyncreq.Queue)
	if !ok {
		t.Skipf("%T implements asyncreq.Accepter but is not also the asyncreq.Queue", s)
	}
	return s, a, q
}

func (k *storeKit) acceptDelivers(t *testing.T, ctx context.Context) {
	s, a, q := k.accepter(t)
	rec := newRecord("owner", "key")
	got, err := a.Accept(ctx, rec)
	require.NoError(t, err)
	require.Nil(t, got, "Accept of a new record returns (nil, nil)")

	stored, err := s.Get(ctx, rec.ID)
	require.NoError(t, err)
	want := rec.Clone()
	want.Enqueued = true
	requireSameRecord(t, want, stored, "Accept must store the record with Enqueued set")

	l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	require.Equal(t, rec.ID, l.ID, "the accepted id must be dequeued")
	require.Equal(t, 1, l.Delivery)
	require.NoError(t, q.Ack(ctx, l))
}

func (k *storeKit) acceptDuplicate(t *testing.T, ctx context.Context) {
	s, a, q := k.accepter(t)
	first := newRecord("owner", "key")
	_, err := a.Accept(ctx, first)
	require.NoError(t, err)
	l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	require.Equal(t, first.ID, l.ID)
	require.NoError(t, q.Ack(ctx, l))

	dup := newRecord("owner", "key")
	got, err := a.Accept(ctx, dup)
	require.ErrorIs(t, err, asyncreq.ErrDuplicate, "Accept with an existing owner and idempotency key")
	want := first.Clone()
	want.Enqueued = true
	requireSameRecord(t, want, got, "Accept must return the existing record with ErrDuplicate")
	_, err = s.Get(ctx, dup.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "the duplicate must not be stored")
	requireEmpty(t, ctx, q, k.cfg.leaseTTL, 300*time.Millisecond, "a duplicate Accept must enqueue nothing")
}
