package postgres

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/asyncreq/asyncreq"
	"github.com/stretchr/testify/require"
)

// gate is a run function for a batcher that records each batch and holds
// it until released.
type gate struct {
	mu      sync.Mutex
	batches [][]int
	release chan struct{}
}

func (g *gate) run(_ context.Context, calls []*call[int, int]) {
	var args []int
	for _, c := range calls {
		args = append(args, c.arg)
		c.res = c.arg * 10
	}
	g.mu.Lock()
	g.batches = append(g.batches, args)
	g.mu.Unlock()
	<-g.release
}

func TestBatcherGroupsWaitingCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gate{release: make(chan struct{})}
		b := newBatcher(context.Background(), 1, 100, nil, 0, g.run)
		defer b.close()

		results := make([]int, 10)
		var wg sync.WaitGroup
		wg.Go(func() { results[0], _ = b.do(context.Background(), 0) })
		synctest.Wait() // the lone first call runs at once, without company
		require.Equal(t, [][]int{{0}}, g.batches)

		for i := 1; i < 10; i++ {
			wg.Go(func() { results[i], _ = b.do(context.Background(), i) })
		}
		synctest.Wait() // all nine wait for the busy committer
		close(g.release)
		wg.Wait()
		require.Len(t, g.batches, 2)
		require.ElementsMatch(t, []int{1, 2, 3, 4, 5, 6, 7, 8, 9}, g.batches[1], "the waiting calls share one batch")
		for i, r := range results {
			require.Equal(t, i*10, r)
		}
	})
}

func TestBatcherLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gate{release: make(chan struct{})}
		b := newBatcher(context.Background(), 1, 3, func(n int) int { return n }, 10, g.run)
		defer b.close()
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = b.do(context.Background(), 0) })
		synctest.Wait()
		for _, w := range []int{1, 1, 1, 1, 9, 9, 1} {
			wg.Go(func() { _, _ = b.do(context.Background(), w) })
			synctest.Wait() // hand them over in this order
		}
		close(g.release)
		wg.Wait()
		total := 0
		for _, batch := range g.batches {
			require.LessOrEqual(t, len(batch), 3, "batch %v larger than max", batch)
			weight := 0
			for _, w := range batch {
				weight += w
			}
			// A batch stops growing once it reaches the weight limit.
			require.Less(t, weight-batch[len(batch)-1], 10, "batch %v grew past the weight limit", batch)
			total += len(batch)
		}
		require.Equal(t, 8, total)
	})
}

func TestBatcherDropsAbandonedCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gate{release: make(chan struct{})}
		b := newBatcher(context.Background(), 1, 100, nil, 0, g.run)
		defer b.close()
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = b.do(context.Background(), 1) })
		synctest.Wait()

		ctx, cancel := context.WithCancel(context.Background())
		var err error
		wg.Go(func() { _, err = b.do(ctx, 2) })
		wg.Go(func() { _, _ = b.do(context.Background(), 3) })
		synctest.Wait()
		cancel()
		synctest.Wait()
		close(g.release)
		wg.Wait()
		require.Equal(t, context.Canceled, err)
		require.Equal(t, [][]int{{1}, {3}}, g.batches, "the abandoned call was written")
	})
}

func TestBatcherClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gate{release: make(chan struct{})}
		close(g.release)
		b := newBatcher(context.Background(), 2, 100, nil, 0, g.run)
		res, err := b.do(context.Background(), 4)
		require.NoError(t, err)
		require.Equal(t, 40, res)
		b.close()
		_, err = b.do(context.Background(), 5)
		require.ErrorIs(t, err, asyncreq.ErrClosed)
	})
}
