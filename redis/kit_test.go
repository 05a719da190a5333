package redis_test

import (
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
)

// TestConformance runs the asyncreqtest kit (Store, Queue and the HTTP
// contract) against the Redis server of ASYNCREQ_TEST_REDIS.
func TestConformance(t *testing.T) {
	redisOptions(t)
	asyncreqtest.TestBackend(t, func(t *testing.T) (asyncreq.Store, asyncreq.Queue) {
		b, _ := newBackend(t, nil)
		return b, b
	}, &asyncreqtest.Options{LeaseTTL: time.Second})
}
