package memory_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/memory"
)

// TestConformance runs the whole conformance kit against the memory
// backend: one Backend is both the Store and the Queue.
func TestConformance(t *testing.T) {
	asyncreqtest.TestBackend(t, func(t *testing.T) (asyncreq.Store, asyncreq.Queue) {
		b := memory.New(nil)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		return b, b
	}, nil)
}

// TestConformanceSeparateQueue runs the HTTP contract over a Store and a
// Queue that are different values, so that the handler takes the path
// without Accepter: Create, Enqueue, then mark the record enqueued.
func TestConformanceSeparateQueue(t *testing.T) {
	asyncreqtest.TestHandler(t, func(t *testing.T) (asyncreq.Store, asyncreq.Queue) {
		store, queue := memory.New(nil), memory.New(nil)
		t.Cleanup(func() {
			require.NoError(t, queue.Close())
			require.NoError(t, store.Close())
		})
		return store, queue
	}, nil)
}
