package redis_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/redis"
)

// TestConformance runs the asyncreqtest kit (Store, Queue and the HTTP
// contract) against the Redis server of ASYNCREQ_TEST_REDIS.
func TestConformance(t *testing.T) {
	redisOptions(t)
	asyncreqtest.TestBackend(t, func(t *testing.T) asyncreq.Backend {
		b, _ := newBackend(t, nil)
		return b
	}, &asyncreqtest.Options{LeaseTTL: time.Second})
}

// TestConformanceAutoPipeline runs the kit against a Backend on go-redis's
// AutoPipeliner, which batches the commands of concurrent callers, with
// the blocking reads on the plain client under it (Options.BlockingClient).
func TestConformanceAutoPipeline(t *testing.T) {
	redisOptions(t)
	asyncreqtest.TestBackend(t, func(t *testing.T) asyncreq.Backend {
		c := newClient(t)
		ap, err := c.AutoPipeline()
		require.NoError(t, err)
		t.Cleanup(func() { _ = ap.Close() })
		b, err := redis.New(t.Context(), ap, &redis.Options{Prefix: newPrefix(t, c), BlockingClient: c})
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		return b
	}, &asyncreqtest.Options{LeaseTTL: time.Second})
}

// TestTwoInstances runs the kit's two-instance cases with the handler on
// one Backend and the workers on another, each on a client of its own, on
// one key prefix, as an API process and a worker process.
func TestTwoInstances(t *testing.T) {
	redisOptions(t)
	asyncreqtest.TestTwoInstances(t, func(t *testing.T) (asyncreq.Backend, asyncreq.Backend) {
		prefix := newPrefix(t, newClient(t))
		a, _ := newBackend(t, &redis.Options{Prefix: prefix})
		b, _ := newBackend(t, &redis.Options{Prefix: prefix})
		return a, b
	}, &asyncreqtest.Options{LeaseTTL: time.Second})
}
