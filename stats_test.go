package asyncreq_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/asyncreq/asyncreq"
)

func TestQueueStatsOldestPendingAge(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		name   string
		s      asyncreq.QueueStats
		expect time.Duration
	}{
		{"none pending", asyncreq.QueueStats{At: at}, 0},
		{"no snapshot time", asyncreq.QueueStats{OldestPending: at}, 0},
		{"waiting", asyncreq.QueueStats{At: at, OldestPending: at.Add(-90 * time.Second)}, 90 * time.Second},
		{"clock behind the backend's", asyncreq.QueueStats{At: at, OldestPending: at.Add(time.Second)}, 0},
	} {
		assert.Equal(t, c.expect, c.s.OldestPendingAge(), c.name)
	}
}
