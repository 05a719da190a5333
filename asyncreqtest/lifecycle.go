package asyncreqtest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// The Lifecycle group of TestStore drives records through the state
// transitions of asyncreq (the methods of *asyncreq.Record that the
// Handler and the Worker pass to Store.Update: Claim, SetProgress,
// Succeed, Fail, Retry, HandBack, Cancel, RequestCancel, MarkEnqueued)
// and checks, after each, that the Store returned and kept every field
// the transition wrote, and nothing at all when the transition refused.
// A Store that maps fields onto columns or hash fields of its own proves
// here that it keeps each one a real request's life writes.

func (k *storeKit) lifecycleCases() []testCase {
	return []testCase{
		{"ClaimRunsAndProgressIsFencedByToken", k.lifecycleClaim},
		{"SucceedStoresResultAndEndsTheAttempt", k.lifecycleSucceed},
		{"FailStoresProblem", k.lifecycleFail},
		{"RetryAndHandBackReturnToPending", k.lifecycleRetry},
		{"ClaimOfUsedUpAttemptsFails", k.lifecycleUsedUp},
		{"RequestCancelOfPendingCancels", k.lifecycleCancelPending},
		{"RequestCancelOfRunningIsSeenByTheAttempt", k.lifecycleCancelRunning},
		{"MarkEnqueued", k.lifecycleMarkEnqueued},
		{"CallbackDeliveryIsKept", k.lifecycleCallback},
	}
}

// lifecycle is one record being moved through its states in a Store,
// with a clock that moves a second per transition.
type lifecycle struct {
	t   *testing.T
	ctx context.Context
	s   asyncreq.Store
	id  string
	now time.Time
}

// newLifecycle stores rec in s and returns its lifecycle.
func newLifecycle(t *testing.T, ctx context.Context, s asyncreq.Store, rec *asyncreq.Record) *lifecycle {
	t.Helper()
	create(t, ctx, s, rec)
	return &lifecycle{t: t, ctx: ctx, s: s, id: rec.ID, now: rec.UpdatedAt}
}

// tick returns the time of the next transition.
func (l *lifecycle) tick() time.Time {
	l.now = l.now.Add(time.Second)
	return l.now
}

// step applies the transition fn to the record through Store.Update and
// checks the outcome against fn applied to a copy of what Get returned
// before: when fn refuses, Update must return its error and the record
// must stay as it was; otherwise Update must return what fn left, and Get
// must read it back. step returns fn's error.
func (l *lifecycle) step(what string, fn func(*asyncreq.Record) error) error {
	t := l.t
	t.Helper()
	before, err := l.s.Get(l.ctx, l.id)
	require.NoError(t, err, "%s: Get before the transition", what)
	want := before.Clone()
	wantErr := fn(want)

	got, err := l.s.Update(l.ctx, l.id, fn)
	after, gerr := l.s.Get(l.ctx, l.id)
	require.NoError(t, gerr, "%s: Get after the transition", what)
	if wantErr != nil {
		require.ErrorIs(t, err, wantErr, "%s: Update must return the error of its function", what)
		requireSameRecord(t, before, after, "%s: a transition that refused must store nothing", what)
		return wantErr
	}
	require.NoError(t, err, "%s: Update", what)
	requireSameRecord(t, want, got, "%s: Update must return every field the transition wrote", what)
	requireSameRecord(t, want, after, "%s: Get must read back every field the transition wrote", what)
	return nil
}

// must is step for a transition that must not refuse.
func (l *lifecycle) must(what string, fn func(*asyncreq.Record) error) *asyncreq.Record {
	l.t.Helper()
	require.NoError(l.t, l.step(what, fn), what)
	return l.get()
}

// get returns the stored record.
func (l *lifecycle) get() *asyncreq.Record {
	l.t.Helper()
	rec, err := l.s.Get(l.ctx, l.id)
	require.NoError(l.t, err)
	return rec
}

// claim claims the record under token, allowing max attempts.
func (l *lifecycle) claim(token string, max int) *asyncreq.Record {
	l.t.Helper()
	now := l.tick()
	return l.must("Claim", func(r *asyncreq.Record) error { return r.Claim(token, max, now) })
}

// lifecycleResult is a result with every field set, bytes that are not
// UTF-8 included.
func lifecycleResult() *asyncreq.Result {
	return &asyncreq.Result{
		StatusCode:  http.StatusCreated,
		ContentType: "application/octet-stream",
		Header:      http.Header{"X-Result": {"a", "b"}, "Cache-Control": {"max-age=5"}},
		Body:        []byte{0x00, 0xff, 0xfe, 'o', 'k', 0xc3, 0x28},
	}
}

// lifecycleProblem is a problem with every field set.
func lifecycleProblem(status int, detail string) *asyncreq.Problem {
	return &asyncreq.Problem{
		Type:     "https://example.com/problems/" + http.StatusText(status),
		Title:    http.StatusText(status),
		Status:   status,
		Detail:   detail + ` with "quotes", <tags> & é`,
		Instance: "/jobs/instance",
	}
}

func (k *storeKit) lifecycleClaim(t *testing.T, ctx context.Context) {
	l := newLifecycle(t, ctx, k.newStore(t), newRecord("owner", "claim"))
	token, other := asyncreq.NewID(), asyncreq.NewID()

	rec := l.claim(token, 3)
	require.Equal(t, asyncreq.StateRunning, rec.State)
	require.Equal(t, 1, rec.Attempts)
	require.Equal(t, token, rec.LeaseToken)
	require.True(t, rec.Enqueued, "a claimed record came from the Queue and is marked enqueued")

	now := l.tick()
	rec = l.must("SetProgress", func(r *asyncreq.Record) error {
		return r.SetProgress(token, asyncreq.Progress{Percent: 40, Message: "étape 2/5"}, now)
	})
	require.Equal(t, &asyncreq.Progress{Percent: 40, Message: "étape 2/5"}, rec.Progress)

	now = l.tick()
	err := l.step("SetProgress with another token", func(r *asyncreq.Record) error {
		return r.SetProgress(other, asyncreq.Progress{Percent: 90}, now)
	})
	require.ErrorIs(t, err, asyncreq.ErrLeaseLost)

	// A lease that ran out is delivered again; the new attempt takes the
	// record over and fences the old one off.
	rec = l.claim(other, 3)
	require.Equal(t, 2, rec.Attempts)
	require.Nil(t, rec.Progress, "a new attempt starts without progress")
	now = l.tick()
	err = l.step("Succeed with the superseded token", func(r *asyncreq.Record) error {
		return r.Succeed(token, lifecycleResult(), now)
	})
	require.ErrorIs(t, err, asyncreq.ErrLeaseLost)
}

func (k *storeKit) lifecycleSucceed(t *testing.T, ctx context.Context) {
	l := newLifecycle(t, ctx, k.newStore(t), newRecord("", ""))
	token := asyncreq.NewID()
	l.claim(token, 3)
	now := l.tick()
	l.must("SetProgress", func(r *asyncreq.Record) error {
		return r.SetProgress(token, asyncreq.Progress{Percent: 99}, now)
	})

	now = l.tick()
	rec := l.must("Succeed", func(r *asyncreq.Record) error { return r.Succeed(token, lifecycleResult(), now) })
	require.Equal(t, asyncreq.StateSucceeded, rec.State)
	require.Empty(t, rec.LeaseToken, "a final record is no attempt's")
	require.Nil(t, rec.Progress, "a final record shows no progress")
	require.False(t, rec.ExpiresAt.IsZero(), "a final record expires")

	now = l.tick()
	require.ErrorIs(t, l.step("Succeed again", func(r *asyncreq.Record) error {
		return r.Succeed(token, &asyncreq.Result{Body: []byte("twice")}, now)
	}), asyncreq.ErrLeaseLost)
	require.ErrorIs(t, l.step("Claim of a final record", func(r *asyncreq.Record) error {
		return r.Claim(asyncreq.NewID(), 3, now)
	}), asyncreq.ErrFinished)
	require.ErrorIs(t, l.step("RequestCancel of a final record", func(r *asyncreq.Record) error {
		return r.RequestCancel("", now)
	}), asyncreq.ErrFinished)
}

func (k *storeKit) lifecycleFail(t *testing.T, ctx context.Context) {
	l := newLifecycle(t, ctx, k.newStore(t), newRecord("", ""))
	token := asyncreq.NewID()
	l.claim(token, 3)
	now := l.tick()
	p := lifecycleProblem(http.StatusUnprocessableEntity, "the input cannot be processed")
	rec := l.must("Fail", func(r *asyncreq.Record) error { return r.Fail(token, p, now) })
	require.Equal(t, asyncreq.StateFailed, rec.State)
	require.Equal(t, p, rec.Error)
	require.Empty(t, rec.LeaseToken)
}

func (k *storeKit) lifecycleRetry(t *testing.T, ctx context.Context) {
	l := newLifecycle(t, ctx, k.newStore(t), newRecord("", ""))
	first, second, third := asyncreq.NewID(), asyncreq.NewID(), asyncreq.NewID()
	l.claim(first, 3)
	now := l.tick()
	l.must("SetProgress", func(r *asyncreq.Record) error {
		return r.SetProgress(first, asyncreq.Progress{Percent: 10}, now)
	})

	now = l.tick()
	p := lifecycleProblem(http.StatusInternalServerError, "attempt 1 of 3 failed; retrying")
	rec := l.must("Retry", func(r *asyncreq.Record) error { return r.Retry(first, p, now) })
	require.Equal(t, asyncreq.StatePending, rec.State)
	require.Equal(t, 1, rec.Attempts, "a retried attempt stays counted")
	require.Empty(t, rec.LeaseToken)
	require.Nil(t, rec.Progress)
	require.Equal(t, p, rec.Error, "the failure shows while the request waits")
	require.True(t, rec.ExpiresAt.IsZero(), "a pending record does not expire")

	rec = l.claim(second, 3)
	require.Equal(t, 2, rec.Attempts)
	now = l.tick()
	rec = l.must("HandBack", func(r *asyncreq.Record) error { return r.HandBack(second, now) })
	require.Equal(t, asyncreq.StatePending, rec.State)
	require.Equal(t, 1, rec.Attempts, "a handed-back attempt is not spent")
	require.Equal(t, p, rec.Error, "the earlier failure still shows")
	require.Empty(t, rec.LeaseToken)

	require.ErrorIs(t, l.step("HandBack of a pending record", func(r *asyncreq.Record) error {
		return r.HandBack(second, now)
	}), asyncreq.ErrLeaseLost)

	l.claim(third, 3)
	now = l.tick()
	rec = l.must("Succeed after a retry", func(r *asyncreq.Record) error { return r.Succeed(third, lifecycleResult(), now) })
	require.Nil(t, rec.Error, "a success clears the failure of an earlier attempt")
}

func (k *storeKit) lifecycleUsedUp(t *testing.T, ctx context.Context) {
	rec := newRecord("", "")
	rec.Attempts = 2
	l := newLifecycle(t, ctx, k.newStore(t), rec)
	got := l.claim(asyncreq.NewID(), 2)
	require.Equal(t, asyncreq.StateFailed, got.State, "every attempt was started and none recorded")
	require.NotNil(t, got.Error)
	require.Equal(t, 2, got.Attempts)
	require.Empty(t, got.LeaseToken)
}

func (k *storeKit) lifecycleCancelPending(t *testing.T, ctx context.Context) {
	l := newLifecycle(t, ctx, k.newStore(t), newRecord("alice", "cancel"))
	now := l.tick()
	require.ErrorIs(t, l.step("RequestCancel by another owner", func(r *asyncreq.Record) error {
		return r.RequestCancel("mallory", now)
	}), asyncreq.ErrNotFound)

	now = l.tick()
	rec := l.must("RequestCancel", func(r *asyncreq.Record) error { return r.RequestCancel("alice", now) })
	require.Equal(t, asyncreq.StateCanceled, rec.State)
	require.NotNil(t, rec.Error)
	require.False(t, rec.ExpiresAt.IsZero())

	now = l.tick()
	require.ErrorIs(t, l.step("Claim of a canceled record", func(r *asyncreq.Record) error {
		return r.Claim(asyncreq.NewID(), 3, now)
	}), asyncreq.ErrFinished)
}

func (k *storeKit) lifecycleCancelRunning(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	for _, end := range []struct {
		name string
		fn   func(token string, now time.Time) func(*asyncreq.Record) error
	}{
		{"Cancel", func(token string, now time.Time) func(*asyncreq.Record) error {
			return func(r *asyncreq.Record) error { return r.Cancel(token, now) }
		}},
		{"Retry", func(token string, now time.Time) func(*asyncreq.Record) error {
			return func(r *asyncreq.Record) error {
				return r.Retry(token, lifecycleProblem(http.StatusInternalServerError, "processing timed out"), now)
			}
		}},
		{"HandBack", func(token string, now time.Time) func(*asyncreq.Record) error {
			return func(r *asyncreq.Record) error { return r.HandBack(token, now) }
		}},
		{"Claim", func(_ string, now time.Time) func(*asyncreq.Record) error {
			return func(r *asyncreq.Record) error { return r.Claim(asyncreq.NewID(), 3, now) }
		}},
	} {
		l := newLifecycle(t, ctx, s, newRecord("bob", ""))
		token := asyncreq.NewID()
		l.claim(token, 3)
		now := l.tick()
		rec := l.must("RequestCancel of a running record", func(r *asyncreq.Record) error { return r.RequestCancel("bob", now) })
		require.Equal(t, asyncreq.StateRunning, rec.State, "a running record runs until its attempt stops")
		require.True(t, rec.CancelRequested)

		now = l.tick()
		rec = l.must(end.name+" of a record whose cancel was requested", end.fn(token, now))
		require.Equal(t, asyncreq.StateCanceled, rec.State, "%s after a cancel was requested", end.name)
		require.NotNil(t, rec.Error)
		require.Empty(t, rec.LeaseToken)
	}
}

func (k *storeKit) lifecycleMarkEnqueued(t *testing.T, ctx context.Context) {
	s := k.newStore(t)
	rec := newRecord("", "")
	rec.CreatedAt = rec.CreatedAt.Add(-time.Minute)
	l := newLifecycle(t, ctx, s, rec)
	got := l.must("MarkEnqueued", (*asyncreq.Record).MarkEnqueued)
	require.True(t, got.Enqueued)
	if lister, ok := s.(asyncreq.UnenqueuedLister); ok {
		ids, err := lister.ListUnenqueued(ctx, testTime().Add(time.Minute), 100)
		require.NoError(t, err)
		require.NotContains(t, ids, rec.ID, "a record marked enqueued is not listed as unenqueued")
	}
}

func (k *storeKit) lifecycleCallback(t *testing.T, ctx context.Context) {
	rec := newRecord("", "")
	rec.Callback = &asyncreq.Callback{URL: "https://hooks.example.com/done", StatusURL: "/jobs/" + rec.ID + "/status", ResultURL: "/jobs/" + rec.ID}
	l := newLifecycle(t, ctx, k.newStore(t), rec)
	now := l.tick()
	require.Error(t, l.step("CallbackDelivered before the request is final", func(r *asyncreq.Record) error {
		return r.CallbackDelivered(now)
	}), "a callback is not due before its request is final")
	token := asyncreq.NewID()
	l.claim(token, 3)
	now = l.tick()
	got := l.must("Succeed", func(r *asyncreq.Record) error { return r.Succeed(token, lifecycleResult(), now) })
	require.Equal(t, asyncreq.CallbackPending, got.Callback.State, "a final record's callback is pending")
	now = l.tick()
	got = l.must("CallbackRetry", func(r *asyncreq.Record) error { return r.CallbackRetry("the receiver answered 503", now) })
	require.Equal(t, asyncreq.CallbackRetrying, got.Callback.State)
	require.Equal(t, 1, got.Callback.Attempts)
	now = l.tick()
	got = l.must("CallbackDelivered", func(r *asyncreq.Record) error { return r.CallbackDelivered(now) })
	require.Equal(t, asyncreq.CallbackDelivered, got.Callback.State)
	require.Equal(t, 2, got.Callback.Attempts)
	now = l.tick()
	require.Error(t, l.step("CallbackFail after delivery", func(r *asyncreq.Record) error {
		return r.CallbackFail("late", now)
	}), "a delivered callback is settled")
}
