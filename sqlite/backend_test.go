package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/sqlite"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newRecord returns a pending record as the handler makes one.
func newRecord(body string) *asyncreq.Record {
	now := time.Now().UTC()
	return &asyncreq.Record{
		ID:           asyncreq.NewID(),
		State:        asyncreq.StatePending,
		Method:       "POST",
		URL:          "/jobs/",
		ContentType:  "text/plain",
		Body:         []byte(body),
		CreatedAt:    now,
		UpdatedAt:    now,
		Retention:    time.Hour,
		TombstoneTTL: 2 * time.Hour,
	}
}

// finish moves a record to succeeded, expiring at exp.
func finish(exp time.Time) func(r *asyncreq.Record) error {
	return func(r *asyncreq.Record) error {
		r.State = asyncreq.StateSucceeded
		r.Result = &asyncreq.Result{StatusCode: 200, ContentType: "text/plain", Body: []byte("done " + r.ID)}
		r.ExpiresAt = exp
		return nil
	}
}

// shortCtx returns a context that ends after d.
func shortCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestReopenKeepsRecordsAndQueue(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "reopen.db")
	ctx := t.Context()
	b, err := sqlite.Open(ctx, path, &sqlite.Options{Now: clk.Now})
	require.NoError(t, err)

	leased, ready, delayed := newRecord("leased"), newRecord("ready"), newRecord("delayed")
	for _, r := range []*asyncreq.Record{leased, ready, delayed} {
		_, err := b.Accept(ctx, r)
		require.NoError(t, err)
	}
	// Three entries due now; take them all, then return two of them.
	ls, err := b.DequeueBatch(ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, ls, 3)
	for _, l := range ls {
		switch l.ID {
		case ready.ID:
			require.NoError(t, b.Nack(ctx, l, 0))
		case delayed.ID:
			require.NoError(t, b.Nack(ctx, l, time.Hour))
		}
	}
	_, err = b.Update(ctx, leased.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateRunning
		r.Attempts = 1
		r.Progress = &asyncreq.Progress{Percent: 40, Message: "half"}
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, b.Close())

	b, err = sqlite.Open(ctx, path, &sqlite.Options{Now: clk.Now})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()

	got, err := b.Get(ctx, leased.ID)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateRunning, got.State)
	require.Equal(t, &asyncreq.Progress{Percent: 40, Message: "half"}, got.Progress)
	require.Equal(t, []byte("leased"), got.Body)
	require.True(t, got.Enqueued)
	require.True(t, got.CreatedAt.Equal(leased.CreatedAt))

	l, err := b.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, ready.ID, l.ID, "the returned entry is due; the leased and delayed ones are not")
	require.Equal(t, 2, l.Delivery)
	require.NoError(t, b.Ack(ctx, l))

	_, err = b.Dequeue(shortCtx(t, 50*time.Millisecond), time.Minute)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	clk.Add(2 * time.Minute) // the lease taken before the restart runs out
	l, err = b.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, leased.ID, l.ID)
	require.Equal(t, 2, l.Delivery)

	clk.Add(time.Hour)
	ls, err = b.DequeueBatch(ctx, 10, time.Minute)
	require.NoError(t, err)
	ids := []string{}
	for _, l := range ls {
		ids = append(ids, l.ID)
	}
	require.ElementsMatch(t, []string{leased.ID, delayed.ID}, ids)
}

func TestConcurrentAcceptNoBusy(t *testing.T) {
	b, path := openTemp(t, nil)
	// A second engine on the same file, as another process would have
	// (the symlink gives it a path of its own).
	link := filepath.Join(t.TempDir(), "link.db")
	require.NoError(t, os.Symlink(path, link))
	other, err := sqlite.Open(t.Context(), link, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, other.Close()) }()

	const goroutines, each = 32, 20
	ctx := t.Context()
	errs := make(chan error, 2*goroutines*each)
	ids := make(chan string, 2*goroutines*each)
	var wg sync.WaitGroup
	for g := range goroutines {
		for k, be := range []*sqlite.Backend{b, other} {
			wg.Go(func() {
				for i := range each {
					rec := newRecord(fmt.Sprintf("body %d %d", g, i))
					if i%4 == 0 {
						rec.IdempotencyKey = fmt.Sprintf("key-%d-%d-%d", k, g, i)
					}
					if _, err := be.Accept(ctx, rec); err != nil {
						errs <- err
						continue
					}
					ids <- rec.ID
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	close(ids)
	for err := range errs {
		t.Errorf("accept: %v", err)
	}
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	require.Equal(t, 2*goroutines*each, len(seen))

	// Every accepted request is recorded and queued exactly once.
	for id := range seen {
		r, err := b.Get(ctx, id)
		require.NoError(t, err)
		require.True(t, r.Enqueued)
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM asyncreq_queue`).Scan(&n))
	require.Equal(t, len(seen), n)
}

func TestLeaseExpiryAndStaleLease(t *testing.T) {
	clk := newClock()
	b, _ := openTemp(t, &sqlite.Options{Now: clk.Now})
	ctx := t.Context()
	require.NoError(t, b.Enqueue(ctx, "a", 0))

	first, err := b.Dequeue(ctx, 30*time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, first.Delivery)
	clk.Add(20 * time.Second)
	require.NoError(t, b.Extend(ctx, first, 30*time.Second), "extend while held")
	clk.Add(20 * time.Second)
	_, err = b.Dequeue(shortCtx(t, 50*time.Millisecond), time.Second)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the extended lease still holds")

	clk.Add(11 * time.Second)
	require.ErrorIs(t, b.Extend(ctx, first, time.Minute), asyncreq.ErrLeaseLost, "extend after expiry")
	second, err := b.Dequeue(ctx, 30*time.Second)
	require.NoError(t, err)
	require.Equal(t, "a", second.ID)
	require.Equal(t, 2, second.Delivery)

	require.ErrorIs(t, b.Ack(ctx, first), asyncreq.ErrLeaseLost)
	require.ErrorIs(t, b.Nack(ctx, first, 0), asyncreq.ErrLeaseLost)
	require.ErrorIs(t, b.Extend(ctx, first, time.Minute), asyncreq.ErrLeaseLost)
	require.NoError(t, b.Ack(ctx, second))
	require.ErrorIs(t, b.Ack(ctx, second), asyncreq.ErrLeaseLost, "double ack")

	foreign := &asyncreq.Lease{ID: "a", Delivery: 1, Handle: "not ours"}
	require.ErrorIs(t, b.Ack(ctx, foreign), asyncreq.ErrLeaseLost)
}

func TestDelayedEntryAndNackDelay(t *testing.T) {
	clk := newClock()
	b, _ := openTemp(t, &sqlite.Options{Now: clk.Now})
	ctx := t.Context()
	require.NoError(t, b.Enqueue(ctx, "later", time.Minute))
	_, err := b.Dequeue(shortCtx(t, 50*time.Millisecond), time.Second)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	clk.Add(time.Minute)
	l, err := b.Dequeue(ctx, time.Second)
	require.NoError(t, err)
	require.Equal(t, "later", l.ID)

	require.NoError(t, b.Nack(ctx, l, 10*time.Second))
	_, err = b.Dequeue(shortCtx(t, 50*time.Millisecond), time.Second)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	clk.Add(10 * time.Second)
	l, err = b.Dequeue(ctx, time.Second)
	require.NoError(t, err)
	require.Equal(t, 2, l.Delivery)
	require.NoError(t, b.Ack(ctx, l))

	// An id enqueued twice is two entries, each with its own lease.
	require.NoError(t, b.Enqueue(ctx, "twice", time.Hour))
	require.NoError(t, b.Enqueue(ctx, "twice", 0))
	l, err = b.Dequeue(ctx, time.Second)
	require.NoError(t, err)
	require.Equal(t, "twice", l.ID)
	require.NoError(t, b.Ack(ctx, l))
	clk.Add(time.Hour)
	l2, err := b.Dequeue(ctx, time.Second)
	require.NoError(t, err)
	require.Equal(t, "twice", l2.ID)
	require.Equal(t, 1, l2.Delivery)
	require.NoError(t, b.Ack(ctx, l2))
	clk.Add(2 * time.Hour)
	_, err = b.Dequeue(shortCtx(t, 50*time.Millisecond), time.Second)
	require.ErrorIs(t, err, context.DeadlineExceeded, "both entries were acked")
}

func TestDequeueWakesWithoutPolling(t *testing.T) {
	// With a poll interval of an hour, only the in-process wake-up or the
	// timer for the next due entry can release a waiting Dequeue.
	b, _ := openTemp(t, &sqlite.Options{MaxPollInterval: time.Hour})
	ctx := shortCtx(t, 10*time.Second)

	type result struct {
		l   *asyncreq.Lease
		err error
	}
	got := make(chan result, 1)
	go func() {
		l, err := b.Dequeue(ctx, time.Minute)
		got <- result{l, err}
	}()
	start := time.Now()
	require.NoError(t, b.Enqueue(ctx, "now", 0))
	r := <-got
	require.NoError(t, r.err)
	require.Equal(t, "now", r.l.ID)
	require.Less(t, time.Since(start), time.Second)

	// A Nack wakes a waiter too.
	go func() {
		l, err := b.Dequeue(ctx, time.Minute)
		got <- result{l, err}
	}()
	require.NoError(t, b.Nack(ctx, r.l, 0))
	r = <-got
	require.NoError(t, r.err)
	require.Equal(t, 2, r.l.Delivery)

	// A delayed entry is taken when it falls due, by timer.
	start = time.Now()
	require.NoError(t, b.Enqueue(ctx, "soon", 150*time.Millisecond))
	l, err := b.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, "soon", l.ID)
	elapsed := time.Since(start)
	require.GreaterOrEqual(t, elapsed, 150*time.Millisecond)
	require.Less(t, elapsed, 2*time.Second)
}

func TestOtherProcessEnqueueSeenByPoll(t *testing.T) {
	b, path := openTemp(t, &sqlite.Options{MaxPollInterval: 100 * time.Millisecond})
	link := filepath.Join(t.TempDir(), "link.db")
	require.NoError(t, os.Symlink(path, link))
	other, err := sqlite.Open(t.Context(), link, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, other.Close()) }()

	ctx := shortCtx(t, 10*time.Second)
	got := make(chan error, 1)
	go func() {
		l, err := b.Dequeue(ctx, time.Minute)
		if err == nil && l.ID != "x" {
			err = fmt.Errorf("got %s", l.ID)
		}
		got <- err
	}()
	require.NoError(t, other.Enqueue(ctx, "x", 0))
	require.NoError(t, <-got)
}

func TestQueuesAndPrefixesShareAFile(t *testing.T) {
	jobs, path := openTemp(t, &sqlite.Options{Queue: "jobs"})
	ctx := t.Context()
	open := func(o *sqlite.Options) *sqlite.Backend {
		b, err := sqlite.Open(ctx, path, o)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		return b
	}
	reports := open(&sqlite.Options{Queue: "reports"})
	other := open(&sqlite.Options{TablePrefix: "app_async_", Queue: "jobs"})

	rec := newRecord("job")
	rec.IdempotencyKey = "k"
	_, err := jobs.Accept(ctx, rec)
	require.NoError(t, err)

	for _, b := range []*sqlite.Backend{reports, other} {
		_, err = b.Get(ctx, rec.ID)
		require.ErrorIs(t, err, asyncreq.ErrNotFound)
		_, err = b.Dequeue(shortCtx(t, 50*time.Millisecond), time.Second)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		// The same idempotency key is free in another queue.
		r2 := newRecord("job")
		r2.IdempotencyKey = "k"
		_, err = b.Accept(ctx, r2)
		require.NoError(t, err)
	}
	dup := newRecord("job")
	dup.IdempotencyKey = "k"
	got, err := jobs.Accept(ctx, dup)
	require.ErrorIs(t, err, asyncreq.ErrDuplicate)
	require.Equal(t, rec.ID, got.ID)

	l, err := jobs.Dequeue(ctx, time.Second)
	require.NoError(t, err)
	require.Equal(t, rec.ID, l.ID)

	_, err = sqlite.Open(ctx, path, &sqlite.Options{Synchronous: "NORMAL"})
	require.ErrorContains(t, err, "already open")
}

func TestMigrationVersion(t *testing.T) {
	_, path := openTemp(t, nil)
	ctx := t.Context()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	versions := func(prefix string) []int {
		rows, err := db.Query(`SELECT version FROM ` + prefix + `schema_version ORDER BY version`)
		require.NoError(t, err)
		defer rows.Close()
		var vs []int
		for rows.Next() {
			var v int
			require.NoError(t, rows.Scan(&v))
			vs = append(vs, v)
		}
		require.NoError(t, rows.Err())
		return vs
	}
	first := versions("asyncreq_")
	require.Equal(t, 1, first[0])
	require.Equal(t, sqlite.SchemaVersion, first[len(first)-1])

	// Reopening migrates nothing again.
	again, err := sqlite.Open(ctx, path, nil)
	require.NoError(t, err)
	require.NoError(t, again.Close())
	require.Equal(t, first, versions("asyncreq_"))

	// A schema newer than this package is refused.
	_, err = db.Exec(`INSERT INTO asyncreq_schema_version (version) VALUES (99)`)
	require.NoError(t, err)
	_, err = sqlite.Open(ctx, path, nil)
	require.ErrorContains(t, err, "newer")
}

func TestOptionsValidation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	for _, o := range []*sqlite.Options{
		{TablePrefix: "bad-prefix"},
		{TablePrefix: "1x"},
		{Synchronous: "OFF"},
		{BusyTimeout: -1},
		{ReadConns: -1},
		{MaxBatch: -1},
		{MaxPollInterval: -1},
		{Queue: string(make([]byte, 65))},
	} {
		_, err := sqlite.Open(t.Context(), path, o)
		assert.Error(t, err, "%+v", o)
	}
	for _, p := range []string{"", ":memory:", "file:x.db"} {
		_, err := sqlite.Open(t.Context(), p, nil)
		assert.Error(t, err, p)
	}
	_, err := os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "a refused Open creates no file")
}

func TestUpdateSemantics(t *testing.T) {
	b, _ := openTemp(t, nil)
	ctx := t.Context()
	rec := newRecord("u")
	rec.Owner, rec.IdempotencyKey = "alice", "k1"
	_, err := b.Create(ctx, rec)
	require.NoError(t, err)

	mine := errors.New("mine")
	_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateFailed
		return mine
	})
	require.Equal(t, mine, err, "fn's error is returned unwrapped")
	got, err := b.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StatePending, got.State, "nothing stored")

	_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.Owner = "mallory"
		return nil
	})
	require.Error(t, err)

	require.PanicsWithValue(t, "boom", func() {
		_, _ = b.Update(ctx, rec.ID, func(*asyncreq.Record) error { panic("boom") })
	})

	// The body is rewritten only when changed, and survives other updates.
	out, err := b.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.Body = []byte("new body")
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []byte("new body"), out.Body)
	_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.Attempts++
		return nil
	})
	require.NoError(t, err)
	got, err = b.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, []byte("new body"), got.Body)
	require.Equal(t, 1, got.Attempts)

	_, err = b.Update(ctx, asyncreq.NewID(), func(*asyncreq.Record) error { return nil })
	require.ErrorIs(t, err, asyncreq.ErrNotFound)

	// The backend still works after all that.
	_, err = b.Create(ctx, newRecord("after"))
	require.NoError(t, err)
}

func TestBatchFailureIsolated(t *testing.T) {
	// Writes grouped into one transaction fail alone: creating an id that
	// exists fails, while the concurrent creates around it succeed.
	b, _ := openTemp(t, nil)
	ctx := t.Context()
	taken := newRecord("taken")
	_, err := b.Create(ctx, taken)
	require.NoError(t, err)

	const n = 200
	errs := make([]error, n)
	recs := make([]*asyncreq.Record, n)
	var wg sync.WaitGroup
	for i := range n {
		recs[i] = newRecord(fmt.Sprint(i))
		if i%10 == 0 {
			recs[i].ID = taken.ID
		}
		wg.Go(func() { _, errs[i] = b.Create(ctx, recs[i]) })
	}
	wg.Wait()
	for i := range n {
		if i%10 == 0 {
			assert.Error(t, errs[i], i)
			continue
		}
		require.NoError(t, errs[i], i)
		_, err := b.Get(ctx, recs[i].ID)
		require.NoError(t, err, i)
	}
}

func TestPurgeAndTombstones(t *testing.T) {
	clk := newClock()
	b, _ := openTemp(t, &sqlite.Options{Now: clk.Now})
	ctx := t.Context()
	var ids []string
	for i := range 5 {
		r := newRecord(fmt.Sprint(i))
		_, err := b.Create(ctx, r)
		require.NoError(t, err)
		_, err = b.Update(ctx, r.ID, finish(clk.Now().Add(time.Hour)))
		require.NoError(t, err)
		ids = append(ids, r.ID)
	}
	pending := newRecord("pending")
	_, err := b.Create(ctx, pending)
	require.NoError(t, err)

	n, err := b.Purge(ctx, clk.Now(), 100)
	require.NoError(t, err)
	require.Zero(t, n, "nothing expired yet")

	clk.Add(time.Hour)
	n, err = b.Purge(ctx, clk.Now(), 3)
	require.NoError(t, err)
	require.Equal(t, 3, n, "limited to the batch size")
	n, err = b.Purge(ctx, clk.Now(), 3)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	for _, id := range ids {
		_, err := b.Get(ctx, id)
		require.ErrorIs(t, err, asyncreq.ErrGone)
	}
	_, err = b.Get(ctx, pending.ID)
	require.NoError(t, err)

	// Tombstones last TombstoneTTL (2h) past ExpiresAt, then go.
	clk.Add(2 * time.Hour)
	for _, id := range ids {
		_, err := b.Get(ctx, id)
		require.ErrorIs(t, err, asyncreq.ErrNotFound)
	}
	n, err = b.Purge(ctx, clk.Now(), 100)
	require.NoError(t, err)
	require.Zero(t, n)

	// Delete with a tombstone: gone for TombstoneTTL from now.
	require.NoError(t, b.Delete(ctx, pending.ID, true))
	_, err = b.Get(ctx, pending.ID)
	require.ErrorIs(t, err, asyncreq.ErrGone)
	require.ErrorIs(t, b.Delete(ctx, pending.ID, true), asyncreq.ErrNotFound)
}

func TestWatch(t *testing.T) {
	b, _ := openTemp(t, nil)
	ctx := t.Context()
	rec := newRecord("w")
	_, err := b.Accept(ctx, rec)
	require.NoError(t, err)

	ch, err := b.Watch(ctx, rec.ID)
	require.NoError(t, err)
	select {
	case <-ch:
		t.Fatal("closed before any change")
	default:
	}
	_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error { r.CancelRequested = true; return nil })
	require.NoError(t, err)
	<-ch // closed by the change

	wctx, cancel := context.WithCancel(ctx)
	ch, err = b.Watch(wctx, rec.ID)
	require.NoError(t, err)
	cancel()
	<-ch // closed by the end of its context

	ch, err = b.Watch(ctx, rec.ID)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	<-ch // closed by Close
	_, err = b.Watch(ctx, rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrClosed)
}

func TestClosedAndCanceled(t *testing.T) {
	b, _ := openTemp(t, nil)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := b.Accept(canceled, newRecord("x"))
	require.Equal(t, context.Canceled, err)
	_, err = b.Get(canceled, asyncreq.NewID())
	require.Equal(t, context.Canceled, err)
	_, err = b.Dequeue(canceled, time.Second)
	require.Equal(t, context.Canceled, err)

	waiting := make(chan error, 1)
	go func() {
		_, err := b.Dequeue(context.Background(), time.Second)
		waiting <- err
	}()
	require.NoError(t, b.Close())
	require.ErrorIs(t, <-waiting, asyncreq.ErrClosed)
	require.NoError(t, b.Close(), "Close is idempotent")

	ctx := t.Context()
	_, err = b.Accept(ctx, newRecord("x"))
	require.ErrorIs(t, err, asyncreq.ErrClosed)
	_, err = b.Get(ctx, asyncreq.NewID())
	require.ErrorIs(t, err, asyncreq.ErrClosed)
	require.ErrorIs(t, b.Enqueue(ctx, "x", 0), asyncreq.ErrClosed)
	_, err = b.Purge(ctx, time.Now(), 10)
	require.ErrorIs(t, err, asyncreq.ErrClosed)
}

func TestWALStaysBounded(t *testing.T) {
	// Under a steady stream of commits the WAL is checkpointed and reused
	// from its start, so the -wal file does not grow with the database.
	b, path := openTemp(t, nil)
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			for range 60 {
				if _, err := b.Accept(t.Context(), newRecord(string(make([]byte, 1500)))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	wal, err := os.Stat(path + "-wal")
	require.NoError(t, err)
	db, err := os.Stat(path)
	require.NoError(t, err)
	t.Logf("database %d bytes, WAL %d bytes, %+v", db.Size(), wal.Size(), b.Stats())
	require.Less(t, wal.Size(), int64(6<<20), "the WAL was not reused")
}
