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
	idle := make(chan delivery)
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

		taken, err := w.dequeue(fetchCtx, n)
		got := 0
		for _, d := range taken {
			switch {
			case d.lease == nil:
				continue
			case got == n:
				// More than asked for: not ours to run now.
				w.giveBack(context.WithoutCancel(fetchCtx), &job{lease: d.lease, token: d.token, base: w.log}, d)
				continue
			}
			got++
			select {
			case idle <- d:
			default:
				wg.Go(func() { w.runner(fetchCtx, workCtx, d, slots, idle) })
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

// runner runs d, then each lease fetch hands it while it waits in idle,
// until it has waited runnerIdle in vain or fetchCtx ends. Each lease
// holds one of slots until its processor returns (see Worker.run). A
// runner that goes on with the next lease spares a goroutine's start and
// the growth of its stack per request.
func (w *Worker) runner(fetchCtx, workCtx context.Context, d delivery, slots chan struct{}, idle <-chan delivery) {
	var wait *time.Timer
	for {
		var freed bool
		free := func() {
			if !freed {
				freed = true
				<-slots
			}
		}
		w.run(workCtx, d, free)
		free()
		if wait == nil {
			wait = time.NewTimer(runnerIdle)
			defer wait.Stop()
		} else {
			wait.Reset(runnerIdle)
		}
		select {
		case d = <-idle:
		case <-wait.C:
			return
		case <-fetchCtx.Done():
			return
		}
	}
}

// runnerIdle is how long a runner waits for its next lease.
const runnerIdle = time.Second

// delivery is a lease the fetcher took for an attempt and, when the
// Backend claimed its record in the same step (Claimer), that claim.
type delivery struct {
	lease   *Lease
	claimed bool      // the record was claimed with the lease; then:
	token   string    // the lease token it was claimed under
	rec     *Record   // the record as claimed, when err is nil
	err     error     // what the claim's update returned
	start   time.Time // when the claim began
}

// dequeue takes up to n leases, in one call when the Queue can batch, and
// claims their records in the same step when the Backend is a Claimer.
func (w *Worker) dequeue(ctx context.Context, n int) ([]delivery, error) {
	if w.claimer != nil {
		return w.dequeueClaim(ctx, n)
	}
	if n > 1 && w.batch != nil {
		leases, err := w.batch.DequeueBatch(ctx, n, w.opts.LeaseDuration)
		taken := make([]delivery, len(leases))
		for i, l := range leases {
			taken[i] = delivery{lease: l}
		}
		return taken, err
	}
	l, err := w.queue.Dequeue(ctx, w.opts.LeaseDuration)
	if err != nil {
		return nil, err
	}
	return []delivery{{lease: l}}, nil
}

// dequeueClaim takes up to n leases and claims their records in one step
// of the Claimer. The claim of each is the one claim makes, under a token
// of its own.
func (w *Worker) dequeueClaim(ctx context.Context, n int) ([]delivery, error) {
	var start time.Time
	tokens := make(map[*Lease]string, n)
	claims, err := w.claimer.DequeueClaim(ctx, n, w.opts.LeaseDuration, func(l *Lease, rec *Record) error {
		now := time.Now()
		if start.IsZero() {
			// The wait for a due entry is not the claim's.
			start = now
		}
		token := newToken()
		tokens[l] = token
		return w.claimRecord(l, token, rec, now)
	})
	if err != nil {
		return nil, err
	}
	taken := make([]delivery, len(claims))
	for i, c := range claims {
		d := delivery{lease: c.Lease, claimed: true, token: tokens[c.Lease], rec: c.Record, err: c.Err, start: start}
		if d.token == "" && d.err == nil {
			d.rec, d.err = nil, errUnclaimed
		}
		taken[i] = d
	}
	return taken, nil
}

// errUnclaimed is what the Worker makes of a Claimer that returned a lease
// without the claim of its record: the lease is given back, as after a
// failed claim.
var errUnclaimed = errors.New("asyncreq: Claimer returned a lease whose record it did not claim")

// giveBack gives back a lease taken for j that will not run (the worker is
// stopping, or the Queue returned more than asked for). A record claimed
// with it is handed back first, so that the next delivery runs it as the
// same attempt.
func (w *Worker) giveBack(ctx context.Context, j *job, d delivery) {
	if d.claimed && d.err == nil && d.rec != nil && d.rec.State == StateRunning {
		_, err := w.store.Update(ctx, j.lease.ID, func(rec *Record) error { return rec.HandBack(j.token, time.Now()) })
		if err != nil {
			j.logger().WarnContext(ctx, "asyncreq: handing back a request claimed but not run", "err", err)
		}
	}
	w.nack(ctx, j, 0)
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
