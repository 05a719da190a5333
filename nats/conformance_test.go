package nats_test

import (
	"testing"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
)

// TestConformance runs the asyncreqtest kit: the Backend as Store and as
// Queue, and the HTTP contract on it. The lease is the consumer's AckWait.
func TestConformance(t *testing.T) {
	connect(t)
	asyncreqtest.TestBackend(t, func(t *testing.T) asyncreq.Backend {
		b := newBackend(t, nil, nil)
		return b
	}, &asyncreqtest.Options{LeaseTTL: testAckWait})
}
