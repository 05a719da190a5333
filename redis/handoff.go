package redis

import (
	"context"
	"sync"
)

// A handoff groups calls into batches written one at a time, each by the
// first of its calls. It is how Creates and Accepts are written together
// (batch.go) and how per-request commands are pipelined (pipeline.go).
//
// There is no timer and no goroutine of its own. A call made while no
// batch is on the wire is a batch of one: its caller writes it at once,
// so a lone call costs what it would without grouping. Otherwise the call
// queues. When a batch's round trip ends, the call that wrote it takes the
// calls queued meanwhile (up to maxCalls calls and about maxBytes) as the
// next batch and wakes that batch's first call to write it (pass), and
// only then answers the other calls of its own batch (answer): the next
// batch goes out as early as it can. The queue fills while a batch is on
// the wire, which is where the grouping comes from, and batches grow with
// the load without a latency floor.
//
// One batch at a time: measured on 2 cores shared with Redis, a second
// batch on the wire split the queue into smaller batches and gave fewer
// calls per second, and a goroutine of its own that wrote every batch (no
// waiting call to wake before a batch goes out) gave fewer too, since each
// of its batches' callers then had to be woken.
type handoff[T caller[T]] struct {
	// maxCalls and maxBytes bound one batch; maxBytes 0 bounds nothing.
	maxCalls, maxBytes int

	mu      sync.Mutex
	writing bool // a batch is on the wire
	queue   []T  // calls waiting for a batch, in arrival order
}

// caller is a call that can queue in a handoff: a pointer to a struct
// that holds a turn.
type caller[T any] interface {
	turn() *turn[T]
}

// The states of a queued call. They are guarded by handoff.mu.
const (
	callWaiting   = iota // queued, not yet in a batch
	callTaken            // in a batch that another call writes
	callLeading          // writes the batch in its turn's batch field
	callAbandoned        // its caller's context ended while it waited
)

// turn is a call's place in a handoff.
type turn[T any] struct {
	size  int // bytes the call adds to a batch, about
	state int // guarded by handoff.mu
	batch []T // set with state callLeading
	// wake is closed when the call's outcome is set, or when it is to
	// write batch; nil for a call that never queued.
	wake chan struct{}
}

// join returns the batch c is to write, with c first, or nil when another
// call wrote the batch c was taken into, and c's outcome is set. If ctx
// ends while c waits to be taken into a batch, c is left out of every
// batch and join returns ctx.Err(); if it ends while another call writes
// c's batch, join returns ctx.Err() without waiting for c's outcome, as
// any call cut short by its context.
func (h *handoff[T]) join(ctx context.Context, c T) ([]T, error) {
	t := c.turn()
	h.mu.Lock()
	if !h.writing {
		h.writing = true
		h.mu.Unlock()
		return []T{c}, nil
	}
	t.wake = make(chan struct{})
	h.queue = append(h.queue, c)
	h.mu.Unlock()
	select {
	case <-t.wake:
	case <-ctx.Done():
		h.mu.Lock()
		state := t.state
		if state == callWaiting {
			t.state = callAbandoned
		}
		h.mu.Unlock()
		if state != callLeading {
			return nil, ctx.Err()
		}
		// The batch is this call's to write, on behalf of its other
		// callers too.
	}
	return t.batch, nil
}

// pass ends the batch on the wire, once its round trip is over: it takes
// the calls queued meanwhile as the next batch and wakes the first of them
// to write it.
func (h *handoff[T]) pass() {
	if next, ok := h.next(); ok {
		close(next.turn().wake)
	}
}

// answer wakes the calls of batch that its first call wrote for them, once
// their outcomes are set.
func (h *handoff[T]) answer(batch []T) {
	for _, c := range batch[1:] {
		close(c.turn().wake)
	}
}

// next takes the calls queued as the next batch and returns the call that
// is to write it, or false when none wait.
func (h *handoff[T]) next() (T, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var batch []T
	size, i := 0, 0
	for ; i < len(h.queue) && len(batch) < h.maxCalls && (h.maxBytes == 0 || size < h.maxBytes); i++ {
		c := h.queue[i]
		t := c.turn()
		if t.state == callAbandoned {
			continue
		}
		t.state = callTaken
		batch = append(batch, c)
		size += t.size
	}
	n := copy(h.queue, h.queue[i:])
	clear(h.queue[n:])
	h.queue = h.queue[:n]
	if len(batch) == 0 {
		h.writing = false
		var none T
		return none, false
	}
	t := batch[0].turn()
	t.state = callLeading
	t.batch = batch
	return batch[0], true
}

// waiting returns how many calls wait to be taken into a batch.
func (h *handoff[T]) waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.queue {
		if c.turn().state == callWaiting {
			n++
		}
	}
	return n
}
