package asyncreq

import (
	"context"
	"net/http"
	"time"
)

// This file is the status route (GET {id}/status) and the long poll
// (Prefer: wait) it shares with submit.

// serveStatus serves GET and HEAD /{id}/status.
func (h *Handler) serveStatus(w http.ResponseWriter, r *http.Request, st *reqState) {
	w.Header().Add("Vary", "Prefer")
	w.Header().Set("Cache-Control", "no-store")
	rec, ok := h.lookup(w, r, st)
	if !ok {
		return
	}
	if wait := h.capWait(parsePrefer(r.Header).wait); wait > 0 && !rec.State.Final() {
		first := rec
		cur, err := h.await(r.Context(), rec, wait, func(c *Record) bool { return changed(first, c) })
		if err != nil {
			h.storeError(w, r, st, err)
			return
		}
		rec = cur
		w.Header().Set("Preference-Applied", "wait="+seconds(wait))
	}
	h.served(r, "status", rec)
	doc := statusDocument(rec, st)
	switch rec.State {
	case StateSucceeded:
		if h.opts.AcceptedWhilePending {
			h.writeFinalForPoller(w, r, rec, st)
			return
		}
		w.Header().Set("Location", doc.ResultURL)
		h.writeDocument(w, r, http.StatusSeeOther, &doc)
	case StateFailed, StateCanceled:
		if h.opts.AcceptedWhilePending {
			h.writeFinalForPoller(w, r, rec, st)
			return
		}
		h.writeDocument(w, r, http.StatusOK, &doc)
	default:
		w.Header().Set("Retry-After", h.retryAfter)
		if h.opts.AcceptedWhilePending {
			w.Header().Set("Location", doc.StatusURL)
			h.writeDocument(w, r, http.StatusAccepted, &doc)
			return
		}
		h.writeDocument(w, r, http.StatusOK, &doc)
	}
}

// changed reports whether a long poll that started at first has news in
// cur: another state or other progress.
func changed(first, cur *Record) bool {
	if first.State != cur.State {
		return true
	}
	switch {
	case first.Progress == nil && cur.Progress == nil:
		return false
	case first.Progress == nil || cur.Progress == nil:
		return true
	}
	return *first.Progress != *cur.Progress
}

// capWait bounds a client's Prefer wait by MaxWait.
func (h *Handler) capWait(d time.Duration) time.Duration {
	return min(d, h.opts.MaxWait)
}

// await reads the record until done holds for it or d passes or ctx ends,
// and returns the last record read (rec when no read succeeded).
//
// A watch is a hint, never the only source of truth: a Store's Watcher may
// miss changes (SQLite's sees only its own process's writes, PostgreSQL's
// only its own Store's without LISTEN). So await reads the record on the
// same schedule whether or not it holds a watch, pollMin after the last
// read at first and twice as long each time up to pollMax, and a change the
// watch reports only cuts the current pause short. When d passes it reads
// the record once more, so that the answer is as fresh as the deadline.
// It returns an error only when the Store fails before d passes, or the
// record is gone.
func (h *Handler) await(ctx context.Context, rec *Record, d time.Duration, done func(*Record) bool) (*Record, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	id := rec.ID
	last := rec
	watcher := h.watcher
	wait := pollMin
	// The watch held, nil when none is. Each watch is released before the
	// next one is made.
	var changed <-chan struct{}
	stopWatch := func() {}
	defer func() { stopWatch() }()
poll:
	for {
		if watcher != nil && changed == nil {
			stopWatch()
			c, stop, err := watch(wctx, watcher, id)
			switch {
			case err == nil:
				changed, stopWatch = c, stop
			case wctx.Err() != nil:
				break poll
			default:
				// Polling still answers the client; note the failure.
				h.logBackend(ctx, "asyncreq: watch failed; polling instead", id, err)
				watcher, stopWatch = nil, func() {}
			}
		}
		// Read after watching: a change in between is then not missed.
		cur, err := checkRecord(h.store.Get(wctx, id))
		if err != nil {
			if wctx.Err() != nil && !isMissing(err) {
				break poll
			}
			return last, err
		}
		last = cur
		if done(cur) {
			return cur, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
			changed = nil
		case <-t.C:
			wait = min(2*wait, pollMax)
		case <-wctx.Done():
		}
		t.Stop()
		if wctx.Err() != nil {
			break poll
		}
	}
	// The deadline: one last read, bounded like a pause, unless the
	// client has gone.
	if ctx.Err() != nil {
		return last, nil
	}
	rctx, cancelRead := context.WithTimeout(ctx, pollMax)
	defer cancelRead()
	cur, err := checkRecord(h.store.Get(rctx, id))
	switch {
	case err == nil:
		return cur, nil
	case isMissing(err):
		return last, err
	}
	h.logBackend(rctx, "asyncreq: last read of a long poll", id, err)
	return last, nil
}
