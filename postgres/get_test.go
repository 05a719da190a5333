package postgres_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/postgres"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGetsReadTogether: with one reader, Gets that arrive at once are read
// in batches, and each still gets its own answer: its record (a copy of its
// own when others asked for the same id), the owner of a tombstone, or
// not found.
func TestGetsReadTogether(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, &postgres.Options{Readers: 1})
	ctx := t.Context()
	var live, deleted []string
	for i := range 12 {
		rec := testRecord("owner-"+string(rune('a'+i)), "", []byte{byte(i)})
		_, err := s.Create(ctx, rec)
		require.NoError(t, err)
		if i%3 == 0 {
			require.NoError(t, s.Delete(ctx, rec.ID, true))
			deleted = append(deleted, rec.ID)
		} else {
			live = append(live, rec.ID)
		}
	}
	unknown := asyncreq.NewID()

	const rounds = 20
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got = make(map[*asyncreq.Record]bool)
	)
	for range rounds {
		for _, id := range live {
			wg.Go(func() {
				rec, err := s.Get(ctx, id)
				if !assert.NoError(t, err) || !assert.Equal(t, id, rec.ID) {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				assert.False(t, got[rec], "two Gets were given one *Record")
				got[rec] = true
			})
		}
		for _, id := range deleted {
			wg.Go(func() {
				_, err := s.Get(ctx, id)
				var gone *asyncreq.GoneError
				if assert.True(t, errors.As(err, &gone), "%v", err) {
					assert.NotEmpty(t, gone.Owner)
				}
			})
		}
		wg.Go(func() {
			_, err := s.Get(ctx, unknown)
			assert.ErrorIs(t, err, asyncreq.ErrNotFound)
		})
	}
	wg.Wait()
	require.Len(t, got, rounds*len(live))
}
