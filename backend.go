package asyncreq

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// This file is the one face a Handler and a Worker see of their storage:
// Backend, Pair for a Store and a Queue that are separate values, and the
// two-step accept such a pair needs.

// Backend is what a Handler and a Worker work over: the Store that keeps
// the records and the Queue that says what to work on next. A backend that
// is both (the memory, sqlite, postgres, redis and nats packages) is a
// Backend as it is; Pair makes one of a separate Store and Queue (a
// RabbitMQ queue beside a database, say).
//
// NewHandler and NewWorker detect the optional interfaces on the Backend
// value they are given: Accepter and Completer, which record and enqueue a
// request, or record an outcome and settle its lease, in one atomic step
// that only a value that is both Store and Queue can take; Watcher and
// UnenqueuedLister of its Store; BatchDequeuer of its Queue. A Backend
// that is not an Accepter has each request stored unenqueued, enqueued,
// then marked enqueued (see Pair).
//
// Closing is not part of a Backend: neither the Handler nor the Worker
// closes what it is given. The backend packages' types have a Close
// method (io.Closer) for their owner to call after the Worker stopped.
type Backend interface {
	Store
	Queue
}

// Pair returns a Backend made of a separate store and queue.
//
// It accepts a request in two steps, as no atomic step spans two
// engines: it stores the record with Enqueued false, enqueues its id, and
// marks the record enqueued (see Record.MarkEnqueued). When the Queue
// refuses, the record is deleted again and the submit answered 503; when
// the mark fails, the request is accepted all the same, for it is stored
// and queued. A record that a crash, or a failed delete, leaves stored
// but never enqueued is found by the Worker's sweep when store implements
// UnenqueuedLister, and enqueued then.
//
// The Backend Pair returns implements Accepter (the two steps above) and
// the optional interfaces its parts implement: Watcher and
// UnenqueuedLister when store does, BatchDequeuer when queue does. It
// never implements Completer, and it does not use an Accepter or
// Completer of its parts: their one step would write to their own engine
// only. Pair takes no ownership: close store and queue when done.
//
// Pair is for two values; a value that is itself both Store and Queue is
// a Backend already, and pairing it with itself would give up its
// Accepter and Completer.
func Pair(store Store, queue Queue) Backend {
	p := &pair{Store: store, Queue: queue}
	w, watches := store.(Watcher)
	l, lists := store.(UnenqueuedLister)
	b, batches := queue.(BatchDequeuer)
	switch {
	case watches && lists && batches:
		return struct {
			*pair
			Watcher
			UnenqueuedLister
			BatchDequeuer
		}{p, w, l, b}
	case watches && lists:
		return struct {
			*pair
			Watcher
			UnenqueuedLister
		}{p, w, l}
	case watches && batches:
		return struct {
			*pair
			Watcher
			BatchDequeuer
		}{p, w, b}
	case lists && batches:
		return struct {
			*pair
			UnenqueuedLister
			BatchDequeuer
		}{p, l, b}
	case watches:
		return struct {
			*pair
			Watcher
		}{p, w}
	case lists:
		return struct {
			*pair
			UnenqueuedLister
		}{p, l}
	case batches:
		return struct {
			*pair
			BatchDequeuer
		}{p, b}
	}
	return p
}

// pair is the Backend Pair returns, less the optional interfaces of its
// parts, which Pair adds by embedding.
type pair struct {
	Store
	Queue
}

// Accept implements Accepter in two steps (see Pair). A failure to mark
// the record enqueued is not returned: the request is accepted.
func (p *pair) Accept(ctx context.Context, rec *Record) (*Record, error) {
	return acceptInTwo(ctx, p.Store, p.Queue, rec, nil)
}

// parts returns the Store and the Queue p pairs.
func (p *pair) parts() (Store, Queue) { return p.Store, p.Queue }

// paired is implemented by the values Pair returns.
type paired interface {
	parts() (Store, Queue)
}

// split returns the Store and the Queue of b: the parts of a Pair, or b
// twice, and whether b is a Pair.
func split(b Backend) (store Store, queue Queue, isPair bool) {
	if p, ok := b.(paired); ok {
		store, queue = p.parts()
		return store, queue, true
	}
	return b, b, false
}

// checkBackend returns an error naming what is missing when b, or a part
// of a Pair, is nil; who names the caller.
func checkBackend(who string, b Backend) error {
	if b == nil {
		return errors.New("asyncreq: " + who + ": nil Backend")
	}
	store, queue, _ := split(b)
	switch {
	case store == nil:
		return errors.New("asyncreq: " + who + ": nil Store")
	case queue == nil:
		return errors.New("asyncreq: " + who + ": nil Queue")
	}
	return nil
}

// cleanupTimeout bounds the writes that finish a two-step accept (the
// mark that the Queue holds the request, or the delete after the Queue
// refused it), which run even when the client has gone.
const cleanupTimeout = 10 * time.Second

// acceptInTwo records rec in store with Enqueued false, enqueues it in
// queue, and marks it enqueued, with Accepter.Accept's results: (nil, nil)
// once the request is stored and queued, the existing record with
// ErrDuplicate, or an error, after which nothing is kept. When the Queue
// refuses, the record is deleted again; the error is then the Queue's,
// joined with the delete's when that failed too.
//
// A failure to mark the record goes to warn (when not nil) and not to the
// caller: the request is durable and queued, and the Worker's sweep at
// worst enqueues it once more. The mark and the delete are made even when
// ctx ends (the client went away), each bounded by cleanupTimeout so that
// a hung Store cannot hold the answer forever.
func acceptInTwo(ctx context.Context, store Store, queue Queue, rec *Record, warn func(msg string, err error)) (*Record, error) {
	c := *rec
	c.Enqueued = false
	if existing, err := store.Create(ctx, &c); err != nil {
		return existing, err
	}
	if err := queue.Enqueue(ctx, c.ID, 0); err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if derr := store.Delete(dctx, c.ID, false); derr != nil && !isMissing(derr) {
			return nil, errors.Join(err, fmt.Errorf("asyncreq: deleting the record the Queue refused "+
				"(the Worker's sweep enqueues it if the Store lists unenqueued records): %w", derr))
		}
		return nil, err
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if _, err := store.Update(uctx, c.ID, (*Record).MarkEnqueued); err != nil && !isMissing(err) && warn != nil {
		warn("asyncreq: marking a request enqueued", err)
	}
	return nil, nil
}
