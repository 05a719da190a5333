package asyncreq

import (
	"context"
	"errors"
	"sync"
	"time"
)

// This file is the Worker's lease keeper: it extends an attempt's lease
// from its dequeue until the attempt has settled it.

// leaseKeeper extends a job's lease every beat (LeaseDuration/3) from the
// dequeue until stop, which the attempt calls once it has settled the
// lease. The claim, the processor, the write of the outcome, a callback's
// delivery and the wait for a settling slot all happen under the lease:
// extending it only while the processor runs would lose it to a claim and
// an outcome write that take longer together than LeaseDuration, as on a
// loaded database with a large body. An attempt that is over within a beat
// costs a timer and no goroutine.
type leaseKeeper struct {
	w *Worker
	j *job
	// ctx is the attempt's; the lease holds through a shutdown, as the
	// request is handed back under it.
	ctx   context.Context
	timer *time.Timer
	// extending counts the Extend in flight, so that stop returns after it.
	extending sync.WaitGroup

	mu      sync.Mutex
	stopped bool
	lost    bool
	// cancelExtend cancels the Extend in flight, if any.
	cancelExtend context.CancelFunc
	// onLost cancels the processor while it runs (see setProcessor).
	onLost context.CancelCauseFunc
}

// keepLease starts keeping j's lease in j.keeper. age is how long ago the
// lease was taken, as far as the worker knows (a Claimer's claims run
// under it before the worker gets it): the first beat comes a beat after
// the lease was taken, at once if that is past.
func (w *Worker) keepLease(ctx context.Context, j *job, age time.Duration) {
	k := &j.keeper
	k.w, k.j, k.ctx = w, j, ctx
	// beat reads timer under mu, and may run before AfterFunc returns.
	k.mu.Lock()
	k.timer = time.AfterFunc(max(w.beatInterval()-age, 0), k.beat)
	k.mu.Unlock()
}

// beat extends the lease once and arms the next beat.
func (k *leaseKeeper) beat() {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(k.ctx))
	defer cancel()
	k.cancelExtend = cancel
	k.extending.Add(1)
	k.mu.Unlock()
	defer k.extending.Done()

	err := k.w.queue.Extend(ctx, k.j.lease, k.w.opts.LeaseDuration)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cancelExtend = nil
	switch {
	case k.stopped:
		return
	case errors.Is(err, ErrLeaseLost):
		// The request may be delivered to another worker already; this
		// attempt's outcome would be fenced off.
		k.lost = true
		if k.onLost != nil {
			k.j.logger().WarnContext(ctx, "asyncreq: lease lost; canceling the processor")
			k.onLost(ErrLeaseLost)
		}
		return
	case err != nil:
		k.j.logger().WarnContext(ctx, "asyncreq: extend lease", "err", err)
	}
	k.timer.Reset(k.w.beatInterval())
}

// setProcessor has cancel called with ErrLeaseLost if the lease is found
// lost while the processor runs, and at once if it already was. The
// attempt sets it when the processor starts and sets nil when it returns.
func (k *leaseKeeper) setProcessor(cancel context.CancelCauseFunc) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.onLost = cancel
	if cancel != nil && k.lost {
		cancel(ErrLeaseLost)
	}
}

// stop ends the keeping and returns once no Extend is in flight.
func (k *leaseKeeper) stop() {
	k.mu.Lock()
	k.stopped = true
	if k.cancelExtend != nil {
		k.cancelExtend()
	}
	k.mu.Unlock()
	k.timer.Stop()
	k.extending.Wait()
}
