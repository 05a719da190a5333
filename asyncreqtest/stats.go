package asyncreqtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// statsSlack is how far a backend's clock (a database or broker on the same
// host) and the resolution of its timestamps may put QueueStats times from
// the kit's own readings.
const statsSlack = 500 * time.Millisecond

// statsCases are the asyncreq.QueueStater cases, run by TestQueue as the
// group Stats. Each is skipped unless the Queue implements it.
func (k *queueKit) statsCases() []testCase {
	return []testCase{
		{"EmptyIsZero", k.statsEmpty},
		{"EnqueuedArePendingOldestFirst", k.statsPending},
		{"LeasedIsRunning", k.statsRunning},
		{"DelayedAndNackedWithDelayAreDelayed", k.statsDelayed},
		{"DueDelayedIsPendingWithoutDequeue", k.statsDue},
		{"AckedIsGone", k.statsAcked},
		{"FinalRecordsByState", k.statsFinal},
	}
}

// stater returns a fresh Queue as an asyncreq.QueueStater, or skips t.
func (k *queueKit) stater(t *testing.T) (asyncreq.Queue, asyncreq.QueueStater) {
	t.Helper()
	q := k.newQueue(t)
	st, ok := q.(asyncreq.QueueStater)
	if !ok {
		t.Skipf("%T does not implement asyncreq.QueueStater", q)
	}
	return q, st
}

// dequeuingStater is stater for a case that dequeues: it also skips t when
// the Queue's consumer prefetches (Options.StatsPrefetch).
func (k *queueKit) dequeuingStater(t *testing.T) (asyncreq.Queue, asyncreq.QueueStater) {
	t.Helper()
	if k.cfg.statsPrefetch != "" {
		t.Skipf("the Queue's consumer prefetches: %s", k.cfg.statsPrefetch)
	}
	return k.stater(t)
}

// queueCounts is the part of QueueStats that the Queue cases compare.
type queueCounts struct{ Pending, Delayed, Running int64 }

func (c queueCounts) String() string {
	return fmt.Sprintf("pending %d, delayed %d, running %d", c.Pending, c.Delayed, c.Running)
}

// requireCounts waits until st reports want, ignoring the counts st
// reports as asyncreq.Uncounted (Pending must be counted), and returns the
// last snapshot. With Options.StatsTotalOnly it compares the sums of the
// counts only. It waits because a backend may read engine counters that
// follow a change by a moment.
func (k *queueKit) requireCounts(t *testing.T, ctx context.Context, st asyncreq.QueueStater, want queueCounts, msg string) asyncreq.QueueStats {
	t.Helper()
	var (
		last asyncreq.QueueStats
		got  queueCounts
	)
	eventually(t, ctx, patience, 20*time.Millisecond, func() bool {
		s, err := st.QueueStats(ctx)
		require.NoError(t, err, "Stats")
		require.NotEqual(t, asyncreq.Uncounted, s.Pending, "every QueueStater counts Pending")
		for _, n := range []int64{s.Pending, s.Delayed, s.Running, s.Succeeded, s.Failed, s.Canceled} {
			require.GreaterOrEqual(t, n, asyncreq.Uncounted, "a count is never below Uncounted: %+v", s)
		}
		last = s
		got = queueCounts{s.Pending, s.Delayed, s.Running}
		if k.cfg.statsTotal != "" {
			return max(got.Pending, 0)+max(got.Delayed, 0)+max(got.Running, 0) == want.Pending+want.Delayed+want.Running
		}
		if s.Delayed == asyncreq.Uncounted {
			got.Delayed = want.Delayed
		}
		if s.Running == asyncreq.Uncounted {
			got.Running = want.Running
		}
		return got == want
	}, func() string {
		if k.cfg.statsTotal != "" {
			return fmt.Sprintf("%s: want %v in total (%s), Stats reports %v", msg, want, k.cfg.statsTotal, got)
		}
		return fmt.Sprintf("%s: want %v, Stats reports %v", msg, want, got)
	})
	return last
}

func (k *queueKit) statsEmpty(t *testing.T, ctx context.Context) {
	_, st := k.stater(t)
	before := time.Now()
	s := k.requireCounts(t, ctx, st, queueCounts{}, "an empty queue")
	require.True(t, s.OldestPending.IsZero(), "OldestPending of an empty queue is the zero time, got %v", s.OldestPending)
	require.Zero(t, s.OldestPendingAge(), "OldestPendingAge of an empty queue")
	require.WithinRange(t, s.At, before.Add(-statsSlack), time.Now().Add(statsSlack), "At is when the snapshot was taken")
	for name, n := range map[string]int64{"Succeeded": s.Succeeded, "Failed": s.Failed, "Canceled": s.Canceled} {
		if n != asyncreq.Uncounted {
			require.Zero(t, n, "%s of an empty backend", name)
		}
	}
}

func (k *queueKit) statsPending(t *testing.T, ctx context.Context) {
	q, st := k.stater(t)
	const n = 5
	first := time.Now()
	require.NoError(t, q.Enqueue(ctx, asyncreq.NewID(), 0))
	firstDone := time.Now()
	// Far enough apart that the oldest entry is told from the newest.
	sleep(ctx, time.Second)
	for range n - 1 {
		require.NoError(t, q.Enqueue(ctx, asyncreq.NewID(), 0))
	}
	s := k.requireCounts(t, ctx, st, queueCounts{Pending: n}, "after 5 enqueues")
	if s.OldestPending.IsZero() {
		t.Logf("%T does not tell OldestPending", q)
		return
	}
	require.WithinRange(t, s.OldestPending, first.Add(-statsSlack), firstDone.Add(statsSlack),
		"OldestPending is when the first entry was enqueued")
	require.GreaterOrEqual(t, s.OldestPendingAge(), time.Second-statsSlack, "OldestPendingAge")
}

func (k *queueKit) statsRunning(t *testing.T, ctx context.Context) {
	q, st := k.dequeuingStater(t)
	require.NoError(t, q.Enqueue(ctx, asyncreq.NewID(), 0))
	require.NoError(t, q.Enqueue(ctx, asyncreq.NewID(), 0))
	k.requireCounts(t, ctx, st, queueCounts{Pending: 2}, "after 2 enqueues")
	l := dequeueWithin(t, ctx, q, time.Minute, patience)
	k.requireCounts(t, ctx, st, queueCounts{Pending: 1, Running: 1}, "after a Dequeue")
	require.NoError(t, q.Nack(ctx, l, 0))
	k.requireCounts(t, ctx, st, queueCounts{Pending: 2}, "after a Nack without delay")
}

func (k *queueKit) statsDelayed(t *testing.T, ctx context.Context) {
	q, st := k.dequeuingStater(t)
	require.NoError(t, q.Enqueue(ctx, asyncreq.NewID(), time.Hour))
	require.NoError(t, q.Enqueue(ctx, asyncreq.NewID(), 0))
	s := k.requireCounts(t, ctx, st, queueCounts{Pending: 1, Delayed: 1}, "after an Enqueue with delay and one without")
	if !s.OldestPending.IsZero() {
		require.WithinDuration(t, time.Now(), s.OldestPending, patience, "a delayed entry does not count for OldestPending")
	}
	l := dequeueWithin(t, ctx, q, time.Minute, patience)
	k.requireCounts(t, ctx, st, queueCounts{Running: 1, Delayed: 1}, "after a Dequeue")
	require.NoError(t, q.Nack(ctx, l, time.Hour))
	s = k.requireCounts(t, ctx, st, queueCounts{Delayed: 2}, "after a Nack with delay")
	require.True(t, s.OldestPending.IsZero(), "OldestPending with no entry due is the zero time, got %v", s.OldestPending)
}

func (k *queueKit) statsDue(t *testing.T, ctx context.Context) {
	q, st := k.stater(t)
	const delay = 300 * time.Millisecond
	enqueued := time.Now()
	require.NoError(t, q.Enqueue(ctx, asyncreq.NewID(), delay))
	// No Dequeue runs: a backend that moves due entries only when one does
	// still counts them as pending.
	sleep(ctx, delay+200*time.Millisecond)
	s := k.requireCounts(t, ctx, st, queueCounts{Pending: 1}, "after its delay, with no Dequeue")
	if !s.OldestPending.IsZero() {
		require.WithinRange(t, s.OldestPending, enqueued.Add(delay-statsSlack), time.Now(),
			"OldestPending of an entry that was delayed is when it fell due")
	}
}

func (k *queueKit) statsAcked(t *testing.T, ctx context.Context) {
	q, st := k.dequeuingStater(t)
	require.NoError(t, q.Enqueue(ctx, asyncreq.NewID(), 0))
	l := dequeueWithin(t, ctx, q, time.Minute, patience)
	k.requireCounts(t, ctx, st, queueCounts{Running: 1}, "after a Dequeue")
	require.NoError(t, q.Ack(ctx, l))
	k.requireCounts(t, ctx, st, queueCounts{}, "after an Ack")
}

func (k *queueKit) statsFinal(t *testing.T, ctx context.Context) {
	q, st := k.stater(t)
	s, err := st.QueueStats(ctx)
	require.NoError(t, err, "Stats")
	if s.Succeeded == asyncreq.Uncounted {
		t.Skipf("%T does not count records by final state", q)
	}
	store, ok := q.(asyncreq.Store)
	if !ok {
		t.Fatalf("%T counts records by final state but is not a Store", q)
	}
	states := []asyncreq.State{
		asyncreq.StateSucceeded, asyncreq.StateSucceeded, asyncreq.StateSucceeded,
		asyncreq.StateFailed, asyncreq.StateFailed, asyncreq.StateCanceled,
		asyncreq.StatePending, asyncreq.StateRunning,
	}
	ids := make([]string, len(states))
	for i, state := range states {
		rec := newRecord("", "")
		ids[i] = rec.ID
		_, err := store.Create(ctx, rec)
		require.NoError(t, err, "Create")
		_, err = store.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
			r.State = state
			if state.Final() {
				r.ExpiresAt = time.Now().Add(time.Hour)
			}
			return nil
		})
		require.NoError(t, err, "Update to %s", state)
	}
	// A record leaves its state's count when it changes state or goes.
	_, err = store.Update(ctx, ids[0], func(r *asyncreq.Record) error {
		r.State = asyncreq.StateFailed
		return nil
	})
	require.NoError(t, err, "Update from succeeded to failed")
	require.NoError(t, store.Delete(ctx, ids[1], false), "Delete")

	type finals struct{ Succeeded, Failed, Canceled int64 }
	want := finals{1, 3, 1}
	var got finals
	eventually(t, ctx, patience, 20*time.Millisecond, func() bool {
		s, err := st.QueueStats(ctx)
		require.NoError(t, err, "Stats")
		got = finals{s.Succeeded, s.Failed, s.Canceled}
		return got == want
	}, func() string { return fmt.Sprintf("want %+v, Stats reports %+v", want, got) })
}
