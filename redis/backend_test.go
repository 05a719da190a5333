package redis_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/redis"
)

// testRecord returns a pending record as the handler makes one.
func testRecord(owner, key string) *asyncreq.Record {
	now := time.Now()
	return &asyncreq.Record{
		ID:             asyncreq.NewID(),
		Owner:          owner,
		IdempotencyKey: key,
		BodyHash:       "0123",
		State:          asyncreq.StatePending,
		Method:         "POST",
		URL:            "/jobs",
		ContentType:    "application/json",
		Body:           []byte(`{"image":"cat.png","width":640}`),
		CreatedAt:      now,
		UpdatedAt:      now,
		Retention:      time.Hour,
		TombstoneTTL:   2 * time.Hour,
	}
}

// keys returns every key under prefix.
func keys(t *testing.T, c *goredis.Client, prefix string) []string {
	t.Helper()
	var out []string
	iter := c.Scan(t.Context(), 0, prefix+"*", 1000).Iterator()
	for iter.Next(t.Context()) {
		out = append(out, iter.Val())
	}
	require.NoError(t, iter.Err())
	return out
}

// crc16 is the CRC16-CCITT (XModem) that Redis Cluster hashes keys with.
func crc16(b string) uint16 {
	var crc uint16
	for i := 0; i < len(b); i++ {
		crc ^= uint16(b[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// slot is the Redis Cluster slot of key, hash tags included.
func slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % 16384
}

func TestSlotHashesLikeRedis(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	require.Equal(t, uint16(12739), slot("123456789"))
	require.Equal(t, slot("user1000"), slot("{user1000}.following"))
}

// TestAcceptIsOneSlotAndAtomic checks that an accept writes the record, its
// idempotency key and the stream entry together, all in one Cluster slot,
// and that a duplicate writes nothing.
func TestAcceptIsOneSlotAndAtomic(t *testing.T) {
	c := newClient(t)
	prefix := newPrefix(t, c)
	b, err := redis.New(t.Context(), c, &redis.Options{Prefix: prefix, Queue: "images"})
	require.NoError(t, err)
	defer b.Close()
	ctx := t.Context()
	rec := testRecord("alice", "key-1")
	existing, err := b.Accept(ctx, rec)
	require.NoError(t, err)
	require.Nil(t, existing)
	require.False(t, rec.Enqueued, "Accept must not change the caller's record")

	got, err := b.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.True(t, got.Enqueued, "Accept stores the record with Enqueued set")

	mine := keys(t, c, prefix)
	require.GreaterOrEqual(t, len(mine), 3, "record, idempotency key and stream: %v", mine)
	for _, k := range mine {
		require.Equal(t, slot(mine[0]), slot(k), "keys %s and %s are in different slots", mine[0], k)
	}

	dup := testRecord("alice", "key-1")
	existing, err = b.Accept(ctx, dup)
	require.ErrorIs(t, err, asyncreq.ErrDuplicate)
	require.NotNil(t, existing)
	require.Equal(t, rec.ID, existing.ID)
	_, err = b.Get(ctx, dup.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "a duplicate stores nothing")

	// The same key of another owner is another request.
	other := testRecord("bob", "key-1")
	_, err = b.Accept(ctx, other)
	require.NoError(t, err)

	ls, err := b.DequeueBatch(ctx, 10, time.Minute)
	require.NoError(t, err)
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.ID)
		require.NoError(t, b.Ack(ctx, l))
	}
	require.ElementsMatch(t, []string{rec.ID, other.ID}, ids, "the duplicate enqueued nothing")
}

// TestFinalRecordExpires checks the TTLs set when a record becomes final:
// the record and its idempotency key at ExpiresAt, the tombstone at
// ExpiresAt plus TombstoneTTL.
func TestFinalRecordExpires(t *testing.T) {
	c := newClient(t)
	prefix := newPrefix(t, c)
	b, err := redis.New(t.Context(), c, &redis.Options{Prefix: prefix})
	require.NoError(t, err)
	defer b.Close()
	ctx := t.Context()

	rec := testRecord("", "key-2")
	_, err = b.Create(ctx, rec)
	require.NoError(t, err)
	for _, k := range keys(t, c, prefix) {
		ttl, err := c.PTTL(ctx, k).Result()
		require.NoError(t, err)
		require.Equal(t, time.Duration(-1), ttl, "%s of an unfinished record must not expire", k)
	}

	expires := time.Now().Add(time.Hour)
	_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateSucceeded
		r.Result = &asyncreq.Result{Body: []byte("ok")}
		r.ExpiresAt = expires
		return nil
	})
	require.NoError(t, err)
	var sawRecord, sawKey, sawTomb bool
	for _, k := range keys(t, c, prefix) {
		ttl, err := c.PTTL(ctx, k).Result()
		require.NoError(t, err)
		switch {
		case strings.HasSuffix(k, ":r:"+rec.ID):
			sawRecord = true
			require.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5, "record TTL")
		case strings.Contains(k, ":k:"):
			sawKey = true
			require.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5, "idempotency key TTL")
		case strings.HasSuffix(k, ":t:"+rec.ID):
			sawTomb = true
			require.InDelta(t, (3 * time.Hour).Seconds(), ttl.Seconds(), 5, "tombstone TTL")
		}
	}
	require.True(t, sawRecord && sawKey && sawTomb, "record %v, key %v, tombstone %v", sawRecord, sawKey, sawTomb)

	n, err := b.Purge(ctx, time.Now().Add(2*time.Hour), 100)
	require.NoError(t, err)
	require.Zero(t, n, "Purge leaves expiry to Redis")

	// An ExpiresAt that has passed removes the record at once; the
	// tombstone answers Gone.
	_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.ExpiresAt = time.Now().Add(-time.Second)
		return nil
	})
	require.NoError(t, err)
	_, err = b.Get(ctx, rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrGone)
	_, err = b.Create(ctx, testRecord("", "key-2"))
	require.NoError(t, err, "the idempotency key expired with its record")
}

// TestLegacyTombstoneNamesNoOwner: a tombstone written before tombstones
// kept their owner ("1") is a plain ErrGone, which a handler with owners
// answers 404; one written now names the owner.
func TestLegacyTombstoneNamesNoOwner(t *testing.T) {
	c := newClient(t)
	prefix := newPrefix(t, c)
	b, err := redis.New(t.Context(), c, &redis.Options{Prefix: prefix})
	require.NoError(t, err)
	defer b.Close()
	ctx := t.Context()

	rec := testRecord("alice", "")
	_, err = b.Create(ctx, rec)
	require.NoError(t, err)
	require.NoError(t, b.Delete(ctx, rec.ID, true))
	var tomb string
	for _, k := range keys(t, c, prefix) {
		if strings.HasSuffix(k, ":t:"+rec.ID) {
			tomb = k
		}
	}
	require.NotEmpty(t, tomb, "Delete with a tombstone leaves one")
	_, err = b.Get(ctx, rec.ID)
	var ge *asyncreq.GoneError
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, "alice", ge.Owner)

	require.NoError(t, c.Set(ctx, tomb, "1", time.Hour).Err())
	_, err = b.Get(ctx, rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrGone)
	assert.False(t, errors.As(err, &ge), "a tombstone without an owner names none")
}

// TestAckedEntriesAreDeleted checks that settled entries leave nothing in
// the stream, so that memory stays bounded under constant load.
func TestAckedEntriesAreDeleted(t *testing.T) {
	c := newClient(t)
	prefix := newPrefix(t, c)
	b, err := redis.New(t.Context(), c, &redis.Options{Prefix: prefix})
	require.NoError(t, err)
	defer b.Close()
	ctx := t.Context()
	const n = 200
	for i := range n {
		require.NoError(t, b.Enqueue(ctx, asyncreq.NewID(), 0))
		if i%10 == 0 {
			require.NoError(t, b.Enqueue(ctx, asyncreq.NewID(), time.Millisecond))
		}
	}
	done := 0
	for done < n+n/10 {
		ls, err := b.DequeueBatch(ctx, 50, time.Minute)
		require.NoError(t, err)
		for i, l := range ls {
			if i%7 == 0 && l.Delivery == 1 {
				require.NoError(t, b.Nack(ctx, l, 0))
				continue
			}
			require.NoError(t, b.Ack(ctx, l))
			done++
		}
	}
	stream := prefix + "{default}:q"
	require.Zero(t, c.XLen(ctx, stream).Val(), "acked entries are deleted from the stream")
	pending, err := c.XPending(ctx, stream, "asyncreq").Result()
	require.NoError(t, err)
	require.Zero(t, pending.Count)
	require.Zero(t, c.ZCard(ctx, prefix+"{default}:d").Val())
}

// TestNackCountsDeliveries checks that an entry handed back by Nack keeps
// counting its deliveries, with and without delay.
func TestNackCountsDeliveries(t *testing.T) {
	b, _ := newBackend(t, nil)
	ctx := t.Context()
	id := asyncreq.NewID()
	require.NoError(t, b.Enqueue(ctx, id, 0))
	l, err := b.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, 1, l.Delivery)
	require.NoError(t, b.Nack(ctx, l, 0))
	l, err = b.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, id, l.ID)
	require.Equal(t, 2, l.Delivery)
	require.NoError(t, b.Nack(ctx, l, 50*time.Millisecond))
	l, err = b.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, 3, l.Delivery)
	require.ErrorIs(t, b.Nack(ctx, l, 0), nil)
	require.ErrorIs(t, b.Ack(ctx, l), asyncreq.ErrLeaseLost, "a settled lease")
	require.ErrorIs(t, b.Ack(ctx, &asyncreq.Lease{ID: id}), asyncreq.ErrLeaseLost, "a lease of another backend")
	require.ErrorIs(t, b.Ack(ctx, nil), asyncreq.ErrLeaseLost, "no lease")
}

// TestReclaimByAnotherConsumer checks that a lease that ran out is
// reclaimed by another Backend's Dequeue, and that the first holder's
// Extend, Ack and Nack then fail with ErrLeaseLost.
func TestReclaimByAnotherConsumer(t *testing.T) {
	c := newClient(t)
	prefix := newPrefix(t, c)
	first, err := redis.New(t.Context(), c, &redis.Options{Prefix: prefix, Consumer: "first"})
	require.NoError(t, err)
	defer first.Close()
	second, err := redis.New(t.Context(), c, &redis.Options{Prefix: prefix, Consumer: "second", MaxBlock: 50 * time.Millisecond})
	require.NoError(t, err)
	defer second.Close()
	ctx := t.Context()
	const ttl = 300 * time.Millisecond

	id := asyncreq.NewID()
	require.NoError(t, first.Enqueue(ctx, id, 0))
	old, err := first.Dequeue(ctx, ttl)
	require.NoError(t, err)
	require.NoError(t, first.Extend(ctx, old, ttl))

	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	l, err := second.Dequeue(dctx, ttl)
	require.NoError(t, err)
	require.Equal(t, id, l.ID)
	require.Equal(t, 2, l.Delivery)
	require.GreaterOrEqual(t, time.Since(start), ttl/2, "reclaimed only after the lease ran out")

	require.ErrorIs(t, first.Extend(ctx, old, ttl), asyncreq.ErrLeaseLost)
	require.ErrorIs(t, first.Ack(ctx, old), asyncreq.ErrLeaseLost)
	require.ErrorIs(t, first.Nack(ctx, old, 0), asyncreq.ErrLeaseLost)
	require.NoError(t, second.Ack(ctx, l))
}

// TestDequeueCancelUnblocksRead checks that canceling a Dequeue blocked in
// a long XREADGROUP ends it at once (CLIENT UNBLOCK from the pool's other
// connection), and that the pooled connection it used goes back clean: on
// a plain client, and on an AutoPipeliner with Options.BlockingClient.
func TestDequeueCancelUnblocksRead(t *testing.T) {
	t.Run("client=plain", func(t *testing.T) { testDequeueCancelUnblocksRead(t, false) })
	t.Run("client=autopipeline", func(t *testing.T) { testDequeueCancelUnblocksRead(t, true) })
}

func testDequeueCancelUnblocksRead(t *testing.T, autopipeline bool) {
	opt := redisOptions(t)
	opt.PoolSize = 2
	c := goredis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() }) // after newPrefix's cleanup, which uses c
	prefix := newPrefix(t, c)
	var client goredis.UniversalClient = c
	var blocking *goredis.Client
	if autopipeline {
		ap, err := c.AutoPipeline()
		require.NoError(t, err)
		t.Cleanup(func() { _ = ap.Close() })
		client, blocking = ap, c
	}
	b, err := redis.New(t.Context(), client, &redis.Options{Prefix: prefix, MaxBlock: time.Minute, BlockingClient: blocking})
	require.NoError(t, err)
	defer b.Close()

	ctx, cancel := context.WithCancel(t.Context())
	type result struct {
		err error
		at  time.Time
	}
	out := make(chan result, 1)
	go func() {
		_, err := b.Dequeue(ctx, time.Minute)
		out <- result{err, time.Now()}
	}()
	time.Sleep(200 * time.Millisecond) // let it block in XREADGROUP
	cancel()
	canceled := time.Now()
	var r result
	select {
	case r = <-out:
	case <-time.After(10 * time.Second):
		t.Fatal("Dequeue did not return after its context was canceled")
	}
	require.ErrorIs(t, r.err, context.Canceled)
	require.Less(t, r.at.Sub(canceled), 500*time.Millisecond)

	// A connection still blocked would answer the next command with the
	// read's reply; with a pool of two, every command below would see it.
	for range 5 {
		id := asyncreq.NewID()
		require.NoError(t, b.Enqueue(t.Context(), id, 0))
		l, err := b.Dequeue(t.Context(), time.Minute)
		require.NoError(t, err)
		require.Equal(t, id, l.ID)
		require.Equal(t, 1, l.Delivery)
		require.NoError(t, b.Ack(t.Context(), l))
		_, err = b.Get(t.Context(), id)
		require.ErrorIs(t, err, asyncreq.ErrNotFound)
	}
}

// TestIdleConsumersAreRemoved checks that a Dequeue removes consumers
// that hold nothing and were idle for longer than ConsumerIdleTTL, and
// keeps those that hold entries.
func TestIdleConsumersAreRemoved(t *testing.T) {
	c := newClient(t)
	prefix := newPrefix(t, c)
	ctx := t.Context()
	mk := func(name string) *redis.Backend {
		b, err := redis.New(ctx, c, &redis.Options{Prefix: prefix, Consumer: name, ConsumerIdleTTL: 20 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	idle, holder, cleaner := mk("idle"), mk("holder"), mk("cleaner")
	require.NoError(t, idle.Enqueue(ctx, asyncreq.NewID(), 0))
	require.NoError(t, idle.Enqueue(ctx, asyncreq.NewID(), 0))
	l, err := idle.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	require.NoError(t, idle.Ack(ctx, l))
	_, err = holder.Dequeue(ctx, time.Minute)
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // the idle time Redis measures

	dctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	_, err = cleaner.Dequeue(dctx, time.Minute)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	consumers, err := c.XInfoConsumers(ctx, prefix+"{default}:q", "asyncreq").Result()
	require.NoError(t, err)
	var names []string
	for _, cs := range consumers {
		names = append(names, cs.Name)
	}
	assert.Contains(t, names, "holder", "a consumer holding an entry stays")
	assert.NotContains(t, names, "idle", "an idle consumer holding nothing is removed")
}

// TestUpdateAfterAnotherWriter checks that an Update through a Backend
// whose last sight of the record is stale (another Backend changed it
// since) applies fn to the record as it is now, and that an error of fn
// counts only when fn saw the current record.
func TestUpdateAfterAnotherWriter(t *testing.T) {
	c := newClient(t)
	prefix := newPrefix(t, c)
	a, err := redis.New(t.Context(), c, &redis.Options{Prefix: prefix})
	require.NoError(t, err)
	defer a.Close()
	other, err := redis.New(t.Context(), c, &redis.Options{Prefix: prefix})
	require.NoError(t, err)
	defer other.Close()
	ctx := t.Context()

	rec := testRecord("", "")
	_, err = a.Create(ctx, rec) // a has seen version 1
	require.NoError(t, err)
	token := asyncreq.NewID()
	_, err = other.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateRunning
		r.LeaseToken = token
		r.Attempts = 1
		return nil
	})
	require.NoError(t, err)

	// A fn that refuses unless it holds the lease, as a worker's outcome.
	calls := 0
	got, err := a.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		calls++
		if r.LeaseToken != token {
			return asyncreq.ErrLeaseLost
		}
		r.State = asyncreq.StateSucceeded
		r.Result = &asyncreq.Result{Body: []byte("done")}
		return nil
	})
	require.NoError(t, err, "the refusal on the stale copy must not count")
	require.Equal(t, asyncreq.StateSucceeded, got.State)
	require.Equal(t, 2, calls)

	// Changes on a stale copy are redone on the current record.
	_, err = other.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.CancelRequested = true
		return nil
	})
	require.NoError(t, err)
	got, err = a.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.Progress = &asyncreq.Progress{Percent: 100}
		return nil
	})
	require.NoError(t, err)
	require.True(t, got.CancelRequested, "the other writer's change is kept")
	stored, err := other.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.True(t, stored.CancelRequested)
	require.Equal(t, 100, stored.Progress.Percent)
	require.Equal(t, "done", string(stored.Result.Body))
	require.Equal(t, rec.Body, stored.Body)

	// A refusal on the current record is returned.
	_, err = a.Update(ctx, rec.ID, func(r *asyncreq.Record) error { return asyncreq.ErrFinished })
	require.ErrorIs(t, err, asyncreq.ErrFinished)
}
