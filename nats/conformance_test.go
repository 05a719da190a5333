package nats_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/nats"
)

// kitOptions are the asyncreqtest options of the Backend: its lease is
// the consumer's AckWait, and its QueueStats counts messages as JetStream
// does.
var kitOptions = &asyncreqtest.Options{
	LeaseTTL:       testAckWait,
	StatsTotalOnly: "JetStream counts a message by whether it was delivered, not by whether it is delayed",
}

// TestConformance runs the asyncreqtest kit: the Backend as Store and as
// Queue, and the HTTP contract on it. The lease is the consumer's AckWait.
func TestConformance(t *testing.T) {
	connect(t)
	asyncreqtest.TestBackend(t, func(t *testing.T) asyncreq.Backend {
		b := newBackend(t, nil, nil)
		return b
	}, kitOptions)
}

// TestTwoInstances runs the kit's two-instance cases with the handler on
// one Backend and the workers on another, each on a connection of its
// own, on one bucket, stream and consumer, as an API process and a worker
// process.
func TestTwoInstances(t *testing.T) {
	connect(t)
	asyncreqtest.TestTwoInstances(t, func(t *testing.T) (one, two asyncreq.Backend) {
		opts := testOptions()
		a := newBackend(t, nil, opts) // removes the bucket and stream when t ends
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		b, err := nats.New(ctx, connect(t), opts)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		return a, b
	}, &asyncreqtest.Options{LeaseTTL: testAckWait})
}
