package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/postgres"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMigrate(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 4)
	schema := newSchema(t, pool)
	ctx := t.Context()

	_, err := postgres.New(ctx, pool, &postgres.Options{Schema: schema})
	require.ErrorContains(t, err, "run postgres.Migrate", "New on an unmigrated schema")

	opts := &postgres.Options{Schema: schema}
	require.NoError(t, postgres.Migrate(ctx, pool, opts))
	require.NoError(t, postgres.Migrate(ctx, pool, opts), "second Migrate")

	var versions []int
	rows, err := pool.Query(ctx, "SELECT version FROM "+pgx.Identifier{schema, "schema_migrations"}.Sanitize())
	require.NoError(t, err)
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	// Every embedded migration ran once; their numbers need not be
	// contiguous.
	files, err := filepath.Glob("migrations/*.sql")
	require.NoError(t, err)
	require.Len(t, versions, len(files))
	require.Equal(t, postgres.SchemaVersion(), slices.Max(versions))

	s, err := postgres.New(ctx, pool, opts)
	require.NoError(t, err)

	// A tombstone written before tombstones kept their owner (version 2)
	// is gone to nobody in particular: a plain ErrGone, which a handler
	// with owners answers 404.
	legacy := asyncreq.NewID()
	_, err = pool.Exec(ctx, "INSERT INTO "+pgx.Identifier{schema, "tombstones"}.Sanitize()+
		" (queue, id, expires_at) VALUES ('default', $1, now() + interval '1 hour')", legacy)
	require.NoError(t, err)
	_, err = s.Get(ctx, legacy)
	require.ErrorIs(t, err, asyncreq.ErrGone)
	var ge *asyncreq.GoneError
	require.False(t, errors.As(err, &ge), "a tombstone without an owner names none")

	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "second Close")
}

func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 6)
	schema := newSchema(t, pool)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = postgres.Migrate(t.Context(), pool, &postgres.Options{Schema: schema}) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
}

// TestNewHonorsContext: New's queries stop when its context ends, and it
// returns ctx.Err() as it is. Here the migration waits for the advisory
// lock that another session holds.
func TestNewHonorsContext(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 4)
	schema := newSchema(t, pool)

	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := postgres.New(canceled, pool, &postgres.Options{Schema: schema, MigrateOnStart: true})
	require.Equal(t, context.Canceled, err, "a context that ended before New")

	tx, err := pool.Begin(t.Context())
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = tx.Exec(t.Context(), `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "asyncreq.migrate:"+schema)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = postgres.New(ctx, pool, &postgres.Options{Schema: schema, MigrateOnStart: true})
	require.Equal(t, context.DeadlineExceeded, err, "New waiting for the migration lock")
	require.Less(t, time.Since(start), 10*time.Second)
}

func TestOptionsValidated(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 2)
	_, err := postgres.New(t.Context(), pool, &postgres.Options{PollInterval: -time.Second})
	require.ErrorContains(t, err, "PollInterval")
	_, err = postgres.New(t.Context(), nil, nil)
	require.Error(t, err)
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := t.Context()

	rec := testRecord("alice", "k1", []byte("hello"))
	rec.Header = map[string][]string{"X-Trace": {"a", "b"}}
	got, err := s.Create(ctx, rec)
	require.NoError(t, err)
	require.Nil(t, got)

	got, err = s.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, rec.Body, got.Body)
	require.Equal(t, rec.Header, got.Header)
	require.True(t, rec.CreatedAt.Truncate(time.Microsecond).Equal(got.CreatedAt))
	require.False(t, got.Enqueued)

	ids, err := s.ListUnenqueued(ctx, time.Now().Add(time.Second), 10)
	require.NoError(t, err)
	require.Equal(t, []string{rec.ID}, ids)

	upd, err := s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateSucceeded
		r.Enqueued = true
		r.Result = &asyncreq.Result{StatusCode: 201, ContentType: "text/plain", Body: []byte("done")}
		r.ExpiresAt = time.Now().Add(-time.Second)
		r.Owner = "mallory" // ignored: owner never changes
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, "alice", upd.Owner)
	got, err = s.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, upd, got, "Update returns what Get reads back")

	refused := errors.New("refused")
	_, err = s.Update(ctx, rec.ID, func(*asyncreq.Record) error { return refused })
	require.ErrorIs(t, err, refused)

	n, err := s.Purge(ctx, time.Now(), 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = s.Get(ctx, rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrGone)
	_, err = s.Update(ctx, rec.ID, func(*asyncreq.Record) error { return nil })
	require.ErrorIs(t, err, asyncreq.ErrGone)
	require.ErrorIs(t, s.Delete(ctx, rec.ID, true), asyncreq.ErrNotFound)

	// Tombstones run out: purge at a time past ExpiresAt + TombstoneTTL.
	_, err = s.Purge(ctx, time.Now().Add(25*time.Hour), 10)
	require.NoError(t, err)
	_, err = s.Get(ctx, rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotFound)

	// The key is free again.
	_, err = s.Create(ctx, testRecord("alice", "k1", []byte("again")))
	require.NoError(t, err)
}

func TestQueuesShareSchema(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 8)
	schema := newSchema(t, pool)
	a := newStoreOn(t, pool, schema, &postgres.Options{Queue: "a"})
	b := newStoreOn(t, pool, schema, &postgres.Options{Queue: "b"})
	ctx := t.Context()

	rec := testRecord("", "same-key", []byte("x"))
	_, err := a.Accept(ctx, rec)
	require.NoError(t, err)
	_, err = b.Get(ctx, rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "queue b sees queue a's record")
	_, err = b.Accept(ctx, testRecord("", "same-key", []byte("x")))
	require.NoError(t, err, "keys are scoped by queue")

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	l, err := a.Dequeue(short, time.Minute)
	require.NoError(t, err)
	require.Equal(t, rec.ID, l.ID)
	require.NoError(t, a.Ack(ctx, l))
	_, err = a.Dequeue(short, time.Minute)
	require.ErrorIs(t, err, context.DeadlineExceeded, "queue a has only its own job")
}

func TestLeaseFencing(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := t.Context()
	rec := testRecord("", "", []byte("x"))
	_, err := s.Accept(ctx, rec)
	require.NoError(t, err)

	first, err := s.Dequeue(ctx, 200*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, 1, first.Delivery)

	// Once the lease ran out the job is simply due again.
	second, err := s.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, rec.ID, second.ID)
	require.Equal(t, 2, second.Delivery)

	require.ErrorIs(t, s.Ack(ctx, first), asyncreq.ErrLeaseLost)
	require.ErrorIs(t, s.Extend(ctx, first, time.Minute), asyncreq.ErrLeaseLost)
	require.ErrorIs(t, s.Nack(ctx, first, 0), asyncreq.ErrLeaseLost)
	require.NoError(t, s.Extend(ctx, second, time.Minute))
	require.NoError(t, s.Ack(ctx, second))
	require.ErrorIs(t, s.Ack(ctx, second), asyncreq.ErrLeaseLost, "double ack")
	require.ErrorIs(t, s.Ack(ctx, &asyncreq.Lease{ID: rec.ID, Handle: "forged"}), asyncreq.ErrLeaseLost)
}

func TestCloseReleasesDequeue(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 4)
	schema := newSchema(t, pool)
	s, err := postgres.New(t.Context(), pool, &postgres.Options{Schema: schema, MigrateOnStart: true, PollInterval: time.Minute})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := s.Dequeue(context.Background(), time.Minute)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // let Dequeue start waiting
	require.NoError(t, s.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, asyncreq.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Dequeue still waiting 5s after Close")
	}
	_, err = s.Accept(t.Context(), testRecord("", "", nil))
	require.ErrorIs(t, err, asyncreq.ErrClosed)
}

// TestGroupCommit runs many concurrent accepts, a third of them repeating
// an idempotency key, and checks that every key was stored once, that each
// repeat got the stored record with ErrDuplicate, and that there is
// exactly one job per record.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, &postgres.Options{MaxBatch: 64, Committers: 2})
	ctx := t.Context()

	const (
		clients = 48
		each    = 40
		keys    = 500
	)
	type outcome struct {
		rec      *asyncreq.Record
		existing *asyncreq.Record
		err      error
	}
	results := make([][]outcome, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				n := c*each + i
				key := ""
				if n%3 == 0 {
					key = fmt.Sprintf("key-%d", n%keys)
				}
				rec := testRecord(fmt.Sprintf("owner-%d", n%2), key, []byte(fmt.Sprintf("body-%d", n)))
				existing, err := s.Accept(ctx, rec)
				results[c] = append(results[c], outcome{rec, existing, err})
			}
		})
	}
	wg.Wait()

	accepted := map[string]bool{}
	byKey := map[string]string{} // owner/key -> id
	var dups []outcome
	for _, rs := range results {
		for _, o := range rs {
			switch {
			case o.err == nil:
				require.Nil(t, o.existing)
				accepted[o.rec.ID] = true
				if o.rec.IdempotencyKey != "" {
					k := o.rec.Owner + "/" + o.rec.IdempotencyKey
					require.NotContains(t, byKey, k, "key %s stored twice", k)
					byKey[k] = o.rec.ID
				}
			case errors.Is(o.err, asyncreq.ErrDuplicate):
				dups = append(dups, o)
			default:
				require.NoError(t, o.err)
			}
		}
	}
	for _, d := range dups {
		require.NotNil(t, d.existing)
		k := d.rec.Owner + "/" + d.rec.IdempotencyKey
		require.Equal(t, byKey[k], d.existing.ID, "duplicate of %s answered with another record", k)
		require.Equal(t, d.rec.IdempotencyKey, d.existing.IdempotencyKey)
	}
	require.Len(t, accepted, clients*each-len(dups))

	schema := pgx.Identifier{s.Schema()}.Sanitize()
	var records, jobs, distinctJobs int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+schema+".records").Scan(&records))
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT id) FROM "+schema+".jobs").Scan(&jobs, &distinctJobs))
	require.Equal(t, len(accepted), records)
	require.Equal(t, len(accepted), jobs, "one job per accepted record")
	require.Equal(t, jobs, distinctJobs)
	t.Logf("%d accepts, %d duplicates", clients*each, len(dups))
}

// TestAcceptBadRecordAlone checks that a record the database refuses
// fails alone, not the batch it was written with.
func TestAcceptBadRecordAlone(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, &postgres.Options{Committers: 1})
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			rec := testRecord("", "", []byte("ok"))
			if i == 7 {
				rec.URL = "/bad\x00url" // text cannot hold NUL
			}
			_, errs[i] = s.Accept(ctx, rec)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i == 7 {
			assert.Error(t, err)
		} else {
			assert.NoError(t, err, "accept %d", i)
		}
	}
}

// A record whose id is taken fails alone, also in a batch of records
// without idempotency keys (which are inserted without ON CONFLICT), and
// the first record stands.
func TestAcceptDuplicateIDAlone(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, &postgres.Options{Committers: 1})
	ctx := t.Context()
	taken := testRecord("", "", []byte("first"))
	_, err := s.Accept(ctx, taken)
	require.NoError(t, err)
	_, err = s.Accept(ctx, taken)
	require.Error(t, err, "a lone accept of a taken id")
	require.NotErrorIs(t, err, asyncreq.ErrDuplicate)

	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			rec := testRecord("", "", []byte("ok"))
			if i == 7 {
				rec = taken.Clone()
				rec.Body = []byte("second")
			}
			_, errs[i] = s.Accept(ctx, rec)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i == 7 {
			assert.Error(t, err)
		} else {
			assert.NoError(t, err, "accept %d", i)
		}
	}
	got, err := s.Get(ctx, taken.ID)
	require.NoError(t, err)
	assert.Equal(t, []byte("first"), got.Body)
}

// TestAcceptTx checks the transactional outbox: a business change and the
// request are committed or rolled back together.
func TestAcceptTx(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t, nil)
	ctx := t.Context()
	orders := pgx.Identifier{s.Schema(), "orders"}.Sanitize()
	_, err := pool.Exec(ctx, "CREATE TABLE "+orders+" (id text PRIMARY KEY)")
	require.NoError(t, err)

	place := func(order string, commit bool) *asyncreq.Record {
		rec := testRecord("", "order-"+order, []byte(order))
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = tx.Exec(ctx, "INSERT INTO "+orders+" (id) VALUES ($1)", order)
		require.NoError(t, err)
		existing, err := s.AcceptTx(ctx, tx, rec)
		require.NoError(t, err)
		require.Nil(t, existing)
		if commit {
			require.NoError(t, tx.Commit(ctx))
		} else {
			require.NoError(t, tx.Rollback(ctx))
		}
		return rec
	}
	count := func(order string) int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+orders+" WHERE id = $1", order).Scan(&n))
		return n
	}

	rolled := place("1", false)
	require.Zero(t, count("1"))
	_, err = s.Get(ctx, rolled.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "request of a rolled-back transaction exists")

	committed := place("2", true)
	require.Equal(t, 1, count("2"))
	got, err := s.Get(ctx, committed.ID)
	require.NoError(t, err)
	require.True(t, got.Enqueued)
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := s.Dequeue(short, time.Minute)
	require.NoError(t, err)
	require.Equal(t, committed.ID, l.ID, "only the committed request is queued")

	// A duplicate inside a transaction leaves it usable.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	existing, err := s.AcceptTx(ctx, tx, testRecord("", "order-2", []byte("2")))
	require.ErrorIs(t, err, asyncreq.ErrDuplicate)
	require.Equal(t, committed.ID, existing.ID)
	_, err = tx.Exec(ctx, "INSERT INTO "+orders+" (id) VALUES ('3')")
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 1, count("3"))
}

// TestNotifyWakeup checks that a Dequeue waiting in one process wakes at
// once when another process accepts, long before its polling interval.
func TestNotifyWakeup(t *testing.T) {
	t.Parallel()
	poolA := newPool(t, 4)
	schema := newSchema(t, poolA)
	poolB := newPool(t, 4)
	a := newStoreOn(t, poolA, schema, &postgres.Options{PollInterval: time.Minute})
	b := newStoreOn(t, poolB, schema, &postgres.Options{PollInterval: time.Minute})
	ctx := t.Context()

	var latencies []time.Duration
	for range 5 {
		got := make(chan time.Time, 1)
		started := make(chan struct{})
		var dqErr error
		var l *asyncreq.Lease
		go func() {
			close(started)
			l, dqErr = b.Dequeue(ctx, time.Minute)
			got <- time.Now()
		}()
		<-started
		time.Sleep(50 * time.Millisecond) // let it settle into waiting
		rec := testRecord("", "", []byte("wake"))
		sent := time.Now()
		_, err := a.Accept(ctx, rec)
		require.NoError(t, err)
		select {
		case at := <-got:
			require.NoError(t, dqErr)
			require.Equal(t, rec.ID, l.ID)
			latencies = append(latencies, at.Sub(sent))
			require.NoError(t, b.Ack(ctx, l))
		case <-time.After(5 * time.Second):
			t.Fatal("waiting Dequeue not woken within 5s (poll interval is 1m)")
		}
	}
	for _, d := range latencies {
		require.Less(t, d, 500*time.Millisecond)
	}
	t.Logf("accept-to-dequeue across processes: %v", latencies)
}

// TestWatchAcrossProcesses checks that a Watch sees a change made by
// another Backend on the same schema.
func TestWatchAcrossProcesses(t *testing.T) {
	t.Parallel()
	poolA := newPool(t, 4)
	schema := newSchema(t, poolA)
	poolB := newPool(t, 4)
	a := newStoreOn(t, poolA, schema, nil)
	b := newStoreOn(t, poolB, schema, nil)
	ctx := t.Context()

	rec := testRecord("", "", nil)
	_, err := a.Accept(ctx, rec)
	require.NoError(t, err)
	ch, err := b.Watch(ctx, rec.ID)
	require.NoError(t, err)
	select {
	case <-ch:
		t.Fatal("watch closed before any change")
	case <-time.After(100 * time.Millisecond):
	}
	_, err = a.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateRunning
		return nil
	})
	require.NoError(t, err)
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("watch not closed within 2s of a change in another process")
	}
}

// TestPurgeBatches checks that Purge deletes at most limit records a call
// and keeps live records.
func TestPurgeBatches(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := t.Context()
	past := time.Now().Add(-time.Minute)
	for i := range 25 {
		rec := testRecord("", "", nil)
		if i < 20 {
			rec.State = asyncreq.StateSucceeded
			rec.ExpiresAt = past
		}
		_, err := s.Create(ctx, rec)
		require.NoError(t, err)
	}
	var counts []int
	for {
		n, err := s.Purge(ctx, time.Now(), 8)
		require.NoError(t, err)
		if n == 0 {
			break
		}
		counts = append(counts, n)
	}
	require.Equal(t, []int{8, 8, 4}, counts)
}

func TestContextErrorsUnwrapped(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := s.Dequeue(ctx, time.Minute)
	require.Equal(t, context.DeadlineExceeded, err)
	canceled, cancel2 := context.WithCancel(t.Context())
	cancel2()
	_, err = s.Accept(canceled, testRecord("", "", nil))
	require.Equal(t, context.Canceled, err)
	_, err = s.Get(canceled, asyncreq.NewID())
	require.Equal(t, context.Canceled, err)
}

// TestAckStaleAndCurrentTogether acks a stale lease and the current lease
// of the same job at the same moment, so that they often share an ack
// batch: only the current one settles the job.
func TestAckStaleAndCurrentTogether(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, &postgres.Options{Committers: 1})
	ctx := t.Context()
	for range 5 {
		_, err := s.Accept(ctx, testRecord("", "", nil))
		require.NoError(t, err)
		stale, err := s.Dequeue(ctx, 50*time.Millisecond)
		require.NoError(t, err)
		current, err := s.Dequeue(ctx, time.Minute) // due again once the first lease ran out
		require.NoError(t, err)
		require.Equal(t, stale.ID, current.ID)

		var wg sync.WaitGroup
		var staleErr, currentErr error
		wg.Go(func() { staleErr = s.Ack(ctx, stale) })
		wg.Go(func() { currentErr = s.Ack(ctx, current) })
		wg.Wait()
		require.ErrorIs(t, staleErr, asyncreq.ErrLeaseLost)
		require.NoError(t, currentErr)
	}
}

// TestUpdateGroupCommit runs many concurrent Updates, on the same and on
// different records, some refused by fn and one with a value the database
// cannot store, and checks that each Update has its own outcome.
func TestUpdateGroupCommit(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, &postgres.Options{Committers: 1})
	ctx := t.Context()
	recs := make([]*asyncreq.Record, 4)
	for i := range recs {
		recs[i] = testRecord("", "", nil)
		_, err := s.Accept(ctx, recs[i])
		require.NoError(t, err)
	}
	refused := errors.New("refused")
	const each = 30
	var wg sync.WaitGroup
	errs := make([][]error, len(recs))
	for i, rec := range recs {
		errs[i] = make([]error, each)
		for j := range each {
			wg.Go(func() {
				_, errs[i][j] = s.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
					switch {
					case j%5 == 4:
						return refused
					case i == 3 && j == 7:
						r.URL = "/bad\x00" // text cannot hold NUL
					}
					r.Attempts++
					return nil
				})
			})
		}
	}
	wg.Wait()
	for i, rec := range recs {
		ok := 0
		for j, err := range errs[i] {
			switch {
			case j%5 == 4:
				require.ErrorIs(t, err, refused)
			case i == 3 && j == 7:
				require.Error(t, err)
				require.NotErrorIs(t, err, refused)
			default:
				require.NoError(t, err, "record %d update %d", i, j)
				ok++
			}
		}
		got, err := s.Get(ctx, rec.ID)
		require.NoError(t, err)
		require.Equal(t, ok, got.Attempts, "record %d: every successful update applied once", i)
		require.Equal(t, "/jobs", got.URL)
	}

	_, err := s.Update(ctx, asyncreq.NewID(), func(*asyncreq.Record) error { return nil })
	require.ErrorIs(t, err, asyncreq.ErrNotFound)
	require.PanicsWithValue(t, "boom", func() {
		_, _ = s.Update(ctx, recs[0].ID, func(*asyncreq.Record) error { panic("boom") })
	}, "a panic in fn is raised in the caller")
	_, err = s.Update(ctx, recs[0].ID, func(r *asyncreq.Record) error { return nil })
	require.NoError(t, err, "the Backend works after a panic in fn")
}

// TestDequeueCanceledLosesNoJob dequeues with contexts that end at random
// moments, some while the claim is at the server, and checks that no job
// stays leased to nobody: every job is delivered long before its one-minute
// lease could run out.
func TestDequeueCanceledLosesNoJob(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := t.Context()
	const jobs = 200
	for range jobs {
		_, err := s.Accept(ctx, testRecord("", "", nil))
		require.NoError(t, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var acked atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; acked.Load() < jobs && time.Now().Before(deadline); i++ {
				// Mostly contexts that end within 3ms; every third call has
				// time enough, so that the jobs get done on a slow machine.
				d := time.Duration((g+i)%4) * time.Millisecond
				if i%3 == 2 {
					d = time.Second
				}
				dctx, cancel := context.WithTimeout(ctx, d)
				ls, err := s.DequeueBatch(dctx, 4, time.Minute)
				cancel()
				if err != nil {
					continue
				}
				for _, l := range ls {
					if s.Ack(ctx, l) == nil {
						acked.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, jobs, acked.Load(), "jobs left leased by canceled dequeues")
}

// TestUpdateLargeValues checks that the request and result bodies, which
// an Update sends only when they change, are kept, replaced and cleared
// as fn leaves them.
func TestUpdateLargeValues(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, nil)
	ctx := t.Context()
	rec := testRecord("", "", []byte("original body"))
	_, err := s.Accept(ctx, rec)
	require.NoError(t, err)

	steps := []struct {
		name      string
		fn        func(*asyncreq.Record)
		body, res []byte
		hasResult bool
		attempts  int
	}{
		{"unchanged bodies kept", func(r *asyncreq.Record) { r.Attempts = 1 }, []byte("original body"), nil, false, 1},
		{"result added", func(r *asyncreq.Record) { r.Result = &asyncreq.Result{Body: []byte("result")} }, []byte("original body"), []byte("result"), true, 1},
		{"result kept", func(r *asyncreq.Record) { r.Attempts = 2 }, []byte("original body"), []byte("result"), true, 2},
		{"body replaced", func(r *asyncreq.Record) { r.Body = []byte("new body") }, []byte("new body"), []byte("result"), true, 2},
		{"result body replaced", func(r *asyncreq.Record) { r.Result.Body = []byte("other") }, []byte("new body"), []byte("other"), true, 2},
		{"bodies cleared", func(r *asyncreq.Record) { r.Body = nil; r.Result = nil }, nil, nil, false, 2},
	}
	for _, st := range steps {
		_, err := s.Update(ctx, rec.ID, func(r *asyncreq.Record) error { st.fn(r); return nil })
		require.NoError(t, err, st.name)
		got, err := s.Get(ctx, rec.ID)
		require.NoError(t, err, st.name)
		require.Equal(t, st.body, got.Body, st.name)
		require.Equal(t, st.attempts, got.Attempts, st.name)
		if st.hasResult {
			require.NotNil(t, got.Result, st.name)
			require.Equal(t, st.res, got.Result.Body, st.name)
		} else {
			require.Nil(t, got.Result, st.name)
		}
	}
}

// TestUpdateConcurrentStores updates the same records through two Stores
// at once, so that their batches, written without locks, conflict: every
// update must be applied exactly once, none lost to a concurrent write.
func TestUpdateConcurrentStores(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 16)
	schema := newSchema(t, pool)
	// Without the poll cache: a Get of one Backend right after the other's
	// write is answered from the cache until the write's notification
	// arrives (see TestPollCacheSeesEveryWrite).
	stores := []*postgres.Backend{
		newStoreOn(t, pool, schema, &postgres.Options{Queue: "shared", Committers: 4, PollCacheAge: -1}),
		newStoreOn(t, pool, schema, &postgres.Options{Queue: "shared", Committers: 4, PollCacheAge: -1}),
	}
	ctx := t.Context()
	recs := make([]*asyncreq.Record, 3)
	for i := range recs {
		recs[i] = testRecord("", "", []byte("body"))
		_, err := stores[0].Accept(ctx, recs[i])
		require.NoError(t, err)
	}
	const each = 60
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range each {
		for _, rec := range recs {
			wg.Go(func() {
				_, err := stores[i%2].Update(ctx, rec.ID, func(r *asyncreq.Record) error {
					r.Attempts++
					r.UpdatedAt = time.Now().UTC()
					return nil
				})
				if err != nil {
					failed.Add(1)
				}
			})
		}
	}
	wg.Wait()
	require.Zero(t, failed.Load(), "updates failed")
	for _, rec := range recs {
		got, err := stores[1].Get(ctx, rec.ID)
		require.NoError(t, err)
		require.Equal(t, each, got.Attempts, "every update applied exactly once")
		require.Equal(t, []byte("body"), got.Body, "the unchanged body is kept")
	}
}
