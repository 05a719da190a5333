package sqlite

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// expiredRecord is a finished record that expired an hour before now.
func expiredRecord(now time.Time) *asyncreq.Record {
	return &asyncreq.Record{
		ID:           asyncreq.NewID(),
		State:        asyncreq.StateSucceeded,
		Method:       "POST",
		URL:          "/jobs/",
		Body:         []byte("body"),
		Result:       &asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")},
		CreatedAt:    now.Add(-2 * time.Hour),
		UpdatedAt:    now.Add(-time.Hour),
		Retention:    time.Hour,
		TombstoneTTL: 24 * time.Hour,
		ExpiresAt:    now.Add(-time.Hour),
	}
}

// TestPurgeYieldsToAccepts: a Purge of many expired records deletes them
// in transactions of at most purgeChunk records, and an accept sent while
// it runs is committed before the purge's next transaction, not after the
// whole purge.
func TestPurgeYieldsToAccepts(t *testing.T) {
	ctx := t.Context()
	b, err := Open(ctx, filepath.Join(t.TempDir(), "purge.db"), nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	const expired = 1000
	now := time.Now()
	for range expired {
		_, err := b.Create(ctx, expiredRecord(now))
		require.NoError(t, err)
	}

	// The hook runs on the writer before each COMMIT: it notes how many
	// rows the transaction changed, and at the first purge transaction it
	// sends an accept, which then waits for the writer.
	var (
		mu       sync.Mutex
		changes  []int64
		last     int64
		accepted = make(chan error, 1)
		sent     bool
		acceptAt = -1 // index in changes of the accept's transaction
	)
	acc := expiredRecord(now)
	acc.State, acc.Result, acc.ExpiresAt = asyncreq.StatePending, nil, time.Time{}
	require.NoError(t, b.eng.wconn.QueryRowContext(ctx, "SELECT total_changes()").Scan(&last))
	b.eng.commitHook = func(int) error {
		var total int64
		if err := b.eng.wconn.QueryRowContext(context.Background(), "SELECT total_changes()").Scan(&total); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if total-last == 3 && sent && acceptAt < 0 { // the accept: its record, its queue entry and its state's count
			acceptAt = len(changes)
		}
		changes = append(changes, total-last)
		last = total
		if !sent {
			sent = true
			go func() {
				_, err := b.Accept(ctx, acc)
				accepted <- err
			}()
			// Let the accept reach the writer's channel.
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}
	n, err := b.Purge(ctx, now, expired)
	require.NoError(t, err)
	require.Equal(t, expired, n)
	require.NoError(t, <-accepted)

	mu.Lock()
	defer mu.Unlock()
	purges := 0
	for i, c := range changes {
		if i == acceptAt {
			continue
		}
		purges++
		// A purged record is a deleted row and a tombstone; the count of
		// each final state is updated once.
		require.LessOrEqual(t, c, int64(2*purgeChunk+3), "transaction %d of the purge changed %d rows", i, c)
	}
	require.GreaterOrEqual(t, purges, expired/purgeChunk)
	require.Equal(t, 1, acceptAt, "the accept sent during the purge's first transaction is committed right after it (changes per transaction: %v)", changes)
	for range 3 {
		_, err := b.Get(ctx, acc.ID)
		require.NoError(t, err)
	}
}
