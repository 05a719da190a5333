package rabbitmq

import (
	"context"
	"fmt"
	"time"

	"github.com/asyncreq/asyncreq"
)

var _ asyncreq.QueueStater = (*Queue)(nil)

// QueueStats implements asyncreq.QueueStater with a passive declaration of
// the queue on a channel of its own: one round trip, answered from the
// broker's counter whatever the backlog (docs/stats.md has figures).
//
// Pending is the queue's ready messages: those the broker has not sent to
// any consumer. AMQP tells no more, so:
//
//   - Running is asyncreq.Uncounted: the unacknowledged messages (leased,
//     and those prefetched by a consumer and not yet handed to a worker,
//     up to Options.Prefetch per process) are counted only by the
//     management plugin's HTTP API, which this package does not use.
//     Prefetched messages therefore count in no state.
//   - Delayed is asyncreq.Uncounted: delayed messages wait in delay queues
//     ("<queue>.delay.<n>"), which may have been declared by any process;
//     once due they are dead-lettered to the queue and count as Pending.
//   - OldestPending is the zero time: a queue's message count carries no
//     age.
//
// At is this process's clock. Succeeded, Failed and Canceled are
// asyncreq.Uncounted (a Queue holds no records). Queue is Options.Queue.
func (q *Queue) QueueStats(ctx context.Context) (asyncreq.QueueStats, error) {
	s, err := q.current(ctx)
	if err != nil {
		return asyncreq.QueueStats{}, err
	}
	// A separate channel, so that an error (the queue was deleted) closes
	// only that channel, and so that the call does not queue behind
	// publishes waiting for their confirms.
	ch, err := s.conn.Channel()
	if err != nil {
		return asyncreq.QueueStats{}, ctxErr(ctx, fmt.Errorf("rabbitmq: queue stats: open channel: %w", err))
	}
	defer func() { _ = ch.Close() }()
	type declared struct {
		messages int
		err      error
	}
	res := make(chan declared, 1)
	go func() {
		info, err := ch.QueueDeclarePassive(q.opts.Queue, true, false, false, false, nil)
		res <- declared{info.Messages, err}
	}()
	var d declared
	select {
	case d = <-res:
	case <-ctx.Done():
		// Closing the channel (deferred) ends the declaration.
		return asyncreq.QueueStats{}, ctx.Err()
	}
	if d.err != nil {
		return asyncreq.QueueStats{}, ctxErr(ctx, fmt.Errorf("rabbitmq: queue stats: %w", d.err))
	}
	return asyncreq.QueueStats{
		Queue:     q.opts.Queue,
		At:        time.Now(),
		Pending:   int64(d.messages),
		Delayed:   asyncreq.Uncounted,
		Running:   asyncreq.Uncounted,
		Succeeded: asyncreq.Uncounted,
		Failed:    asyncreq.Uncounted,
		Canceled:  asyncreq.Uncounted,
	}, nil
}
