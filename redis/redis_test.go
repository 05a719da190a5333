package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/redis"
)

func TestMain(m *testing.M) {
	// The outage tests make the client log every failed dial; the tests
	// check the outcomes instead.
	logging.Disable()
	goleak.VerifyTestMain(m)
}

// redisOptions returns the client options for the server named by
// ASYNCREQ_TEST_REDIS, skipping t when it is unset.
func redisOptions(t testing.TB) *goredis.Options {
	t.Helper()
	url := os.Getenv("ASYNCREQ_TEST_REDIS")
	if url == "" {
		t.Skip("ASYNCREQ_TEST_REDIS is not set; set it to a Redis URL (for example redis://127.0.0.1:6379/0) to run the Redis integration tests")
	}
	opt, err := goredis.ParseURL(url)
	require.NoError(t, err, "ASYNCREQ_TEST_REDIS")
	return opt
}

// newClient returns a client of the test server, closed when t ends.
func newClient(t testing.TB) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(redisOptions(t))
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Ping(t.Context()).Err(), "ASYNCREQ_TEST_REDIS server not reachable")
	return c
}

// newPrefix returns a random key prefix and deletes every key under it
// when t ends.
func newPrefix(t testing.TB, c *goredis.Client) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "asyncreqtest:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			_ = c.Del(ctx, keys...).Err()
		}
	})
	return prefix
}

// newBackend returns a Backend on a client of its own with a fresh
// prefix.
func newBackend(t testing.TB, opts *redis.Options) (*redis.Backend, *goredis.Client) {
	t.Helper()
	c := newClient(t)
	var o redis.Options
	if opts != nil {
		o = *opts
	}
	if o.Prefix == "" {
		o.Prefix = newPrefix(t, c)
	}
	b, err := redis.New(t.Context(), c, &o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b, c
}

func TestNewValidatesOptions(t *testing.T) {
	ctx := t.Context()
	_, err := redis.New(ctx, nil, nil)
	require.Error(t, err, "nil client")
	// Options are checked before New talks to the server.
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	_, err = redis.New(ctx, c, &redis.Options{Queue: "a{b}"})
	require.ErrorContains(t, err, "Options.Queue")
	_, err = redis.New(ctx, c, &redis.Options{MaxBlock: time.Microsecond})
	require.ErrorContains(t, err, "Options.MaxBlock")
}

// TestNewReachesServer: New fails when it cannot create the queue's
// consumer group (no server, a key of another type where the stream
// goes), returns ctx.Err() as it is when ctx has ended, and otherwise
// leaves the stream and its group in place, also when they exist.
func TestNewReachesServer(t *testing.T) {
	ctx := t.Context()
	down := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer down.Close()
	_, err := redis.New(ctx, down, nil)
	require.ErrorContains(t, err, "redis: create consumer group", "no server")
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = redis.New(canceled, down, nil)
	require.Equal(t, context.Canceled, err, "a context that ended before New")

	c := newClient(t)
	prefix := newPrefix(t, c)
	require.NoError(t, c.Set(ctx, prefix+"{taken}:q", "not a stream", 0).Err())
	_, err = redis.New(ctx, c, &redis.Options{Prefix: prefix, Queue: "taken"})
	require.ErrorContains(t, err, "WRONGTYPE", "a string where the stream goes")

	b, err := redis.New(ctx, c, &redis.Options{Prefix: prefix, Group: "workers"})
	require.NoError(t, err)
	require.NotEmpty(t, b.Consumer())
	groups, err := c.XInfoGroups(ctx, prefix+"{default}:q").Result()
	require.NoError(t, err)
	require.Len(t, groups, 1)
	require.Equal(t, "workers", groups[0].Name)
	again, err := redis.New(ctx, c, &redis.Options{Prefix: prefix, Group: "workers"})
	require.NoError(t, err, "the group exists")
	require.NoError(t, again.Close())

	require.NoError(t, b.Close())
	require.ErrorIs(t, b.Enqueue(ctx, asyncreq.NewID(), 0), asyncreq.ErrClosed)
	_, err = b.Get(ctx, asyncreq.NewID())
	require.ErrorIs(t, err, asyncreq.ErrClosed)
}
