package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncreq/asyncreq/nats"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testAckWait is the AckWait (the lease) of the test backends: short, so
// that expiry cases run quickly.
const testAckWait = time.Second

// connect returns a JetStream context on the server that
// ASYNCREQ_TEST_NATS names, or skips t when it is not set.
func connect(t testing.TB) jetstream.JetStream {
	t.Helper()
	url := os.Getenv("ASYNCREQ_TEST_NATS")
	if url == "" {
		t.Skip("ASYNCREQ_TEST_NATS is not set (e.g. nats://127.0.0.1:4222); skipping the NATS JetStream integration tests")
	}
	nc, err := natsgo.Connect(url, natsgo.Name("asyncreq-test"))
	require.NoError(t, err, "connect to %s", url)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// suffix returns a random name part, so that every test has its own
// bucket, stream, subject and consumer.
func suffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// testOptions returns Options with names of their own.
func testOptions() *nats.Options {
	s := suffix()
	return &nats.Options{
		Bucket:   "asyncreq_test_" + s,
		Stream:   "ASYNCREQ_TEST_" + strings.ToUpper(s),
		Subject:  "asyncreq.test." + s,
		Consumer: "worker_" + s,
		AckWait:  testAckWait,
		Storage:  jetstream.MemoryStorage,
	}
}

// newBackend returns a Backend on a fresh bucket and stream, removed when
// t ends.
func newBackend(t testing.TB, js jetstream.JetStream, opts *nats.Options) *nats.Backend {
	t.Helper()
	if js == nil {
		js = connect(t)
	}
	if opts == nil {
		opts = testOptions()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := nats.New(ctx, js, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, b.Close())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteKeyValue(ctx, opts.Bucket)
		_ = js.DeleteStream(ctx, opts.Stream)
	})
	return b
}

func TestNewRejectsBadOptions(t *testing.T) {
	js := connect(t)
	ctx := t.Context()
	_, err := nats.New(ctx, nil, nil)
	require.Error(t, err)
	_, err = nats.New(ctx, js, &nats.Options{AckWait: time.Millisecond})
	require.ErrorContains(t, err, "AckWait")
	_, err = nats.New(ctx, js, &nats.Options{Replicas: -1})
	require.ErrorContains(t, err, "Replicas")
}

func TestNewUpdatesExisting(t *testing.T) {
	js := connect(t)
	opts := testOptions()
	newBackend(t, js, opts)
	again := *opts
	again.AckWait = 2 * time.Second
	again.TTL = time.Hour
	b, err := nats.New(t.Context(), js, &again)
	require.NoError(t, err, "New on an existing bucket, stream and consumer updates them")
	require.NoError(t, b.Close())
	cons, err := js.Consumer(t.Context(), opts.Stream, opts.Consumer)
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, cons.CachedInfo().Config.AckWait)
	require.Equal(t, -1, cons.CachedInfo().Config.MaxDeliver, "MaxDeliver is unlimited: the worker's MaxAttempts bounds attempts")
	kv, err := js.KeyValue(t.Context(), opts.Bucket)
	require.NoError(t, err)
	st, err := kv.Status(t.Context())
	require.NoError(t, err)
	require.Equal(t, time.Hour, st.TTL())
	require.Equal(t, int64(1), st.History())
	stream, err := js.Stream(t.Context(), opts.Stream)
	require.NoError(t, err)
	cfg := stream.CachedInfo().Config
	require.Equal(t, jetstream.WorkQueuePolicy, cfg.Retention)
	require.Equal(t, jetstream.MemoryStorage, cfg.Storage, "the storage setting is applied")
	require.Equal(t, 1, cfg.Replicas)
	require.Equal(t, []string{opts.Subject}, cfg.Subjects)
}
