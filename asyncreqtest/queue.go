package asyncreqtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// TestQueue checks that the Queues newQueue makes keep the asyncreq.Queue
// contract, and the BatchDequeuer and QueueStater contracts when they
// implement them. Each case runs as a subtest of t with a fresh, empty
// Queue from newQueue.
//
// The cases use real time. Leases are asked for Options.LeaseTTL; the
// cases about lease expiry wait a few times that long, and are skipped
// when Options.NoLeaseExpiry is set. Delays are checked to within 100ms
// early, and a due entry must be delivered within a few seconds; a
// Dequeue waiting on an empty Queue must return within 500ms of an
// Enqueue.
func TestQueue(t *testing.T, newQueue func(t *testing.T) asyncreq.Queue, opts *Options) {
	t.Helper()
	k := &queueKit{cfg: newConfig(t, opts), newQueue: newQueue}
	runGroups(t, k.cfg, []group{
		{"Dequeue", []testCase{
			{"ReturnsEnqueuedIDWithDeliveryOne", k.dequeueReturnsID},
			{"DeliversEveryID", k.dequeueEveryID},
			{"BlocksUntilEnqueueAndReturnsPromptly", k.dequeueBlocks},
			{"ContextEndIsReturned", k.dequeueContext},
		}},
		{"Enqueue", []testCase{
			{"DelayIsHonored", k.enqueueDelay},
		}},
		{"Ack", []testCase{
			{"RemovesForGood", k.ackRemoves},
			{"SettledLeaseIsLost", k.ackSettled},
		}},
		{"Lease", []testCase{
			{"ExpiryRedeliversAndFencesOldLease", k.leaseExpiry},
			{"ExtendKeepsLeasePastTTL", k.leaseExtend},
		}},
		{"Nack", []testCase{
			{"RedeliversAfterDelayNotBefore", k.nackDelay},
			{"ZeroDelayRedeliversNow", k.nackNow},
		}},
		{"Context", []testCase{
			{"CanceledIsReturnedAndChangesNothing", k.contextCanceled},
		}},
		{"Concurrency", []testCase{
			{"ProducersAndConsumersDeliverEachIDOnce", k.concurrent},
		}},
		{"BatchDequeuer", []testCase{
			{"ReturnsAtMostMaxLeases", k.batch},
		}},
		{"Stats", k.statsCases()},
	})
}

type queueKit struct {
	cfg      config
	newQueue func(t *testing.T) asyncreq.Queue
}

// dequeueWithin dequeues from q with ttl, failing t unless a lease comes
// within timeout.
func dequeueWithin(t *testing.T, ctx context.Context, q asyncreq.Queue, ttl, timeout time.Duration) *asyncreq.Lease {
	t.Helper()
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l, err := q.Dequeue(dctx, ttl)
	require.NoError(t, err, "Dequeue must return a due id within %v", timeout)
	require.NotNil(t, l, "Dequeue returned a nil lease")
	return l
}

// requireEmpty fails t if Dequeue returns a lease within wait.
func requireEmpty(t *testing.T, ctx context.Context, q asyncreq.Queue, ttl, wait time.Duration, msg string) {
	t.Helper()
	dctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	l, err := q.Dequeue(dctx, ttl)
	if err == nil {
		t.Fatalf("%s: Dequeue returned %s (delivery %d) within %v", msg, l.ID, l.Delivery, wait)
	}
	require.ErrorIs(t, err, context.DeadlineExceeded, "%s: Dequeue on an empty queue must return its context's error", msg)
}

// dequeued is the outcome of a Dequeue run in the background.
type dequeued struct {
	l   *asyncreq.Lease
	err error
	at  time.Time
}

// goDequeue runs one Dequeue in the background and returns where its
// outcome arrives and how to cancel it. The Dequeue is canceled and waited
// for when t ends.
func goDequeue(t *testing.T, ctx context.Context, q asyncreq.Queue, ttl time.Duration) (<-chan dequeued, context.CancelFunc) {
	t.Helper()
	dctx, cancel := context.WithCancel(ctx)
	out := make(chan dequeued, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l, err := q.Dequeue(dctx, ttl)
		out <- dequeued{l, err, time.Now()}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return out, cancel
}

func (k *queueKit) dequeueReturnsID(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	id := asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, id, 0))
	l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	require.Equal(t, id, l.ID)
	require.Equal(t, 1, l.Delivery, "the first delivery of an entry has Delivery 1")
	require.NoError(t, q.Ack(ctx, l))
}

func (k *queueKit) dequeueEveryID(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	const n = 20
	want := make([]string, n)
	for i := range want {
		want[i] = asyncreq.NewID()
		require.NoError(t, q.Enqueue(ctx, want[i], 0))
	}
	var got []string
	for range n {
		l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
		require.Equal(t, 1, l.Delivery, "id %s", l.ID)
		got = append(got, l.ID)
		require.NoError(t, q.Ack(ctx, l))
	}
	require.ElementsMatch(t, want, got, "every enqueued id must be delivered once (in any order)")
	requireEmpty(t, ctx, q, k.cfg.leaseTTL, 300*time.Millisecond, "after every id was acked")
}

func (k *queueKit) dequeueBlocks(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	out, _ := goDequeue(t, ctx, q, k.cfg.leaseTTL)
	select {
	case r := <-out:
		t.Fatalf("Dequeue on an empty queue returned at once: lease %v, error %v", r.l, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	id := asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, id, 0))
	enqueued := time.Now()
	var r dequeued
	select {
	case r = <-out:
	case <-time.After(patience):
		t.Fatalf("a waiting Dequeue did not return within %v of an Enqueue", patience)
	}
	require.NoError(t, r.err)
	require.Equal(t, id, r.l.ID)
	require.Less(t, r.at.Sub(enqueued), soon, "a waiting Dequeue must return promptly after an Enqueue")
	require.NoError(t, q.Ack(ctx, r.l))
}

func (k *queueKit) dequeueContext(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := q.Dequeue(cctx, k.cfg.leaseTTL)
	require.ErrorIs(t, err, context.Canceled, "Dequeue with a canceled context")

	const wait = 200 * time.Millisecond
	dctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	start := time.Now()
	_, err = q.Dequeue(dctx, k.cfg.leaseTTL)
	require.ErrorIs(t, err, context.DeadlineExceeded, "Dequeue on an empty queue whose context times out")
	require.Less(t, time.Since(start), wait+soon, "Dequeue must return promptly when its context ends")

	out, stop := goDequeue(t, ctx, q, k.cfg.leaseTTL)
	sleep(ctx, 100*time.Millisecond)
	stop()
	stopped := time.Now()
	select {
	case r := <-out:
		require.ErrorIs(t, r.err, context.Canceled, "a waiting Dequeue whose context is canceled")
		require.Less(t, r.at.Sub(stopped), soon, "a waiting Dequeue must return promptly when its context is canceled")
	case <-time.After(patience):
		t.Fatalf("a waiting Dequeue did not return within %v of its context being canceled", patience)
	}

	// The canceled Dequeues took nothing.
	id := asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, id, 0))
	l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	require.Equal(t, id, l.ID)
	require.Equal(t, 1, l.Delivery)
	require.NoError(t, q.Ack(ctx, l))
}

func (k *queueKit) enqueueDelay(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	const delay = time.Second
	id := asyncreq.NewID()
	now := asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, id, delay))
	enqueued := time.Now()
	require.NoError(t, q.Enqueue(ctx, now, 0))
	l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	require.Equal(t, now, l.ID, "an entry without delay must be delivered before one delayed %v", delay)
	require.NoError(t, q.Ack(ctx, l))

	requireEmpty(t, ctx, q, k.cfg.leaseTTL, time.Until(enqueued.Add(delay-300*time.Millisecond)), "an entry must not be delivered before its delay")
	l = dequeueWithin(t, ctx, q, k.cfg.leaseTTL, delay+patience)
	require.Equal(t, id, l.ID)
	require.GreaterOrEqual(t, time.Since(enqueued), delay-100*time.Millisecond, "the delayed entry was delivered early")
	require.NoError(t, q.Ack(ctx, l))
}

func (k *queueKit) ackRemoves(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	id := asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, id, 0))
	l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	require.NoError(t, q.Ack(ctx, l))
	wait := 300 * time.Millisecond
	if k.cfg.noLeaseExpiry == "" {
		// Past the end the lease would have had.
		wait = k.cfg.leaseTTL + 500*time.Millisecond
	}
	requireEmpty(t, ctx, q, k.cfg.leaseTTL, wait, "an acked entry must never be delivered again")
}

func (k *queueKit) ackSettled(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	first, second := asyncreq.NewID(), asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, first, 0))
	require.NoError(t, q.Enqueue(ctx, second, 0))
	a := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	b := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)

	require.NoError(t, q.Ack(ctx, a))
	assert.ErrorIs(t, q.Ack(ctx, a), asyncreq.ErrLeaseLost, "a second Ack")
	assert.ErrorIs(t, q.Nack(ctx, a, 0), asyncreq.ErrLeaseLost, "Nack after Ack")
	assert.ErrorIs(t, q.Extend(ctx, a, k.cfg.leaseTTL), asyncreq.ErrLeaseLost, "Extend after Ack")

	require.NoError(t, q.Nack(ctx, b, time.Hour))
	assert.ErrorIs(t, q.Ack(ctx, b), asyncreq.ErrLeaseLost, "Ack after Nack")
	assert.ErrorIs(t, q.Nack(ctx, b, 0), asyncreq.ErrLeaseLost, "a second Nack")
	assert.ErrorIs(t, q.Extend(ctx, b, k.cfg.leaseTTL), asyncreq.ErrLeaseLost, "Extend after Nack")

	requireEmpty(t, ctx, q, k.cfg.leaseTTL, 300*time.Millisecond, "an entry acked, and one nacked for an hour, must not be delivered now, whatever a stale settlement tried")
}

func (k *queueKit) leaseExpiry(t *testing.T, ctx context.Context) {
	k.cfg.skipWithoutLeaseExpiry(t)
	q := k.newQueue(t)
	ttl := k.cfg.leaseTTL
	id := asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, id, 0))
	old := dequeueWithin(t, ctx, q, ttl, patience)
	leased := time.Now()
	require.Equal(t, 1, old.Delivery)

	requireEmpty(t, ctx, q, ttl, ttl/2, "an id must not be delivered again while its lease is held")
	l := dequeueWithin(t, ctx, q, ttl, ttl+patience)
	require.Equal(t, id, l.ID, "an id whose lease ran out must be delivered again")
	require.Equal(t, 2, l.Delivery, "the second delivery of an entry has Delivery 2")
	require.GreaterOrEqual(t, time.Since(leased), ttl-100*time.Millisecond, "redelivered before its lease of %v ran out", ttl)

	assert.ErrorIs(t, q.Ack(ctx, old), asyncreq.ErrLeaseLost, "Ack of a lease that ran out and was redelivered")
	assert.ErrorIs(t, q.Extend(ctx, old, ttl), asyncreq.ErrLeaseLost, "Extend of a lease that ran out and was redelivered")
	assert.ErrorIs(t, q.Nack(ctx, old, 0), asyncreq.ErrLeaseLost, "Nack of a lease that ran out and was redelivered")

	require.NoError(t, q.Ack(ctx, l), "Ack of the current lease, after stale settlements of the old one")
	requireEmpty(t, ctx, q, ttl, 300*time.Millisecond, "the entry was acked; a stale Nack must not have put it back")
}

func (k *queueKit) leaseExtend(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	ttl := k.cfg.leaseTTL
	id := asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, id, 0))
	l := dequeueWithin(t, ctx, q, ttl, patience)

	out, stop := goDequeue(t, ctx, q, ttl)
	end := time.Now().Add(2 * ttl)
	for time.Now().Before(end) {
		sleep(ctx, ttl/3)
		require.NoError(t, q.Extend(ctx, l, ttl), "Extend of a held lease")
		select {
		case r := <-out:
			if r.err == nil {
				t.Fatalf("%s was delivered again while its lease was being extended", r.l.ID)
			}
			t.Fatalf("a waiting Dequeue failed: %v", r.err)
		default:
		}
	}
	require.NoError(t, q.Ack(ctx, l), "Ack of a lease extended past its first ttl")
	stop()
	r := <-out
	if r.err == nil {
		t.Fatalf("%s was delivered again while its lease was being extended", r.l.ID)
	}
	require.ErrorIs(t, r.err, context.Canceled)
}

func (k *queueKit) nackDelay(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	const delay = time.Second
	id := asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, id, 0))
	l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	require.NoError(t, q.Nack(ctx, l, delay))
	nacked := time.Now()

	requireEmpty(t, ctx, q, k.cfg.leaseTTL, time.Until(nacked.Add(delay-300*time.Millisecond)), "a nacked entry must not be delivered before its delay")
	again := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, delay+patience)
	require.Equal(t, id, again.ID, "a nacked entry must be delivered again after its delay")
	require.GreaterOrEqual(t, time.Since(nacked), delay-100*time.Millisecond, "the nacked entry was delivered early")
	require.NoError(t, q.Ack(ctx, again))
	assert.ErrorIs(t, q.Ack(ctx, l), asyncreq.ErrLeaseLost, "Ack of the nacked lease")
}

func (k *queueKit) nackNow(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	id := asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, id, 0))
	l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)
	require.NoError(t, q.Nack(ctx, l, 0))
	again := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, soon)
	require.Equal(t, id, again.ID, "an entry nacked without delay must be delivered again at once")
	require.NoError(t, q.Ack(ctx, again))
}

func (k *queueKit) contextCanceled(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	id := asyncreq.NewID()
	require.NoError(t, q.Enqueue(ctx, id, 0))
	l := dequeueWithin(t, ctx, q, k.cfg.leaseTTL, patience)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	other := asyncreq.NewID()
	assert.ErrorIs(t, q.Enqueue(cctx, other, 0), context.Canceled, "Enqueue")
	_, err := q.Dequeue(cctx, k.cfg.leaseTTL)
	assert.ErrorIs(t, err, context.Canceled, "Dequeue")
	assert.ErrorIs(t, q.Extend(cctx, l, k.cfg.leaseTTL), context.Canceled, "Extend")
	assert.ErrorIs(t, q.Nack(cctx, l, 0), context.Canceled, "Nack")
	assert.ErrorIs(t, q.Ack(cctx, l), context.Canceled, "Ack")
	if b, ok := q.(asyncreq.BatchDequeuer); ok {
		_, err := b.DequeueBatch(cctx, 10, k.cfg.leaseTTL)
		assert.ErrorIs(t, err, context.Canceled, "DequeueBatch")
	}

	require.NoError(t, q.Ack(ctx, l), "the lease must survive settlements whose context was canceled")
	requireEmpty(t, ctx, q, k.cfg.leaseTTL, 300*time.Millisecond, "an Enqueue with a canceled context must enqueue nothing")
}

// concurrent runs producers and consumers at once and checks that each id
// is delivered and acked exactly once. Leases are long (at least 30s), so
// that no lease runs out under the race detector and redelivers.
func (k *queueKit) concurrent(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	const producers, perProducer, consumers = 4, 250, 4
	const total = producers * perProducer
	ttl := max(k.cfg.leaseTTL, 30*time.Second)

	var (
		mu         sync.Mutex
		deliveries = make(map[string]int, total)
		acks       = make(map[string]int, total)
		errs       []error
		allAcked   = make(chan struct{})
	)
	report := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	enqueued := make([]string, 0, total)
	ids := make([][]string, producers)
	for p := range ids {
		ids[p] = make([]string, perProducer)
		for i := range ids[p] {
			ids[p][i] = asyncreq.NewID()
		}
		enqueued = append(enqueued, ids[p]...)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var consumersWG, producersWG sync.WaitGroup
	for range consumers {
		consumersWG.Go(func() {
			for {
				l, err := q.Dequeue(cctx, ttl)
				if err != nil {
					if cctx.Err() == nil {
						report(fmt.Errorf("Dequeue: %w", err))
					}
					return
				}
				mu.Lock()
				deliveries[l.ID]++
				mu.Unlock()
				if err := q.Ack(cctx, l); err != nil {
					if cctx.Err() == nil {
						report(fmt.Errorf("Ack(%s): %w", l.ID, err))
					}
					return
				}
				mu.Lock()
				acks[l.ID]++
				if len(acks) == total && acks[l.ID] == 1 {
					close(allAcked)
				}
				mu.Unlock()
			}
		})
	}
	for p := range producers {
		producersWG.Go(func() {
			for _, id := range ids[p] {
				if err := q.Enqueue(cctx, id, 0); err != nil {
					report(fmt.Errorf("Enqueue(%s): %w", id, err))
					return
				}
			}
		})
	}
	producersWG.Wait()

	const timeout = 20 * time.Second
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	failed := false
	select {
	case <-allAcked:
	case <-timer.C:
		failed = true
	case <-ctx.Done():
		failed = true
	}
	if !failed {
		// Give a duplicate delivery a moment to show.
		sleep(ctx, 200*time.Millisecond)
	}
	cancel()
	consumersWG.Wait()

	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, errs, "errors from producers and consumers")
	require.False(t, failed, "only %d of %d ids were acked within %v", len(acks), total, timeout)
	for _, id := range enqueued {
		require.Equal(t, 1, deliveries[id], "deliveries of %s", id)
		require.Equal(t, 1, acks[id], "acks of %s", id)
	}
	require.Len(t, deliveries, total, "ids delivered that were never enqueued")
}

func (k *queueKit) batch(t *testing.T, ctx context.Context) {
	q := k.newQueue(t)
	b, ok := q.(asyncreq.BatchDequeuer)
	if !ok {
		t.Skipf("%T does not implement asyncreq.BatchDequeuer", q)
	}
	const n, maxLeases = 5, 3

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := b.DequeueBatch(cctx, maxLeases, k.cfg.leaseTTL)
	require.ErrorIs(t, err, context.Canceled, "DequeueBatch with a canceled context")
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = b.DequeueBatch(dctx, maxLeases, k.cfg.leaseTTL)
	require.ErrorIs(t, err, context.DeadlineExceeded, "DequeueBatch on an empty queue whose context times out")

	want := make([]string, n)
	for i := range want {
		want[i] = asyncreq.NewID()
		require.NoError(t, q.Enqueue(ctx, want[i], 0))
	}
	var got []string
	deadline := time.Now().Add(patience)
	for len(got) < n {
		require.True(t, time.Now().Before(deadline), "only %d of %d ids were delivered by DequeueBatch within %v", len(got), n, patience)
		bctx, cancel := context.WithDeadline(ctx, deadline)
		ls, err := b.DequeueBatch(bctx, maxLeases, k.cfg.leaseTTL)
		cancel()
		require.NoError(t, err)
		require.NotEmpty(t, ls, "DequeueBatch must return at least one lease")
		require.LessOrEqual(t, len(ls), maxLeases, "DequeueBatch must return at most max leases")
		for _, l := range ls {
			require.NotNil(t, l)
			require.NotContains(t, got, l.ID, "an id was delivered twice")
			require.Equal(t, 1, l.Delivery)
			got = append(got, l.ID)
		}
		for _, l := range ls {
			require.NoError(t, q.Ack(ctx, l))
		}
	}
	require.ElementsMatch(t, want, got)
	requireEmpty(t, ctx, q, k.cfg.leaseTTL, 300*time.Millisecond, "after every id was acked")
}
