package sqlite_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/sqlite"
)

var errCommit = errors.New("injected commit failure")

// heldWriter controls the writer of a Backend's file through its commit
// hook: the commit of the first transaction waits until release is called,
// so that the writes started meanwhile queue up and are taken together in
// the next transaction, whose commit fails.
type heldWriter struct {
	hold    chan struct{}
	batches []int // the size of each transaction, in commit order
}

// holdWriter makes b's writer wait in the commit of a write of its own
// (a record created for the purpose). It must run in a synctest bubble.
func holdWriter(t *testing.T, b *sqlite.Backend, wg *sync.WaitGroup) *heldWriter {
	t.Helper()
	h := &heldWriter{hold: make(chan struct{})}
	sqlite.SetCommitHook(b, func(writes int) error {
		h.batches = append(h.batches, writes)
		switch len(h.batches) {
		case 1:
			<-h.hold
		case 2:
			return errCommit
		}
		return nil
	})
	wg.Go(func() {
		_, err := b.Create(context.Background(), newRecord("holder"))
		assert.NoError(t, err, "the holder's own transaction commits")
	})
	synctest.Wait()
	require.Equal(t, []int{1}, h.batches, "the writer waits in the holder's commit")
	return h
}

// release lets the held commit end; the next transaction's commit fails.
func (h *heldWriter) release(t *testing.T, wg *sync.WaitGroup, writes int) {
	t.Helper()
	close(h.hold)
	wg.Wait()
	require.Equal(t, []int{1, writes}, h.batches, "the queued writes shared one transaction")
}

// TestFailedCommitDuplicate checks that a write grouped after another in a
// transaction whose commit fails reports no outcome that rests on the
// other's rolled-back row: a repeat of an Idempotency-Key must not be
// answered with the id of a record that was never committed.
func TestFailedCommitDuplicate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := openTemp(t, nil)
		ctx := context.Background()
		var wg sync.WaitGroup
		hw := holdWriter(t, b, &wg)

		recs := make([]*asyncreq.Record, 2)
		dups := make([]*asyncreq.Record, 2)
		errs := make([]error, 2)
		for i := range recs {
			recs[i] = newRecord("same")
			recs[i].Owner, recs[i].IdempotencyKey = "alice", "k1"
			wg.Go(func() { dups[i], errs[i] = b.Accept(ctx, recs[i]) })
			synctest.Wait()
		}
		hw.release(t, &wg, 2)

		for i := range recs {
			require.Error(t, errs[i], "accept %d: nothing of its transaction was committed", i)
			require.NotErrorIs(t, errs[i], asyncreq.ErrDuplicate, "accept %d", i)
			require.Nil(t, dups[i], "accept %d answered with a record that was rolled back", i)
			_, err := b.Get(ctx, recs[i].ID)
			require.ErrorIs(t, err, asyncreq.ErrNotFound, "record %d", i)
		}
		// The key is free: nothing of the failed transaction is left.
		dup, err := b.Accept(ctx, recs[1])
		require.NoError(t, err)
		require.Nil(t, dup)
	})
}

// TestFailedCommitUpdate checks that an update function that ran after a
// rolled-back write to the same record does not have its decision, made on
// that write, reported: a DELETE must not take a rolled-back completion for
// a finished request (and then delete a running one). No watch fires for
// the failed transaction.
func TestFailedCommitUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := openTemp(t, nil)
		ctx := context.Background()
		rec := newRecord("run")
		rec.State = asyncreq.StateRunning
		_, err := b.Create(ctx, rec)
		require.NoError(t, err)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		changed, err := b.Watch(wctx, rec.ID)
		require.NoError(t, err)

		var wg sync.WaitGroup
		hw := holdWriter(t, b, &wg)
		var completeErr, deleteErr error
		var completed, canceled *asyncreq.Record
		wg.Go(func() { completed, completeErr = b.Update(ctx, rec.ID, finish(rec.CreatedAt)) })
		synctest.Wait() // the completion is first in the transaction
		wg.Go(func() {
			canceled, deleteErr = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
				if r.State.Final() {
					return asyncreq.ErrFinished
				}
				r.CancelRequested = true
				return nil
			})
		})
		synctest.Wait()
		hw.release(t, &wg, 2)

		require.Error(t, completeErr)
		require.Nil(t, completed)
		require.Error(t, deleteErr)
		require.NotErrorIs(t, deleteErr, asyncreq.ErrFinished, "the cancel saw a completion that was rolled back")
		require.Nil(t, canceled)
		select {
		case <-changed:
			t.Fatal("a watch fired for a transaction that was rolled back")
		default:
		}
		got, err := b.Get(ctx, rec.ID)
		require.NoError(t, err)
		require.Equal(t, asyncreq.StateRunning, got.State)
		require.False(t, got.CancelRequested)
	})
}

// TestFailedCommitHandlerRepeat checks the same through the Handler: a
// repeat of a submit whose transaction fails with it gets 503, not a 202
// naming the first submit's rolled-back record.
func TestFailedCommitHandlerRepeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := openTemp(t, nil)
		h, err := asyncreq.NewHandler(b, nil)
		require.NoError(t, err)
		var wg sync.WaitGroup
		hw := holdWriter(t, b, &wg)

		ws := make([]*httptest.ResponseRecorder, 2)
		for i := range ws {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("same"))
			r.Header.Set("Content-Type", "text/plain")
			r.Header.Set("Idempotency-Key", "k1")
			ws[i] = httptest.NewRecorder()
			wg.Go(func() { h.ServeHTTP(ws[i], r) })
			synctest.Wait()
		}
		hw.release(t, &wg, 2)
		for i, w := range ws {
			require.Equal(t, http.StatusServiceUnavailable, w.Code, "submit %d: %s", i, w.Body)
		}
	})
}

// TestFailedCommitKeepsEarlierAnswers checks that a write that failed on its
// own terms before any write of its transaction keeps its own answer when
// the commit fails: what it read was committed.
func TestFailedCommitKeepsEarlierAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := openTemp(t, nil)
		ctx := context.Background()
		var wg sync.WaitGroup
		hw := holdWriter(t, b, &wg)
		var missingErr, createErr error
		wg.Go(func() {
			_, missingErr = b.Update(ctx, asyncreq.NewID(), func(*asyncreq.Record) error { return nil })
		})
		synctest.Wait()
		wg.Go(func() { _, createErr = b.Create(ctx, newRecord("x")) })
		synctest.Wait()
		hw.release(t, &wg, 2)
		require.ErrorIs(t, missingErr, asyncreq.ErrNotFound)
		require.ErrorIs(t, createErr, errCommit)
	})
}
