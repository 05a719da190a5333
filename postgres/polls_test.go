package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/postgres"
)

// setAttemptsBehindTheBackends changes a record's attempts in the table
// itself, as no Backend would: no Backend is told of the change.
func setAttemptsBehindTheBackends(t *testing.T, pool *pgxpool.Pool, schema, id string, n int) {
	t.Helper()
	_, err := pool.Exec(t.Context(), "UPDATE "+pgx.Identifier{schema, "records"}.Sanitize()+
		" SET attempts = $2 WHERE id = $1", id, n)
	require.NoError(t, err)
}

// newPolledRecord creates a pending record through s and Gets it once.
func newPolledRecord(t *testing.T, s *postgres.Backend) string {
	t.Helper()
	rec := testRecord("", "", []byte("poll me"))
	_, err := s.Create(t.Context(), rec)
	require.NoError(t, err)
	got, err := s.Get(t.Context(), rec.ID)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StatePending, got.State)
	return rec.ID
}

// attempts returns the attempts of the record id as s.Get answers.
func attempts(t *testing.T, s *postgres.Backend, id string) int {
	t.Helper()
	rec, err := s.Get(t.Context(), id)
	require.NoError(t, err)
	return rec.Attempts
}

// pollConstantly Gets id through s, one Get after the other, until stop
// is called; stop waits for the last Get to end.
func pollConstantly(s *postgres.Backend, id string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			_, _ = s.Get(ctx, id)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// TestPollCacheAnswersFromTheRead: a Get of an unfinished record that
// follows another within PollCacheAge is answered from the first one's
// read, without reading the database (a change nobody was told of is not
// seen), and reads it again once PollCacheAge has passed.
func TestPollCacheAnswersFromTheRead(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 16)
	schema := newSchema(t, pool)
	s := newStoreOn(t, pool, schema, &postgres.Options{PollCacheAge: time.Minute})
	id := newPolledRecord(t, s)
	setAttemptsBehindTheBackends(t, pool, schema, id, 7)
	assert.Equal(t, 0, attempts(t, s, id), "a poll within PollCacheAge is answered from the last read")

	short := newStoreOn(t, pool, schema, &postgres.Options{PollCacheAge: 100 * time.Millisecond})
	id = newPolledRecord(t, short)
	setAttemptsBehindTheBackends(t, pool, schema, id, 7)
	require.Eventually(t, func() bool { return attempts(t, short, id) == 7 }, 5*time.Second, 10*time.Millisecond,
		"a poll after PollCacheAge reads the record again")

	off := newStoreOn(t, pool, schema, &postgres.Options{PollCacheAge: -1})
	id = newPolledRecord(t, off)
	setAttemptsBehindTheBackends(t, pool, schema, id, 7)
	assert.Equal(t, 7, attempts(t, off, id), "a negative PollCacheAge reads at every Get")

	unlistened := newStoreOn(t, pool, schema, &postgres.Options{PollCacheAge: time.Minute, DisableListen: true})
	id = newPolledRecord(t, unlistened)
	setAttemptsBehindTheBackends(t, pool, schema, id, 7)
	assert.Equal(t, 7, attempts(t, unlistened, id), "without LISTEN, nothing is cached")
}

// TestPollCacheSeesEveryWrite: with a PollCacheAge far longer than the
// test, a Get sees every change made through a Backend: its own at once,
// another process's (another Backend on the schema, with connections of
// its own) as soon as that Backend's notification arrives.
func TestPollCacheSeesEveryWrite(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 16)
	schema := newSchema(t, pool)
	api := newStoreOn(t, pool, schema, &postgres.Options{PollCacheAge: time.Hour})
	worker := newStoreOn(t, newPool(t, 16), schema, nil)
	ctx := t.Context()
	update := func(s *postgres.Backend, id string, fn func(*asyncreq.Record) error) {
		t.Helper()
		_, err := s.Update(ctx, id, fn)
		require.NoError(t, err)
	}
	state := func(id string) asyncreq.State {
		rec, err := api.Get(ctx, id)
		require.NoError(t, err)
		return rec.State
	}

	// Another process's changes.
	id := newPolledRecord(t, api)
	update(worker, id, func(r *asyncreq.Record) error { return r.Claim("token", 3, time.Now()) })
	require.Eventually(t, func() bool { return state(id) == asyncreq.StateRunning }, 5*time.Second, 5*time.Millisecond,
		"the other Backend's claim is seen once its notification arrives")
	update(worker, id, func(r *asyncreq.Record) error {
		return r.Succeed("token", &asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")}, time.Now())
	})
	require.Eventually(t, func() bool { return state(id) == asyncreq.StateSucceeded }, 5*time.Second, 5*time.Millisecond,
		"the other Backend's outcome is seen once its notification arrives")

	// Its own, at once.
	id = newPolledRecord(t, api)
	update(api, id, func(r *asyncreq.Record) error { return r.Claim("token", 3, time.Now()) })
	assert.Equal(t, asyncreq.StateRunning, state(id))
	require.NoError(t, api.Delete(ctx, id, false))
	_, err := api.Get(ctx, id)
	assert.ErrorIs(t, err, asyncreq.ErrNotFound)

	// What its own writes stored, final or not, is what the next Get
	// answers, without a read: a change nobody was told of is not seen.
	id = newPolledRecord(t, api)
	update(api, id, func(r *asyncreq.Record) error { return r.Claim("token", 3, time.Now()) })
	setAttemptsBehindTheBackends(t, pool, schema, id, 7)
	assert.Equal(t, 1, attempts(t, api, id), "the claim as written")
	update(api, id, func(r *asyncreq.Record) error {
		return r.Succeed("token", &asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")}, time.Now())
	})
	require.Equal(t, asyncreq.StateSucceeded, state(id))
	assert.Equal(t, 7, attempts(t, api, id), "the outcome as written, on the record as read for it")
	setAttemptsBehindTheBackends(t, pool, schema, id, 9)
	assert.Equal(t, 7, attempts(t, api, id), "a final record is cached too")
	require.NoError(t, api.Delete(ctx, id, true))
	_, err = api.Get(ctx, id)
	assert.ErrorIs(t, err, asyncreq.ErrGone)
}

// TestPollCacheKeepsTheLastOwnWrite: this Backend's own writes of one
// record, made at once by many callers (and so in batches written
// concurrently) while Gets race with them, leave the last of them in the
// poll cache, never an older one.
func TestPollCacheKeepsTheLastOwnWrite(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 32)
	schema := newSchema(t, pool)
	api := newStoreOn(t, pool, schema, &postgres.Options{PollCacheAge: time.Hour, Committers: 4})
	id := newPolledRecord(t, api)
	stopPolling := pollConstantly(api, id)
	defer stopPolling()
	const writers, each = 8, 15
	done := make(chan error, writers)
	for range writers {
		go func() {
			for range each {
				if _, err := api.Update(t.Context(), id, func(r *asyncreq.Record) error {
					r.Attempts++
					return nil
				}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range writers {
		require.NoError(t, <-done)
	}
	stopPolling()
	for range 20 {
		require.Equal(t, writers*each, attempts(t, api, id), "a Get answered with an older version")
	}
}

// TestPollCacheDropsReadsOverlappingAChange: a read in flight when a
// change is announced is not kept, whichever of the two ends first, so
// that no Get is answered with a version older than a change it was told
// of. Many Gets race with a stream of another Backend's updates; once the
// updates stop and their notifications have arrived, every Get must see
// the last.
func TestPollCacheDropsReadsOverlappingAChange(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 16)
	schema := newSchema(t, pool)
	api := newStoreOn(t, pool, schema, &postgres.Options{PollCacheAge: time.Hour})
	other := newStoreOn(t, newPool(t, 16), schema, nil)
	id := newPolledRecord(t, api)
	stopPolling := pollConstantly(api, id)
	defer stopPolling()
	const last = 40
	for i := 1; i <= last; i++ {
		_, err := other.Update(t.Context(), id, func(r *asyncreq.Record) error {
			r.Attempts = i
			return nil
		})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return attempts(t, api, id) == last }, 5*time.Second, 5*time.Millisecond)
	stopPolling()
	for range 20 {
		require.Equal(t, last, attempts(t, api, id), "a Get went back to an older version")
	}
}
