package postgres

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/asyncreq/asyncreq"
)

// The states of a call waiting in a batcher.
const (
	callWaiting   int32 = iota // handed over, not yet in a batch
	callTaken                  // in a batch that is being written
	callAbandoned              // its caller's context ended first
)

// call is one caller's item in a batcher, and its answer.
type call[T, R any] struct {
	arg   T
	res   R
	err   error
	state atomic.Int32
	done  chan struct{}
}

// batcher groups concurrent calls into shared round trips (group commit).
//
// Each of its committer goroutines waits for one call, takes every other
// call that is already waiting (up to max), and runs them together; callers
// are answered only after run returns, that is after the commit. A lone
// call is run at once: batching never waits for company, so it adds no
// latency floor. While all committers are busy, new calls queue up and go
// together into the next batch, which is where the grouping comes from.
type batcher[T, R any] struct {
	in        chan *call[T, R]
	max       int
	maxWeight int
	weigh     func(T) int
	run       func(ctx context.Context, calls []*call[T, R])
	stop      chan struct{}
	wg        sync.WaitGroup
}

// newBatcher starts n committers that write batches of at most max calls
// and, when weigh is not nil, of a total weight of about maxWeight (a
// batch stops growing once it reaches it). run must set res or err on
// every call it is given. ctx is the context run gets; it should outlive
// every batch.
func newBatcher[T, R any](ctx context.Context, n, max int, weigh func(T) int, maxWeight int,
	run func(ctx context.Context, calls []*call[T, R])) *batcher[T, R] {
	b := &batcher[T, R]{
		in:        make(chan *call[T, R]),
		max:       max,
		maxWeight: maxWeight,
		weigh:     weigh,
		run:       run,
		stop:      make(chan struct{}),
	}
	b.wg.Add(n)
	for range n {
		go b.loop(ctx)
	}
	return b
}

// do hands arg to the batcher and waits for its answer. If ctx ends before
// the call is taken into a batch, the call is dropped; if it ends while the
// batch is being written, do returns ctx.Err() without knowing the outcome,
// as any database call cut short by its context does.
func (b *batcher[T, R]) do(ctx context.Context, arg T) (R, error) {
	var zero R
	c := &call[T, R]{arg: arg, done: make(chan struct{})}
	select {
	case b.in <- c:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-b.stop:
		return zero, asyncreq.ErrClosed
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		if c.state.CompareAndSwap(callWaiting, callAbandoned) {
			return zero, ctx.Err()
		}
		// Already in a batch: the outcome arrives with the commit, and the
		// caller is told its context ended.
		return zero, ctx.Err()
	}
}

// close stops the committers after the batches they are writing, and makes
// every later do return ErrClosed.
func (b *batcher[T, R]) close() {
	close(b.stop)
	b.wg.Wait()
}

func (b *batcher[T, R]) weight(c *call[T, R]) int {
	if b.weigh == nil {
		return 0
	}
	return b.weigh(c.arg)
}

func (b *batcher[T, R]) loop(ctx context.Context) {
	defer b.wg.Done()
	batch := make([]*call[T, R], 0, b.max)
	for {
		batch = batch[:0]
		weight := 0
		select {
		case c := <-b.in:
			batch = append(batch, c)
			weight += b.weight(c)
		case <-b.stop:
			return
		}
	gather:
		for len(batch) < b.max && (b.weigh == nil || weight < b.maxWeight) {
			select {
			case c := <-b.in:
				batch = append(batch, c)
				weight += b.weight(c)
			default:
				break gather
			}
		}
		taken := batch[:0]
		for _, c := range batch {
			if c.state.CompareAndSwap(callWaiting, callTaken) {
				taken = append(taken, c)
			} else {
				close(c.done)
			}
		}
		if len(taken) == 0 {
			continue
		}
		b.run(ctx, taken)
		for _, c := range taken {
			close(c.done)
		}
		clear(batch[:cap(batch)])
	}
}
