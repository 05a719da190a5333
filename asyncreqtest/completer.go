package asyncreqtest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// testCompleter checks the asyncreq.Completer contract of a Backend that
// implements it; it skips every case otherwise.
func testCompleter(t *testing.T, newBackend func(t *testing.T) asyncreq.Backend, opts *Options) {
	t.Helper()
	k := &capKit{cfg: newConfig(t, opts), newBackend: newBackend}
	runGroups(t, k.cfg, []group{
		{"Complete", []testCase{
			{"FinalRecordSettlesLease", k.completeFinal},
			{"NotFinalRecordKeepsLease", k.completeNotFinal},
			{"FnErrorStoresAndSettlesNothing", k.completeFnError},
			{"StaleLeaseStillWritesRecord", k.completeStaleLease},
			{"MissingRecordIsNotFound", k.completeMissing},
		}},
	})
}

// capKit runs the cases of an optional interface of a Backend (Completer,
// Claimer).
type capKit struct {
	cfg        config
	newBackend func(t *testing.T) asyncreq.Backend
}

// implementing returns a fresh Backend of k as C, skipping t unless it
// implements C.
func implementing[C any](t *testing.T, k *capKit) (asyncreq.Backend, C) {
	t.Helper()
	b := k.newBackend(t)
	c, ok := b.(C)
	if !ok {
		t.Skipf("%T does not implement %v", b, reflect.TypeFor[C]())
	}
	return b, c
}

// backend returns a fresh Backend, as Store, Queue and Completer, skipping
// t unless it implements asyncreq.Completer.
func (k *capKit) backend(t *testing.T) (asyncreq.Store, asyncreq.Queue, asyncreq.Completer) {
	t.Helper()
	b, c := implementing[asyncreq.Completer](t, k)
	return b, b, c
}

// leased returns a fresh backend's Store, Queue and Completer, and a lease
// on a new pending record.
func (k *capKit) leased(t *testing.T, ctx context.Context) (asyncreq.Store, asyncreq.Queue, asyncreq.Completer, *asyncreq.Lease) {
	t.Helper()
	s, q, c := k.backend(t)
	rec := newRecord("", "")
	create(t, ctx, s, rec)
	require.NoError(t, q.Enqueue(ctx, rec.ID, 0))
	l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	require.Equal(t, rec.ID, l.ID)
	return s, q, c, l
}

// succeed makes rec final as a worker's successful outcome does.
func succeed(rec *asyncreq.Record) error {
	now := testTime()
	rec.State = asyncreq.StateSucceeded
	rec.Result = &asyncreq.Result{StatusCode: 200, ContentType: "text/plain", Body: []byte("done")}
	rec.LeaseToken = ""
	rec.UpdatedAt = now
	rec.ExpiresAt = now.Add(rec.Retention)
	return nil
}

func (k *capKit) completeFinal(t *testing.T, ctx context.Context) {
	s, q, c, l := k.leased(t, ctx)
	got, err := c.Complete(ctx, l, succeed)
	require.NoError(t, err)
	require.NotNil(t, got, "Complete must return the stored record")
	assert.Equal(t, asyncreq.StateSucceeded, got.State)

	stored, err := s.Get(ctx, l.ID)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateSucceeded, stored.State, "the outcome must be stored")
	require.NotNil(t, stored.Result)
	assert.Equal(t, []byte("done"), stored.Result.Body)
	assert.ErrorIs(t, q.Ack(ctx, l), asyncreq.ErrLeaseLost, "Ack after a Complete that stored a final record: the lease must be settled")
	requireEmpty(t, ctx, q, k.cfg.leaseTTL, 300*time.Millisecond, "a request completed final must not be delivered again")
}

func (k *capKit) completeNotFinal(t *testing.T, ctx context.Context) {
	s, q, c, l := k.leased(t, ctx)
	got, err := c.Complete(ctx, l, func(rec *asyncreq.Record) error {
		rec.State = asyncreq.StateRunning
		rec.Attempts = 1
		rec.LeaseToken = "token"
		return nil
	})
	require.NoError(t, err)
	require.NotNil(t, got)
	stored, err := s.Get(ctx, l.ID)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateRunning, stored.State, "the update must be stored")
	assert.Equal(t, "token", stored.LeaseToken)
	require.NoError(t, q.Extend(ctx, l, k.cfg.leaseTTL), "a Complete that stored a record that is not final must leave the lease held")
	require.NoError(t, q.Ack(ctx, l))
}

func (k *capKit) completeFnError(t *testing.T, ctx context.Context) {
	s, q, c, l := k.leased(t, ctx)
	refused := &errFromFn{id: l.ID}
	_, err := c.Complete(ctx, l, func(rec *asyncreq.Record) error {
		_ = succeed(rec)
		return refused
	})
	require.ErrorIs(t, err, refused, "Complete must return fn's error")
	stored, err := s.Get(ctx, l.ID)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StatePending, stored.State, "nothing of a refused update may be stored")
	require.NoError(t, q.Ack(ctx, l), "a refused Complete must leave the lease held")
}

func (k *capKit) completeStaleLease(t *testing.T, ctx context.Context) {
	s, q, c, l := k.leased(t, ctx)
	require.NoError(t, q.Nack(ctx, l, 0))
	got, err := c.Complete(ctx, l, succeed)
	require.NoError(t, err, "Complete with a lease that no longer holds must still store the record")
	require.NotNil(t, got)
	stored, err := s.Get(ctx, l.ID)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateSucceeded, stored.State)
	again := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	assert.Equal(t, l.ID, again.ID, "the entry handed back before the Complete must still be delivered: a stale lease settles nothing")
	require.NoError(t, q.Ack(ctx, again))
}

func (k *capKit) completeMissing(t *testing.T, ctx context.Context) {
	_, q, c := k.backend(t)
	id := asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, id, 0))
	l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	called := false
	_, err := c.Complete(ctx, l, func(*asyncreq.Record) error {
		called = true
		return nil
	})
	require.True(t, errors.Is(err, asyncreq.ErrNotFound), "Complete of an id without a record: want ErrNotFound, got %v", err)
	assert.False(t, called, "fn must not be called without a record")
	require.NoError(t, q.Ack(ctx, l), "a Complete without a record must leave the lease held")
}
