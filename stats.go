package asyncreq

import (
	"context"
	"time"
)

// QueueStats is a snapshot of where the entries of a Queue stand, for
// metrics and dashboards. Every entry the Queue holds is counted once, in
// Pending, Delayed or Running.
//
// A snapshot is taken by the backend in as few steps as it can, but need not
// be atomic: entries that move while it is taken may be counted in neither
// or in both of their states, and a count taken from an engine's own
// counters or estimates may be off by the entries in flight. It is a gauge,
// not an accounting.
type QueueStats struct {
	// Queue is the backend's name of the queue (a table's queue column, a
	// stream, a queue on a broker), or "" when it has none, for use as a
	// metric label.
	Queue string

	// At is when the snapshot was taken, by the backend's clock where it
	// has one.
	At time.Time

	// Pending counts the entries that are due and wait for a Dequeue,
	// including those whose lease ran out and that are due again. Every
	// QueueStater counts it.
	Pending int64
	// Delayed counts the entries waiting for a time: enqueued with a
	// delay, or returned by Nack with one, and not yet due. It is
	// Uncounted when the backend cannot tell.
	Delayed int64
	// Running counts the entries held under a lease. A backend that notices
	// an expired lease only when it next delivers the entry counts it here
	// until then, and its package doc says so. It is Uncounted when the
	// backend cannot tell.
	Running int64

	// OldestPending is when the pending entry that has waited longest
	// became due: its enqueue time, or the end of its delay or of its
	// lease. It is the zero time when Pending is 0 or the backend cannot
	// tell (its package doc says so). At minus OldestPending is how far
	// behind the workers are.
	OldestPending time.Time

	// Succeeded, Failed and Canceled count the records the Store holds in
	// each final state: those not yet purged, not a running total. A Queue
	// knows nothing of outcomes, so they are Uncounted unless the backend
	// is also the Store and can count its records by state cheaply; its
	// package doc says whether it does.
	Succeeded, Failed, Canceled int64
}

// Uncounted is the value of a QueueStats count that the backend cannot
// tell. A metrics exporter leaves such a count out rather than report it.
const Uncounted int64 = -1

// OldestPendingAge returns how long the oldest pending entry has been due
// at s.At, or 0 when there is none.
func (s QueueStats) OldestPendingAge() time.Duration {
	if s.OldestPending.IsZero() || s.At.IsZero() {
		return 0
	}
	return max(s.At.Sub(s.OldestPending), 0)
}

// QueueStater is implemented by a Queue that can report its statistics.
// Nothing in this package calls it: it is for the program's metrics and
// admin pages. A Queue without it has no fallback here; a program can count
// the leases its own Workers hold, but not the entries waiting. (The method
// is QueueStats rather than Stats so that a backend keeps its own Stats, as
// the sqlite module's writer counters.) A Backend made by Pair does not
// pass it on: ask its Queue.
//
// QueueStats may be called concurrently with every Queue method and is
// meant to be called often (a scrape every few seconds): backends answer
// from indexes and engine counters, never by reading every entry, and say
// in their package doc what a call costs. It returns ctx.Err() unwrapped
// when ctx ends first.
type QueueStater interface {
	QueueStats(ctx context.Context) (QueueStats, error)
}
