package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/asyncreq/asyncreq"
)

var _ asyncreq.QueueStater = (*Backend)(nil)

// QueueStats implements asyncreq.QueueStater from the consumer's info, one
// request answered from the server's counters whatever the backlog, plus,
// when messages wait, one get of the first message not yet delivered (for
// OldestPending). docs/stats.md has figures for a million messages.
//
// JetStream counts messages by whether the consumer has delivered them,
// not by what the Queue made of them, so the counts are coarser than the
// Queue's states:
//
//   - Pending is the consumer's num_pending: the messages not yet
//     delivered. A delayed Enqueue is published at once with a not-before
//     header (see Leases), so it counts here until its first delivery.
//   - Running is num_ack_pending: the messages delivered and not yet
//     acknowledged. That is the leased ones, but also those handed back by
//     Nack (with or without delay) or by an early delivery, until they are
//     delivered again.
//   - Delayed is asyncreq.Uncounted.
//
// OldestPending is the publish time of the first message the consumer has
// not delivered, or its not-before time if later; it is the zero time when
// that message is not due yet, since which later one is only reading them
// would tell. At is when the server
// gathered the info. Records are not counted by state (that would read
// every key of the bucket): Succeeded, Failed and Canceled are
// asyncreq.Uncounted. Queue is Options.Stream.
func (b *Backend) QueueStats(ctx context.Context) (asyncreq.QueueStats, error) {
	if err := b.check(ctx); err != nil {
		return asyncreq.QueueStats{}, err
	}
	info, err := b.cons.Info(ctx)
	if err != nil {
		return asyncreq.QueueStats{}, ctxErr(ctx, fmt.Errorf("nats: queue stats: %w", err))
	}
	s := asyncreq.QueueStats{
		Queue:     b.opts.Stream,
		At:        info.TimeStamp,
		Pending:   int64(info.NumPending),
		Delayed:   asyncreq.Uncounted,
		Running:   int64(info.NumAckPending),
		Succeeded: asyncreq.Uncounted,
		Failed:    asyncreq.Uncounted,
		Canceled:  asyncreq.Uncounted,
	}
	if s.At.IsZero() {
		s.At = time.Now()
	}
	if s.Pending == 0 {
		return s, nil
	}
	msg, err := b.stream.GetMsg(ctx, info.Delivered.Stream+1, jetstream.WithGetMsgSubject(b.opts.Subject))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Delivered since the info was gathered.
		return s, nil
	case err != nil:
		return asyncreq.QueueStats{}, ctxErr(ctx, fmt.Errorf("nats: queue stats: %w", err))
	}
	s.OldestPending = msg.Time
	if nb, err := strconv.ParseInt(msg.Header.Get(headerNotBefore), 10, 64); err == nil {
		switch t := time.UnixMilli(nb); {
		case t.After(s.At):
			// Not due: which later message is, only reading them tells.
			s.OldestPending = time.Time{}
		case t.After(s.OldestPending):
			s.OldestPending = t
		}
	}
	return s, nil
}
