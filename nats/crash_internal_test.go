package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// newTestBackend returns a Backend on a bucket and stream of the test's
// own, or skips t when ASYNCREQ_TEST_NATS is not set.
func newTestBackend(t *testing.T) *Backend {
	t.Helper()
	url := os.Getenv("ASYNCREQ_TEST_NATS")
	if url == "" {
		t.Skip("ASYNCREQ_TEST_NATS is not set (e.g. nats://127.0.0.1:4222); skipping the NATS JetStream integration tests")
	}
	nc, err := natsgo.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	var r [6]byte
	_, _ = rand.Read(r[:])
	s := hex.EncodeToString(r[:])
	opts := &Options{
		Bucket: "asyncreq_itest_" + s, Stream: "ASYNCREQ_ITEST_" + strings.ToUpper(s),
		Subject: "asyncreq.itest." + s, Consumer: "w_" + s, AckWait: time.Second, Storage: jetstream.MemoryStorage,
	}
	b, err := New(t.Context(), js, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = b.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteKeyValue(ctx, opts.Bucket)
		_ = js.DeleteStream(ctx, opts.Stream)
	})
	return b
}

func pendingRecord(owner, key string) *asyncreq.Record {
	now := time.Now()
	return &asyncreq.Record{
		ID: asyncreq.NewID(), Owner: owner, IdempotencyKey: key, BodyHash: "h1",
		State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now,
		Retention: time.Hour, TombstoneTTL: time.Hour,
	}
}

// TestCrashAfterIdempotencyKey: a Create that wrote its idempotency key and
// then died. A repeat soon after is told the first is still being accepted
// (a pending, unenqueued record: the handler answers 409); once the key is
// older than the grace period, a repeat replaces it and succeeds.
func TestCrashAfterIdempotencyKey(t *testing.T) {
	b := newTestBackend(t)
	ctx := t.Context()
	lost := pendingRecord("alice", "k1")
	val, err := json.Marshal(idemValue{ID: lost.ID, BodyHash: lost.BodyHash, CreatedAt: lost.CreatedAt})
	require.NoError(t, err)
	_, err = b.kv.Create(ctx, idemKeyOf("alice", "k1"), val)
	require.NoError(t, err)
	_, err = b.kv.Put(ctx, prefixUnenqueued+lost.ID, nil)
	require.NoError(t, err)

	repeat := pendingRecord("alice", "k1")
	got, err := b.Create(ctx, repeat)
	require.ErrorIs(t, err, asyncreq.ErrDuplicate)
	require.Equal(t, lost.ID, got.ID)
	require.False(t, got.Enqueued, "the first create looks still in progress")
	require.Equal(t, "h1", got.BodyHash)

	b.createGrace = 0
	got, err = b.Create(ctx, repeat)
	require.NoError(t, err, "an abandoned key is taken over")
	require.Nil(t, got)
	again, err := b.Create(ctx, pendingRecord("alice", "k1"))
	require.ErrorIs(t, err, asyncreq.ErrDuplicate)
	require.Equal(t, repeat.ID, again.ID)

	// The marker of the lost record is dropped by the sweep listing once
	// it is older than the cutoff; the repeat's record is listed.
	ids, err := b.ListUnenqueued(ctx, time.Now().Add(time.Second), 10)
	require.NoError(t, err)
	require.Equal(t, []string{repeat.ID}, ids)
	_, err = b.kv.Get(ctx, prefixUnenqueued+lost.ID)
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "a marker without a record is dropped")
}

// TestLargeBodiesAreChunkedAndCleanedUp: bodies above the inline limit go
// to blob keys, which Update reuses and Delete removes.
func TestLargeBodiesAreChunkedAndCleanedUp(t *testing.T) {
	b := newTestBackend(t)
	ctx := t.Context()
	rec := pendingRecord("", "")
	rec.Body = make([]byte, 3*b.chunkSize+5)
	_, _ = rand.Read(rec.Body)
	_, err := b.Create(ctx, rec)
	require.NoError(t, err)
	blobs := func() []string {
		ids, err := b.listKeys(ctx, prefixBlob, 0)
		require.NoError(t, err)
		return ids
	}
	require.Len(t, blobs(), 4, "a body of 3 chunks and a bit")

	for i := range 3 {
		_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error { r.Attempts = i; return nil })
		require.NoError(t, err)
	}
	require.Len(t, blobs(), 4, "an Update that leaves the body alone reuses its blob")

	_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateSucceeded
		r.Result = &asyncreq.Result{Body: make([]byte, b.inlineMax+1)}
		r.ExpiresAt = time.Now()
		return nil
	})
	require.NoError(t, err)
	require.Len(t, blobs(), 5)
	got, err := b.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, rec.Body, got.Body)
	require.Len(t, got.Result.Body, b.inlineMax+1)

	n, err := b.Purge(ctx, time.Now(), 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Empty(t, blobs(), "purging a record removes its blobs")
	_, err = b.Get(ctx, rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrGone)

	// Past the tombstone, Purge removes it and its marker.
	_, err = b.Purge(ctx, time.Now().Add(2*time.Hour), 10)
	require.NoError(t, err)
	_, err = b.kv.Get(ctx, prefixRecord+rec.ID)
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	_, err = b.kv.Get(ctx, prefixExpiry+rec.ID)
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
}

// TestLegacyTombstoneNamesNoOwner: a tombstone written before tombstones
// kept their owner (its end alone) is a plain ErrGone, which a handler
// with owners answers 404; one written now names the owner, even one with
// a newline.
func TestLegacyTombstoneNamesNoOwner(t *testing.T) {
	b := newTestBackend(t)
	ctx := t.Context()
	rec := pendingRecord("alice\nand bob", "")
	_, err := b.Create(ctx, rec)
	require.NoError(t, err)
	require.NoError(t, b.Delete(ctx, rec.ID, true))
	_, err = b.Get(ctx, rec.ID)
	var ge *asyncreq.GoneError
	require.ErrorAs(t, err, &ge)
	require.Equal(t, "alice\nand bob", ge.Owner)

	legacy := append([]byte{kindTombstone}, time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)...)
	_, err = b.kv.Put(ctx, prefixRecord+rec.ID, legacy)
	require.NoError(t, err)
	_, err = b.Get(ctx, rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrGone)
	require.False(t, errors.As(err, &ge), "a tombstone without an owner names none")
}
