package asyncreq

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// This file is the Worker's fetching: it takes leases from the Queue while
// it has free capacity, and starts an attempt per lease.

// fetch takes leases from the Queue while there is capacity, and starts a
// goroutine per lease, registered in wg. It returns when fetchCtx ends or
// the Queue is closed.
func (w *Worker) fetch(fetchCtx, workCtx context.Context, wg *sync.WaitGroup) {
	slots := make(chan struct{}, w.opts.Concurrency)
	// idle hands a lease to a runner done with its last one, if one waits.
	idle := make(chan *Lease)
	pause := time.Duration(0)
	for {
		// Wait for one free slot, then take every other free one.
		select {
		case slots <- struct{}{}:
		case <-fetchCtx.Done():
			return
		}
		n := 1
	more:
		for n < w.opts.Concurrency {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}

		leases, err := w.dequeue(fetchCtx, n)
		got := 0
		for _, l := range leases {
			switch {
			case l == nil:
				continue
			case got == n:
				// More than asked for: not ours to run now.
				w.nack(context.WithoutCancel(fetchCtx), &job{lease: l, base: w.log}, 0)
				continue
			}
			got++
			select {
			case idle <- l:
			default:
				wg.Go(func() { w.runner(fetchCtx, workCtx, l, slots, idle) })
			}
		}
		for range n - got {
			<-slots
		}

		switch {
		case err == nil && got > 0:
			pause = 0
			continue
		case err == nil:
			err = errors.New("asyncreq: queue returned no lease and no error")
		case fetchCtx.Err() != nil:
			return
		case errors.Is(err, ErrClosed):
			w.log.ErrorContext(fetchCtx, "asyncreq: queue closed; worker stops fetching", "err", err)
			return
		}
		pause = min(max(2*pause, workerFetchBackoffMin), workerFetchBackoffMax)
		wait := pause/2 + rand.N(pause/2+1)
		w.log.ErrorContext(fetchCtx, "asyncreq: dequeue", "err", err, "retry_in", wait)
		if !sleepCtx(fetchCtx, wait) {
			return
		}
	}
}

// runner runs l, then each lease fetch hands it while it waits in idle,
// until it has waited runnerIdle in vain or fetchCtx ends. Each lease
// holds one of slots until its processor returns (see Worker.run). A
// runner that goes on with the next lease spares a goroutine's start and
// the growth of its stack per request.
func (w *Worker) runner(fetchCtx, workCtx context.Context, l *Lease, slots chan struct{}, idle <-chan *Lease) {
	var wait *time.Timer
	for {
		var freed bool
		free := func() {
			if !freed {
				freed = true
				<-slots
			}
		}
		w.run(workCtx, l, free)
		free()
		if wait == nil {
			wait = time.NewTimer(runnerIdle)
			defer wait.Stop()
		} else {
			wait.Reset(runnerIdle)
		}
		select {
		case l = <-idle:
		case <-wait.C:
			return
		case <-fetchCtx.Done():
			return
		}
	}
}

// runnerIdle is how long a runner waits for its next lease.
const runnerIdle = time.Second

// dequeue takes up to n leases, in one call when the Queue can batch.
func (w *Worker) dequeue(ctx context.Context, n int) ([]*Lease, error) {
	if n > 1 && w.batch != nil {
		return w.batch.DequeueBatch(ctx, n, w.opts.LeaseDuration)
	}
	l, err := w.queue.Dequeue(ctx, w.opts.LeaseDuration)
	if err != nil {
		return nil, err
	}
	return []*Lease{l}, nil
}

// sleepCtx waits for d, or returns false when ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
