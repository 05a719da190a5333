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
	b, err := redis.New(c, &o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b, c
}

func TestNewValidatesOptions(t *testing.T) {
	_, err := redis.New(nil, nil)
	require.Error(t, err, "nil client")
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	_, err = redis.New(c, &redis.Options{Queue: "a{b}"})
	require.ErrorContains(t, err, "Options.Queue")
	_, err = redis.New(c, &redis.Options{MaxBlock: time.Microsecond})
	require.ErrorContains(t, err, "Options.MaxBlock")
	b, err := redis.New(c, nil)
	require.NoError(t, err)
	require.NotEmpty(t, b.Consumer())
	require.NoError(t, b.Close())
	require.ErrorIs(t, b.Enqueue(t.Context(), asyncreq.NewID(), 0), asyncreq.ErrClosed)
	_, err = b.Get(t.Context(), asyncreq.NewID())
	require.ErrorIs(t, err, asyncreq.ErrClosed)
}
