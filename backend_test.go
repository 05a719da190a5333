package asyncreq_test

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// Pair passes on the optional interfaces of its parts that a pair can
// honour, accepts in two steps of its own, and is never a Completer.
func TestPairCapabilities(t *testing.T) {
	store, queue := newMemory(t), newMemory(t)
	full := asyncreq.Pair(store, queue)
	_, ok := full.(asyncreq.Watcher)
	assert.True(t, ok, "the Store's Watcher")
	_, ok = full.(asyncreq.UnenqueuedLister)
	assert.True(t, ok, "the Store's UnenqueuedLister")
	_, ok = full.(asyncreq.BatchDequeuer)
	assert.True(t, ok, "the Queue's BatchDequeuer")
	_, ok = full.(asyncreq.Accepter)
	assert.True(t, ok, "the two-step accept")
	_, ok = full.(asyncreq.Completer)
	assert.False(t, ok, "no atomic step spans two values")

	bare := asyncreq.Pair(struct{ asyncreq.Store }{store}, struct{ asyncreq.Queue }{queue})
	for name, has := range map[string]bool{
		"Watcher":          is[asyncreq.Watcher](bare),
		"UnenqueuedLister": is[asyncreq.UnenqueuedLister](bare),
		"BatchDequeuer":    is[asyncreq.BatchDequeuer](bare),
		"Completer":        is[asyncreq.Completer](bare),
	} {
		assert.False(t, has, "a capability the parts lack: %s", name)
	}
	assert.True(t, is[asyncreq.Accepter](bare), "a Pair always accepts in two steps")

	// Every combination of the parts' capabilities is passed on as it is.
	for _, w := range []bool{false, true} {
		for _, l := range []bool{false, true} {
			for _, b := range []bool{false, true} {
				var s asyncreq.Store = struct{ asyncreq.Store }{store}
				switch {
				case w && l:
					s = store
				case w:
					s = struct {
						asyncreq.Store
						asyncreq.Watcher
					}{store, store}
				case l:
					s = struct {
						asyncreq.Store
						asyncreq.UnenqueuedLister
					}{store, store}
				}
				var q asyncreq.Queue = struct{ asyncreq.Queue }{queue}
				if b {
					q = struct {
						asyncreq.Queue
						asyncreq.BatchDequeuer
					}{queue, queue}
				}
				p := asyncreq.Pair(s, q)
				assert.Equal(t, w, is[asyncreq.Watcher](p), "Watcher of %v %v %v", w, l, b)
				assert.Equal(t, l, is[asyncreq.UnenqueuedLister](p), "UnenqueuedLister of %v %v %v", w, l, b)
				assert.Equal(t, b, is[asyncreq.BatchDequeuer](p), "BatchDequeuer of %v %v %v", w, l, b)
			}
		}
	}
}

// is reports whether v implements T.
func is[T any](v any) bool {
	_, ok := v.(T)
	return ok
}

// A Pair whose Store is itself a backend that accepts in one step (a
// database paired with a broker) must not use that step: it would put the
// request in the Store's own queue, which no worker of the pair reads.
func TestPairAcceptsIntoItsQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db, broker := newMemory(t), newMemory(t)
		h := newTestHandler(t, asyncreq.Pair(db, broker), nil)
		id := postJob(t, h, "x")

		records, entries := db.Len()
		require.Equal(t, 1, records, "the record is in the Store")
		require.Zero(t, entries, "nothing is in the Store's own queue")
		_, entries = broker.Len()
		require.Equal(t, 1, entries, "the id is in the paired Queue")
		rec, err := db.Get(t.Context(), id)
		require.NoError(t, err)
		assert.True(t, rec.Enqueued, "marked enqueued after the Queue took it")

		done := make(chan struct{})
		startTestWorker(t, asyncreq.Pair(db, broker), asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			defer close(done)
			return &asyncreq.Result{Body: []byte("done")}, nil
		}), nil)
		<-done
		awaitState(t, db, id, asyncreq.StateSucceeded)
		synctest.Wait()
		_, entries = broker.Len()
		assert.Zero(t, entries, "the paired Queue's entry is acked")
	})
}

// Pair's own Accept (what a caller other than the Handler gets) has
// Accepter's results, and undoes the Create when the Queue refuses.
func TestPairAcceptUndoesWhenQueueRefuses(t *testing.T) {
	store := newMemory(t)
	closed := memory.New(nil)
	require.NoError(t, closed.Close())
	a := asyncreq.Pair(store, closed).(asyncreq.Accepter)

	rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, IdempotencyKey: "k"}
	got, err := a.Accept(t.Context(), rec)
	require.ErrorIs(t, err, asyncreq.ErrClosed, "the Queue's error")
	assert.Nil(t, got)
	_, err = store.Get(t.Context(), rec.ID)
	require.ErrorIs(t, err, asyncreq.ErrNotFound, "the record the Queue refused is deleted again")
	assert.False(t, rec.Enqueued, "the caller's record is not changed")

	ok := asyncreq.Pair(store, newMemory(t)).(asyncreq.Accepter)
	got, err = ok.Accept(t.Context(), rec)
	require.NoError(t, err)
	assert.Nil(t, got)
	dup := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, IdempotencyKey: "k"}
	got, err = ok.Accept(t.Context(), dup)
	require.ErrorIs(t, err, asyncreq.ErrDuplicate)
	require.NotNil(t, got)
	assert.Equal(t, rec.ID, got.ID, "the existing record")
}

// NewHandler, NewWorker and NewAsync name what is missing, in a Pair too.
func TestNewWithMissingBackend(t *testing.T) {
	b := newMemory(t)
	p := asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) { return nil, nil })
	_, err := asyncreq.NewHandler(nil, nil)
	require.ErrorContains(t, err, "NewHandler: nil Backend")
	_, err = asyncreq.NewHandler(asyncreq.Pair(nil, b), nil)
	require.ErrorContains(t, err, "NewHandler: nil Store")
	_, err = asyncreq.NewWorker(nil, p, nil)
	require.ErrorContains(t, err, "NewWorker: nil Backend")
	_, err = asyncreq.NewWorker(asyncreq.Pair(b, nil), p, nil)
	require.ErrorContains(t, err, "NewWorker: nil Queue")
	_, err = asyncreq.NewAsync(http.NotFoundHandler(), nil, nil)
	require.ErrorContains(t, err, "nil Backend")
}
