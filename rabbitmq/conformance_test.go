package rabbitmq_test

import (
	"testing"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/memory"
	"github.com/asyncreq/asyncreq/rabbitmq"
)

// noLeaseExpiry is why the kit's lease-expiry cases do not apply.
const noLeaseExpiry = "a RabbitMQ delivery stays leased while the consumer's connection lives; it returns when the connection drops (TestCrashedConsumer, TestReconnect)"

// TestConformance runs the asyncreqtest Queue cases, and the HTTP contract
// with the in-memory Store beside the RabbitMQ Queue.
func TestConformance(t *testing.T) {
	u := brokerURL(t)
	opts := &asyncreqtest.Options{
		NoLeaseExpiry: noLeaseExpiry,
		StatsPrefetch: "QueueStats counts the broker's ready messages, and a dequeuing Queue holds up to Prefetch more (TestQueueStatsWithConsumer)",
	}
	t.Run("Queue", func(t *testing.T) {
		asyncreqtest.TestQueue(t, func(t *testing.T) asyncreq.Queue {
			return newQueue(t, u, nil)
		}, opts)
	})
	t.Run("Handler", func(t *testing.T) {
		asyncreqtest.TestHandler(t, func(t *testing.T) asyncreq.Backend {
			store := memory.New(nil)
			t.Cleanup(func() { _ = store.Close() })
			return asyncreq.Pair(store, newQueue(t, u, nil))
		}, opts)
	})
}

// TestTwoInstances runs the kit's two-instance cases with the handler on
// one Queue and the workers on another, each on a connection of its own,
// on one RabbitMQ queue, as an API process and a worker process. Their
// Store is one in-memory Store seen through an asyncreqtest.InstanceView
// per instance, whose Watch sees only that instance's changes, as a
// database shared by two processes may.
func TestTwoInstances(t *testing.T) {
	u := brokerURL(t)
	asyncreqtest.TestTwoInstances(t, func(t *testing.T) (one, two asyncreq.Backend) {
		store := memory.New(nil)
		t.Cleanup(func() { _ = store.Close() })
		name := queueName(t, u)
		return asyncreq.Pair(asyncreqtest.InstanceView(store), newQueue(t, u, &rabbitmq.Options{Queue: name})),
			asyncreq.Pair(asyncreqtest.InstanceView(store), newQueue(t, u, &rabbitmq.Options{Queue: name}))
	}, &asyncreqtest.Options{NoLeaseExpiry: noLeaseExpiry})
}
