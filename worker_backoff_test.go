package asyncreq

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWorkerBackoffBounds(t *testing.T) {
	w := &Worker{opts: WorkerOptions{BackoffMin: time.Second, BackoffMax: time.Minute}}
	for _, n := range []int{1, 2, 3, 5, 6, 7, 40} {
		ceil := min(time.Second<<min(n, 20), time.Minute)
		lo, hi := ceil, time.Duration(0)
		for range 500 {
			d := w.backoff(n)
			lo, hi = min(lo, d), max(hi, d)
		}
		require.GreaterOrEqual(t, lo, time.Second, "n=%d", n)
		require.LessOrEqual(t, hi, ceil, "n=%d", n)
		// Full jitter: the draws spread over the whole range.
		span := ceil - time.Second
		assert.Less(t, lo, time.Second+span/10, "n=%d", n)
		assert.Greater(t, hi, ceil-span/10, "n=%d", n)
	}

	fixed := &Worker{opts: WorkerOptions{BackoffMin: time.Second, BackoffMax: time.Second}}
	assert.Equal(t, time.Second, fixed.backoff(3))
}

func TestWorkerOptionsDefaults(t *testing.T) {
	o, err := (*WorkerOptions)(nil).withDefaults()
	require.NoError(t, err)
	assert.Equal(t, 10, o.Concurrency)
	assert.Equal(t, 30*time.Second, o.LeaseDuration)
	assert.Equal(t, 5, o.MaxAttempts)
	assert.Equal(t, time.Second, o.BackoffMin)
	assert.Equal(t, 5*time.Minute, o.BackoffMax)
	assert.Zero(t, o.Timeout)
	assert.Equal(t, time.Minute, o.PurgeInterval)
	assert.Equal(t, 1000, o.PurgeBatch)
	assert.Equal(t, 30*time.Second, o.SweepInterval)
	assert.Equal(t, time.Minute, o.SweepAge)
	assert.Equal(t, 20*time.Second, o.StopTimeout)
	assert.NotNil(t, o.Logger)

	o, err = (&WorkerOptions{BackoffMin: 10 * time.Minute, PurgeInterval: -1, SweepInterval: -1, StopTimeout: -1}).withDefaults()
	require.NoError(t, err)
	assert.Negative(t, o.StopTimeout, "stays: cancel at once")
	assert.Equal(t, 10*time.Minute, o.BackoffMax)
	assert.Negative(t, o.PurgeInterval, "stays disabled")
	assert.Negative(t, o.SweepInterval, "stays disabled")
}
