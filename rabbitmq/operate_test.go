package rabbitmq_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/memory"
	"github.com/asyncreq/asyncreq/rabbitmq"
)

// listingStore is a Store that is also an asyncreq.Lister: it keeps the
// ids of the records created through it and lists them by reading each
// back, O(n) per page. It stands for whatever Store an application keeps
// beside the RabbitMQ Queue; the operator functions need one that lists.
type listingStore struct {
	asyncreq.Store
	mu  sync.Mutex
	ids []string
}

var _ asyncreq.Lister = (*listingStore)(nil)

func newListingStore(t *testing.T) *listingStore {
	m := memory.New(nil)
	t.Cleanup(func() { _ = m.Close() })
	return &listingStore{Store: m}
}

func (s *listingStore) Create(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	other, err := s.Store.Create(ctx, rec)
	if err == nil {
		s.mu.Lock()
		s.ids = append(s.ids, rec.ID)
		s.mu.Unlock()
	}
	return other, err
}

// all returns every record created through s that is still there.
func (s *listingStore) all(ctx context.Context) ([]*asyncreq.Record, error) {
	s.mu.Lock()
	ids := slices.Clone(s.ids)
	s.mu.Unlock()
	var out []*asyncreq.Record
	for _, id := range ids {
		rec, err := s.Get(ctx, id)
		switch {
		case errors.Is(err, asyncreq.ErrNotFound) || errors.Is(err, asyncreq.ErrGone):
			continue
		case err != nil:
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

func (s *listingStore) List(ctx context.Context, q asyncreq.ListQuery) (asyncreq.ListPage, error) {
	cur, err := asyncreq.ParseListCursor(q.Cursor)
	if err != nil {
		return asyncreq.ListPage{}, err
	}
	recs, err := s.all(ctx)
	if err != nil {
		return asyncreq.ListPage{}, err
	}
	recs = slices.DeleteFunc(recs, func(r *asyncreq.Record) bool {
		return (q.State != "" && r.State != q.State) || (q.Owner != "" && r.Owner != q.Owner) ||
			(!cur.IsZero() && !cur.After(r.CreatedAt, r.ID))
	})
	slices.SortFunc(recs, func(a, b *asyncreq.Record) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return map[bool]int{true: -1, false: 1}[a.ID > b.ID]
	})
	var page asyncreq.ListPage
	if limit := q.PageLimit(); len(recs) > limit {
		recs = recs[:limit]
		last := recs[limit-1]
		page.Next = asyncreq.ListCursor{CreatedAt: last.CreatedAt, ID: last.ID}.String()
	}
	for _, r := range recs {
		r.Body = nil
		if r.Result != nil {
			r.Result.Body = nil
		}
	}
	page.Records = recs
	return page, nil
}

func (s *listingStore) CountStates(ctx context.Context) (asyncreq.StateCounts, error) {
	recs, err := s.all(ctx)
	if err != nil {
		return asyncreq.StateCounts{}, err
	}
	var c asyncreq.StateCounts
	for _, r := range recs {
		c.Add(r.State, 1)
	}
	return c, nil
}

// TestOperate runs the kit's cases of the operator functions on
// asyncreq.Pair of a Store that lists and the RabbitMQ Queue: a Pair is no
// asyncreq.Requeuer, so RetryRequest updates the record, publishes the id
// and marks the record enqueued.
func TestOperate(t *testing.T) {
	u := brokerURL(t)
	asyncreqtest.TestOperate(t, func(t *testing.T) asyncreq.Backend {
		return asyncreq.Pair(newListingStore(t), newQueue(t, u, nil))
	}, &asyncreqtest.Options{NoLeaseExpiry: noLeaseExpiry})
}

// TestRetryWithQueuedMessageRunsOnce: a request canceled before a worker
// took its message, then retried, has two messages in the queue (RabbitMQ
// cannot drop the first or refuse the second); it runs once, since the
// worker's claim of a finished record acknowledges the message without
// running it.
//
// The worker here runs one request at a time, so the second message is
// claimed after the first attempt ended. (Its outcome is written while the
// next request is claimed: a claim that came first would find the record
// still running.) A worker that holds both messages at once claims the
// record twice, and the second claim takes the running record over as it
// would from an attempt whose lease ran out: the request then runs twice,
// and the first attempt's outcome is refused (seen in 2 of 10 runs with
// the default Concurrency).
func TestRetryWithQueuedMessageRunsOnce(t *testing.T) {
	u := brokerURL(t)
	name := queueName(t, u)
	store := newListingStore(t)
	q := newQueue(t, u, &rabbitmq.Options{Queue: name})
	b := asyncreq.Pair(store, q)
	ctx := t.Context()
	now := time.Now()
	rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, Enqueued: true,
		CreatedAt: now, UpdatedAt: now, Retention: time.Hour}
	_, err := store.Create(ctx, rec)
	require.NoError(t, err)
	require.NoError(t, q.Enqueue(ctx, rec.ID, 0))
	_, err = asyncreq.CancelRequest(ctx, b, rec.ID)
	require.NoError(t, err)
	_, err = asyncreq.RetryRequest(ctx, b, rec.ID)
	require.NoError(t, err)
	st, err := q.QueueStats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, st.Pending, "the canceled request's message and the retry's are both queued")

	var runs atomic.Int32
	w, err := asyncreq.NewWorker(b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		runs.Add(1)
		return &asyncreq.Result{Body: []byte("done")}, nil
	}), &asyncreq.WorkerOptions{Concurrency: 1, PurgeInterval: -1, SweepInterval: -1})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	require.Eventually(t, func() bool {
		got, err := store.Get(ctx, rec.ID)
		st, serr := q.QueueStats(ctx)
		return err == nil && got.State == asyncreq.StateSucceeded && serr == nil && st.Pending == 0
	}, 10*time.Second, 20*time.Millisecond, "the request succeeds and no message waits")
	// Both messages were delivered; give the worker the moment it needs to
	// settle the second, then close the Queue: a message it did not
	// acknowledge would go back to the queue.
	require.Never(t, func() bool { return runs.Load() > 1 }, 500*time.Millisecond, 20*time.Millisecond)
	require.NoError(t, w.Stop(ctx))
	require.NoError(t, q.Close())
	requireEmpty(t, newQueue(t, u, &rabbitmq.Options{Queue: name}), time.Second)
	require.Equal(t, int32(1), runs.Load(), "the request ran once")
}
