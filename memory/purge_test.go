package memory_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// TestPurgeLetsCallsIn: a purge of many expired records does not hold the
// Backend's lock throughout, so a Create that arrives meanwhile waits for a
// small part of it, not for the whole purge.
func TestPurgeLetsCallsIn(t *testing.T) {
	ctx := t.Context()
	b := memory.New(nil)
	defer func() { require.NoError(t, b.Close()) }()
	const expired = 200_000
	past := time.Now().Add(-time.Hour)
	for range expired {
		rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StateSucceeded, CreatedAt: past,
			UpdatedAt: past, ExpiresAt: past, TombstoneTTL: time.Hour}
		_, err := b.Create(ctx, rec)
		require.NoError(t, err)
	}

	var done atomic.Bool
	purged := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		n, err := b.Purge(ctx, time.Now(), expired)
		assert.NoError(t, err)
		assert.Equal(t, expired, n)
		purged <- time.Since(start)
		done.Store(true)
	}()
	var slowest time.Duration
	creates := 0
	for !done.Load() {
		now := time.Now()
		rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now}
		_, err := b.Create(ctx, rec)
		require.NoError(t, err)
		slowest = max(slowest, time.Since(now))
		creates++
	}
	took := <-purged
	t.Logf("purge of %d took %s; %d creates meanwhile, the slowest %s", expired, took, creates, slowest)
	assert.Less(t, slowest, took/4, "a Create waited for most of the purge")
}
