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
			wg.Go(func() {
				var once sync.Once
				free := func() { once.Do(func() { <-slots }) }
				defer free()
				w.run(workCtx, l, free)
			})
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
