package postgres_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/postgres"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// accepted accepts a new record on s and returns it with a lease on it
// held for ttl.
func accepted(t *testing.T, s *postgres.Backend, ttl time.Duration) (*asyncreq.Record, *asyncreq.Lease) {
	t.Helper()
	ctx := t.Context()
	rec := testRecord("", "", []byte("body"))
	_, err := s.Accept(ctx, rec)
	require.NoError(t, err)
	l, err := s.Dequeue(ctx, ttl)
	require.NoError(t, err)
	require.Equal(t, rec.ID, l.ID)
	return rec, l
}

// succeed makes rec final as a worker's successful outcome does.
func succeed(rec *asyncreq.Record) error {
	now := time.Now().UTC()
	rec.State = asyncreq.StateSucceeded
	rec.Result = &asyncreq.Result{StatusCode: 200, ContentType: "text/plain", Body: []byte("done")}
	rec.LeaseToken = ""
	rec.UpdatedAt = now
	rec.ExpiresAt = now.Add(rec.Retention)
	return nil
}

// A Complete whose lease ran out and was delivered again writes the
// record and leaves the job to the newer delivery.
func TestCompleteStaleLease(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := t.Context()
	rec, first := accepted(t, s, 200*time.Millisecond)
	second, err := s.Dequeue(ctx, time.Minute) // due again once the first lease ran out
	require.NoError(t, err)
	require.Equal(t, 2, second.Delivery)

	got, err := s.Complete(ctx, first, succeed)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateSucceeded, got.State)
	stored, err := s.Get(ctx, rec.ID)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateSucceeded, stored.State, "the record is written")
	require.NoError(t, s.Extend(ctx, second, time.Minute), "the job of the newer delivery is untouched")
	require.NoError(t, s.Ack(ctx, second))
}

// A Complete that stores a record that is not final leaves the job leased.
func TestCompleteNotFinalKeepsJob(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := t.Context()
	rec, l := accepted(t, s, time.Minute)
	got, err := s.Complete(ctx, l, func(r *asyncreq.Record) error {
		r.State = asyncreq.StatePending
		r.Attempts = 1
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 1, got.Attempts)
	stored, err := s.Get(ctx, rec.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, stored.Attempts, "the record is written")
	require.NoError(t, s.Extend(ctx, l, time.Minute), "the job is untouched")
	require.NoError(t, s.Ack(ctx, l))
}

// A Complete whose fn fails writes nothing and leaves the job leased.
func TestCompleteFnErrorWritesNothing(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := t.Context()
	rec, l := accepted(t, s, time.Minute)
	refused := errors.New("refused")
	_, err := s.Complete(ctx, l, func(r *asyncreq.Record) error {
		_ = succeed(r)
		return refused
	})
	require.ErrorIs(t, err, refused)
	stored, err := s.Get(ctx, rec.ID)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StatePending, stored.State, "nothing is written")
	require.NoError(t, s.Ack(ctx, l), "the job is untouched")

	_, err = s.Complete(ctx, nil, succeed)
	require.ErrorIs(t, err, asyncreq.ErrLeaseLost)
}

// Completes of many leases at once share statements, each settling its
// own lease only.
func TestCompleteConcurrent(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := t.Context()
	const n = 40
	for range n {
		_, err := s.Accept(ctx, testRecord("", "", []byte("x")))
		require.NoError(t, err)
	}
	ls, err := s.DequeueBatch(ctx, n, time.Minute)
	require.NoError(t, err)
	require.Len(t, ls, n)
	errs := make(chan error, n)
	for i, l := range ls {
		go func() {
			_, err := s.Complete(ctx, l, func(r *asyncreq.Record) error {
				if i%2 == 0 {
					return succeed(r)
				}
				r.Attempts = 1 // not final: the lease stays
				return nil
			})
			errs <- err
		}()
	}
	for range ls {
		require.NoError(t, <-errs)
	}
	for i, l := range ls {
		if i%2 == 0 {
			require.ErrorIs(t, s.Ack(ctx, l), asyncreq.ErrLeaseLost, "a final Complete settles its lease")
		} else {
			require.NoError(t, s.Ack(ctx, l), "a Complete that is not final keeps its lease")
		}
	}
}

// A record changed by another process after this Backend cached it (here,
// at the dequeue) is updated on its current value: fn's error on the
// stale copy is not the answer, and the other process's change is kept.
func TestUpdateStaleCache(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 8)
	schema := newSchema(t, pool)
	a := newStoreOn(t, pool, schema, &postgres.Options{Queue: "shared"})
	// b reads what a stored at once, not once a's notification arrives:
	// without the poll cache, its Get reads the database.
	b := newStoreOn(t, pool, schema, &postgres.Options{Queue: "shared", PollCacheAge: -1})
	ctx := t.Context()
	rec, l := accepted(t, a, time.Minute) // a caches the record

	_, err := b.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.LeaseToken = "b"
		r.CancelRequested = true
		return nil
	})
	require.NoError(t, err)

	errStale := errors.New("fn saw a stale record")
	calls := 0
	got, err := a.Complete(ctx, l, func(r *asyncreq.Record) error {
		calls++
		if r.LeaseToken != "b" {
			return errStale
		}
		return succeed(r)
	})
	require.NoError(t, err, "fn's error on a stale cached copy must not be the answer")
	assert.Equal(t, 2, calls, "fn runs on the cached copy, then on the record as read")
	assert.True(t, got.CancelRequested)
	stored, err := b.Get(ctx, rec.ID)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateSucceeded, stored.State)
	assert.True(t, stored.CancelRequested, "the other process's change is kept")
	require.ErrorIs(t, a.Ack(ctx, l), asyncreq.ErrLeaseLost, "the lease was settled")
}

// An update that changes the request's fields, which updates otherwise
// leave unsent, writes them; one that changes nothing of them keeps them.
func TestUpdateRequestFields(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := t.Context()
	rec := testRecord("", "", []byte("body"))
	rec.Header = http.Header{"X-A": {"1"}}
	_, err := s.Accept(ctx, rec)
	require.NoError(t, err)

	created := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	want, err := s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.Header = http.Header{"X-B": {"2", "3"}}
		r.Method, r.URL, r.ContentType, r.BodyHash = "PUT", "/other", "text/plain", "h"
		r.Body = []byte("new body")
		r.CreatedAt, r.Retention, r.TombstoneTTL = created, time.Minute, time.Second
		return nil
	})
	require.NoError(t, err)
	got, err := s.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, want, got, "every changed request field is written")

	want, err = s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateRunning
		r.Attempts = 1
		return nil
	})
	require.NoError(t, err)
	got, err = s.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, want, got)
	assert.Equal(t, http.Header{"X-B": {"2", "3"}}, got.Header, "unchanged request fields are kept")
	assert.Equal(t, []byte("new body"), got.Body)

	_, err = s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.Header = nil
		return nil
	})
	require.NoError(t, err)
	got, err = s.Get(ctx, rec.ID)
	require.NoError(t, err)
	assert.Nil(t, got.Header, "a header removed is written")
}

// Deleting a record makes an Update of its cached copy find it gone.
func TestUpdateAfterDeleteElsewhere(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 8)
	schema := newSchema(t, pool)
	a := newStoreOn(t, pool, schema, &postgres.Options{Queue: "shared"})
	b := newStoreOn(t, pool, schema, &postgres.Options{Queue: "shared"})
	ctx := t.Context()
	rec, l := accepted(t, a, time.Minute)
	require.NoError(t, b.Delete(ctx, rec.ID, true))
	_, err := a.Complete(ctx, l, succeed)
	require.ErrorIs(t, err, asyncreq.ErrGone)
	require.NoError(t, a.Ack(context.Background(), l), "the job is untouched")
}
