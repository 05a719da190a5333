package nats_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// BenchmarkQueueStats measures one QueueStats call on a queue holding a
// million pending messages (file storage), published straight to the
// stream, 100 of them delivered and not acknowledged.
func BenchmarkQueueStats(b *testing.B) {
	const pending, leased = 1_000_000, 100
	js := connect(b)
	opts := testOptions()
	opts.Storage = jetstream.FileStorage
	be := newBackend(b, js, opts)
	ctx := b.Context()

	start := time.Now()
	const window = 5_000
	for i := 0; i < pending+leased; i += window {
		for j := i; j < min(i+window, pending+leased); j++ {
			_, err := js.PublishAsync(opts.Subject, []byte("p"+strconv.Itoa(j)))
			require.NoError(b, err)
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publishes not acknowledged within a minute")
		}
	}
	for range leased {
		_, err := be.Dequeue(ctx, time.Minute)
		require.NoError(b, err)
	}
	b.Logf("filled in %v", time.Since(start))

	s, err := be.QueueStats(ctx)
	require.NoError(b, err)
	require.EqualValues(b, pending, s.Pending)
	require.EqualValues(b, leased, s.Running)
	require.False(b, s.OldestPending.IsZero())
	for b.Loop() {
		if _, err := be.QueueStats(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
