package asyncreq

import (
	"context"
	"errors"
	"time"
)

// This file is the Worker's periodic maintenance: the purge of expired
// records, and the sweep that enqueues records whose accept was
// interrupted before they reached the Queue.

// every calls f every interval until ctx ends.
func (w *Worker) every(ctx context.Context, interval time.Duration, f func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// purge deletes expired final records, batch after batch.
func (w *Worker) purge(ctx context.Context) {
	for {
		n, err := w.store.Purge(ctx, time.Now(), w.opts.PurgeBatch)
		if err != nil {
			if ctx.Err() == nil {
				w.log.ErrorContext(ctx, "asyncreq: purge", "err", err)
			}
			return
		}
		if n > 0 {
			w.log.DebugContext(ctx, "asyncreq: purged expired records", "count", n)
			w.purged(ctx, n)
		}
		if n < w.opts.PurgeBatch {
			return
		}
	}
}

// sweep enqueues the records that were stored but never reached the Queue.
//
// It enqueues only a record that is still pending and unmarked when it
// gets to it: one listed unmarked may have been claimed since from a queue
// entry it had after all (an accept that enqueued it but failed to mark
// it), and another entry would be delivered to a second worker, which
// would take the request from the attempt running it. The mark follows
// the Enqueue, so that a sweep interrupted in between leaves the record
// listed for the next one rather than marked and never enqueued.
func (w *Worker) sweep(ctx context.Context) {
	for {
		ids, err := w.lister.ListUnenqueued(ctx, time.Now().Add(-w.opts.SweepAge), workerSweepBatch)
		if err != nil {
			if ctx.Err() == nil {
				w.log.ErrorContext(ctx, "asyncreq: list unenqueued", "err", err)
			}
			return
		}
		for _, id := range ids {
			if !w.sweepOne(ctx, id) {
				return
			}
		}
		if len(ids) < workerSweepBatch {
			return
		}
	}
}

// errSwept stops the sweep's mark of a record that needs none.
var errSwept = errors.New("asyncreq: record needs no sweep")

// sweepOne enqueues and marks the listed record id if it is still pending
// and unmarked. It returns false when the sweep should stop.
func (w *Worker) sweepOne(ctx context.Context, id string) bool {
	rec, err := checkRecord(w.store.Get(ctx, id))
	switch {
	case isMissing(err):
		return true // deleted since it was listed
	case err != nil:
		if ctx.Err() == nil {
			w.log.ErrorContext(ctx, "asyncreq: sweep read record", "id", id, "err", err)
		}
		return false
	case !rec.needsEnqueue():
		return true
	}
	if err := w.queue.Enqueue(ctx, id, 0); err != nil {
		if ctx.Err() == nil {
			w.log.ErrorContext(ctx, "asyncreq: sweep enqueue", "id", id, "err", err)
		}
		return false
	}
	_, err = w.store.Update(ctx, id, func(rec *Record) error {
		if !rec.needsEnqueue() {
			return errSwept // a worker claimed it already, or it was canceled
		}
		return rec.MarkEnqueued()
	})
	switch {
	case err == nil, errors.Is(err, errSwept):
	case isMissing(err):
		// Deleted since; the worker that gets the entry acks it.
	default:
		// It is listed and enqueued again next time, which a worker
		// handles like any redelivery.
		if ctx.Err() == nil {
			w.log.ErrorContext(ctx, "asyncreq: sweep mark enqueued", "id", id, "err", err)
		}
		return false
	}
	w.log.InfoContext(ctx, "asyncreq: enqueued a request that had not reached the queue", "id", id)
	w.swept(ctx, id)
	return true
}
