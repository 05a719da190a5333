package memory

import (
	"context"

	"github.com/asyncreq/asyncreq"
)

var _ asyncreq.QueueStater = (*Backend)(nil)

// QueueStats implements asyncreq.QueueStater. It takes the Backend's lock
// once and reads counters it keeps up to date, so a call costs O(1), plus
// moving the entries that fell due since the last Dequeue to the ready
// queue as Dequeue would. It counts the records by final state, and an
// expired lease counts as pending at once. OldestPending is when the entry
// at the head of the ready queue became due; entries join that queue in the
// order they are found due, so with no Dequeue waiting it may miss an entry
// that fell due earlier by a few moments. Queue is "".
func (b *Backend) QueueStats(ctx context.Context) (asyncreq.QueueStats, error) {
	if err := b.lock(ctx); err != nil {
		return asyncreq.QueueStats{}, err
	}
	defer b.mu.Unlock()
	now := b.now()
	b.promote(now)
	s := asyncreq.QueueStats{
		At:        now,
		Pending:   int64(b.ready.len()),
		Delayed:   int64(b.delayed.Len()),
		Running:   int64(len(b.leased)),
		Succeeded: b.finals[asyncreq.StateSucceeded],
		Failed:    b.finals[asyncreq.StateFailed],
		Canceled:  b.finals[asyncreq.StateCanceled],
	}
	if b.ready.len() > 0 {
		s.OldestPending = b.ready.items[b.ready.head].readyAt
	}
	return s, nil
}
