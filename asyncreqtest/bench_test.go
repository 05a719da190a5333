package asyncreqtest

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// countingStore counts the Gets of each id.
type countingStore struct {
	asyncreq.Store
	mu   sync.Mutex
	gets map[string]int
}

func (s *countingStore) Get(ctx context.Context, id string) (*asyncreq.Record, error) {
	s.mu.Lock()
	s.gets[id]++
	s.mu.Unlock()
	return s.Store.Get(ctx, id)
}

func TestPollBenchmark(t *testing.T) {
	b := memory.New(nil)
	defer b.Close()
	ids := RunningRecords(t, b, 4)
	require.Len(t, ids, 4)
	for _, id := range ids {
		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StateRunning, rec.State, "a record a worker has claimed")
		assert.Equal(t, 1, rec.Attempts)
	}

	s := &countingStore{Store: b, gets: map[string]int{}}
	res := testing.Benchmark(func(tb *testing.B) { BenchmarkPoll(tb, s, ids, 4) })
	require.Positive(t, res.N)
	assert.Positive(t, res.Extra["gets/s"])
	total := 0
	for id, n := range s.gets {
		assert.Contains(t, ids, id, "only the records given are read")
		total += n
	}
	assert.GreaterOrEqual(t, total, res.N, "every iteration is a Get")
}
