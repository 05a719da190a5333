package redis_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq/redis"
)

// BenchmarkQueueStats measures one QueueStats call on a queue holding a
// million pending entries, 10,000 delayed and 100 leased ones, written
// straight into the stream and the delayed set in pipelined batches.
func BenchmarkQueueStats(b *testing.B) {
	const pending, delayed, leased = 1_000_000, 10_000, 100
	c := newClient(b)
	prefix := newPrefix(b, c)
	be, err := redis.New(b.Context(), c, &redis.Options{Prefix: prefix, Queue: "bench"})
	require.NoError(b, err)
	defer be.Close()
	ctx := b.Context()
	base := "{bench}:"
	stream, delayedKey := prefix+base+"q", prefix+base+"d"

	start := time.Now()
	const batch = 10_000
	for i := 0; i < pending+leased; i += batch {
		_, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for j := i; j < min(i+batch, pending+leased); j++ {
				p.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: []any{"id", "p" + strconv.Itoa(j), "n", 0}})
			}
			return nil
		})
		require.NoError(b, err)
	}
	due := float64(time.Now().Add(time.Hour).UnixMilli())
	_, err = c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for j := range delayed {
			p.ZAdd(ctx, delayedKey, goredis.Z{Score: due, Member: fmt.Sprintf("x:0:d%d", j)})
		}
		return nil
	})
	require.NoError(b, err)
	require.NoError(b, c.XReadGroup(ctx, &goredis.XReadGroupArgs{
		Group: "asyncreq", Consumer: "bench", Streams: []string{stream, ">"}, Count: leased,
	}).Err())
	b.Logf("filled in %v", time.Since(start))

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
