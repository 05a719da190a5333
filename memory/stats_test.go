package memory_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq/memory"
)

// BenchmarkQueueStats measures one QueueStats call on a Backend holding a
// million pending entries, 10,000 delayed and 100 leased ones.
func BenchmarkQueueStats(b *testing.B) {
	const pending, delayed, leased = 1_000_000, 10_000, 100
	be := memory.New(nil)
	defer be.Close()
	ctx := b.Context()
	for i := range pending + leased {
		require.NoError(b, be.Enqueue(ctx, "p"+string(rune('a'+i%26)), 0))
	}
	for range delayed {
		require.NoError(b, be.Enqueue(ctx, "d", time.Hour))
	}
	_, err := be.DequeueBatch(ctx, leased, time.Hour)
	require.NoError(b, err)

	s, err := be.QueueStats(ctx)
	require.NoError(b, err)
	require.EqualValues(b, pending, s.Pending)
	require.EqualValues(b, delayed, s.Delayed)
	require.EqualValues(b, leased, s.Running)
	for b.Loop() {
		if _, err := be.QueueStats(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
