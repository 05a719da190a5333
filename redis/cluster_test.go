package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/redis"
)

// newClusterClient returns a client of the Redis Cluster whose node
// addresses ASYNCREQ_TEST_REDIS_CLUSTER lists (comma-separated), skipping t
// when it is unset, and a fresh key prefix whose keys are deleted when t
// ends.
func newClusterClient(t *testing.T) (*goredis.ClusterClient, string) {
	t.Helper()
	addrs := os.Getenv("ASYNCREQ_TEST_REDIS_CLUSTER")
	if addrs == "" {
		t.Skip("ASYNCREQ_TEST_REDIS_CLUSTER is not set; set it to the comma-separated node addresses of a Redis Cluster (for example 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103) to run the Cluster tests")
	}
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Ping(t.Context()).Err(), "ASYNCREQ_TEST_REDIS_CLUSTER not reachable")
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "asyncreqtest:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		_ = c.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
			iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			for iter.Next(ctx) {
				_ = node.Del(ctx, iter.Val()).Err()
			}
			return nil
		})
	})
	return c, prefix
}

// TestClusterConformance runs the conformance kit on a Redis Cluster
// through a ClusterClient.
func TestClusterConformance(t *testing.T) {
	if os.Getenv("ASYNCREQ_TEST_REDIS_CLUSTER") == "" {
		t.Skip("ASYNCREQ_TEST_REDIS_CLUSTER is not set; see newClusterClient")
	}
	asyncreqtest.TestBackend(t, func(t *testing.T) asyncreq.Backend {
		c, prefix := newClusterClient(t)
		b, err := redis.New(t.Context(), c, &redis.Options{Prefix: prefix, MaxBlock: 200 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		return b
	}, &asyncreqtest.Options{LeaseTTL: time.Second})
}

// TestClusterQueuesSpreadOverShards checks that queues with different names
// can live on different shards, each queue's keys on one slot.
func TestClusterQueuesSpreadOverShards(t *testing.T) {
	c, prefix := newClusterClient(t)
	ctx := t.Context()
	nodes := map[string]bool{}
	for _, q := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		b, err := redis.New(ctx, c, &redis.Options{Prefix: prefix, Queue: q})
		require.NoError(t, err)
		defer b.Close()
		rec := testRecord("owner", "key")
		_, err = b.Accept(ctx, rec)
		require.NoError(t, err)
		l, err := b.Dequeue(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, rec.ID, l.ID)
		require.NoError(t, b.Ack(ctx, l))
		node, err := c.MasterForKey(ctx, prefix+"{"+q+"}:q")
		require.NoError(t, err)
		nodes[node.Options().Addr] = true
	}
	require.Greater(t, len(nodes), 1, "eight queues all on one shard")
}
