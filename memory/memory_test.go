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
	asyncreqtest.TestBackend(t, func(t *testing.T) asyncreq.Backend {
		b := memory.New(nil)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		return b
	}, nil)
}

// TestConformanceSeparateQueue runs the whole kit over asyncreq.Pair of a
// Store and a Queue that are different values: the Pair accepts in two
// steps (Create, Enqueue, then mark the record enqueued), passes on the
// Store's Watcher and UnenqueuedLister and the Queue's BatchDequeuer, and
// is no Completer.
func TestConformanceSeparateQueue(t *testing.T) {
	asyncreqtest.TestBackend(t, func(t *testing.T) asyncreq.Backend {
		store, queue := memory.New(nil), memory.New(nil)
		t.Cleanup(func() {
			require.NoError(t, queue.Close())
			require.NoError(t, store.Close())
		})
		return asyncreq.Pair(store, queue)
	}, nil)
}
