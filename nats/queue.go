package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// headerNotBefore carries the due time (Unix milliseconds) of a delayed
// Enqueue.
const headerNotBefore = "Asyncreq-Not-Before"

// pollWait is the longest a single pull request waits on the server before
// Dequeue sends the next one.
const pollWait = 5 * time.Second

// delivery is the Lease.Handle of a NATS lease: one message delivery and
// what this process knows about it.
type delivery struct {
	msg jetstream.Msg

	mu       sync.Mutex
	settled  bool
	deadline time.Time // when the server's AckWait runs out, less a margin
}

// Enqueue implements asyncreq.Queue. It returns nil once JetStream
// acknowledged the message (see Durability in the package documentation).
// A delay is carried in a header; see the package documentation.
func (b *Backend) Enqueue(ctx context.Context, id string, delay time.Duration) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if id == "" {
		return errors.New("nats: enqueue: empty id")
	}
	msg := &natsgo.Msg{Subject: b.opts.Subject, Data: []byte(id)}
	if delay > 0 {
		msg.Header = natsgo.Header{}
		msg.Header.Set(headerNotBefore, strconv.FormatInt(time.Now().Add(delay).UnixMilli(), 10))
	}
	if _, err := b.js.PublishMsg(ctx, msg); err != nil {
		return ctxErr(ctx, fmt.Errorf("nats: enqueue %s: %w", id, err))
	}
	return nil
}

// Dequeue implements asyncreq.Queue. The lease lasts Options.AckWait; ttl
// is ignored.
//
// A pull request stays registered on the server until it expires, even
// when the Dequeue that sent it returns early because its context ended.
// So that a message the server sends to such a request is not stranded
// until its AckWait runs out, pull requests are not tied to the caller's
// context: a message that arrives after its Dequeue returned is handed to
// the next Dequeue of this Backend, or handed back to the server if none
// comes within half a lease.
func (b *Backend) Dequeue(ctx context.Context, ttl time.Duration) (*asyncreq.Lease, error) {
	for {
		if err := b.check(ctx); err != nil {
			return nil, err
		}
		var msg jetstream.Msg
		select {
		case msg = <-b.orphans:
			refresh(msg)
		default:
			m, err := b.fetch(ctx)
			if err != nil {
				return nil, err
			}
			msg = m
		}
		if msg == nil {
			continue
		}
		if l := b.lease(msg); l != nil {
			return l, nil
		}
	}
}

// pulled is the outcome of one pull request.
type pulled struct {
	msg jetstream.Msg
	err error
}

// fetch sends one pull request for one message and waits for its answer,
// for a message left over by an earlier pull request, or for ctx to end.
// It returns a nil message when the request expired empty.
func (b *Backend) fetch(ctx context.Context) (jetstream.Msg, error) {
	fctx, cancel := context.WithTimeout(context.Background(), pollWait)
	// Close cancels the pull requests in flight and waits for them.
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		cancel()
		return nil, asyncreq.ErrClosed
	}
	if b.fetches == nil {
		b.fetches = make(map[*fetch]struct{})
	}
	f := &fetch{cancel: cancel}
	b.fetches[f] = struct{}{}
	b.wg.Add(1)
	b.mu.Unlock()

	res := make(chan pulled)
	abandoned := make(chan struct{})
	go func() {
		defer b.wg.Done()
		defer func() {
			b.mu.Lock()
			delete(b.fetches, f)
			b.mu.Unlock()
			cancel()
		}()
		msg, err := b.pull(fctx)
		select {
		case res <- pulled{msg, err}:
		case <-abandoned:
			if msg != nil {
				b.adopt(msg)
			}
		}
	}()

	select {
	case r := <-res:
		if r.err != nil {
			if err := b.check(ctx); err != nil {
				return nil, err
			}
		}
		return r.msg, r.err
	case m := <-b.orphans:
		close(abandoned)
		refresh(m)
		return m, nil
	case <-ctx.Done():
		close(abandoned)
		return nil, ctx.Err()
	case <-b.done:
		close(abandoned)
		return nil, asyncreq.ErrClosed
	}
}

// pull sends one pull request for one message and waits until it is
// answered or fctx ends.
func (b *Backend) pull(fctx context.Context) (jetstream.Msg, error) {
	batch, err := b.cons.Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		if fctx.Err() != nil {
			return nil, nil
		}
		if errors.Is(err, natsgo.ErrNoResponders) {
			return nil, noResponders(fctx)
		}
		return nil, fmt.Errorf("nats: dequeue: %w", err)
	}
	var msg jetstream.Msg
	for m := range batch.Messages() {
		msg = m
	}
	if msg != nil {
		return msg, nil
	}
	err = batch.Error()
	switch {
	case err == nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return nil, nil
	case errors.Is(err, natsgo.ErrNoResponders):
		return nil, noResponders(fctx)
	}
	return nil, fmt.Errorf("nats: dequeue: %w", err)
}

// noRespondersWait is how long a pull request that found no responder
// waits before the next one.
const noRespondersWait = 50 * time.Millisecond

// noResponders waits a moment after a pull request that no server
// answered: in a cluster the consumer has no leader for a moment after it
// is created or while its leader is elected again, and that passes. The
// request counts as expired empty, so Dequeue asks again.
func noResponders(fctx context.Context) error {
	t := time.NewTimer(noRespondersWait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-fctx.Done():
	}
	return nil
}

// refresh restarts the AckWait of a message that waited for a taker, so
// that the lease made of it lasts as long as a fresh one. If the
// acknowledgement is lost, the lease may end early and the message comes
// back: at least once either way.
func refresh(msg jetstream.Msg) { _ = msg.InProgress() }

// adopt offers a message that arrived for an abandoned pull request to the
// next Dequeue, and hands it back to the server if none takes it within
// half a lease or b is closed.
func (b *Backend) adopt(msg jetstream.Msg) {
	t := time.NewTimer(b.leaseLife() / 2)
	defer t.Stop()
	select {
	case b.orphans <- msg:
	case <-t.C:
		_ = msg.Nak()
	case <-b.done:
		_ = msg.Nak()
	}
}

// lease turns a delivered message into a lease, or hands it back and
// returns nil if it is not due yet.
func (b *Backend) lease(msg jetstream.Msg) *asyncreq.Lease {
	now := time.Now()
	if nb := msg.Headers().Get(headerNotBefore); nb != "" {
		if ms, err := strconv.ParseInt(nb, 10, 64); err == nil {
			if wait := time.UnixMilli(ms).Sub(now); wait > 0 {
				// Not due: hand it back for the rest of its delay. If this
				// negative acknowledgement is lost, the AckWait brings the
				// message back instead.
				_ = msg.NakWithDelay(wait)
				return nil
			}
		}
	}
	delivered := 1
	if md, err := msg.Metadata(); err == nil {
		delivered = int(md.NumDelivered)
	}
	return &asyncreq.Lease{
		ID:       string(msg.Data()),
		Delivery: delivered,
		Handle:   &delivery{msg: msg, deadline: now.Add(b.leaseLife())},
	}
}

// leaseLife is how long after a delivery (or an in-progress
// acknowledgement) this process still counts the lease as held. The server
// started its AckWait a little earlier, when it sent the message, so the
// lease is given up a margin before the AckWait ends.
func (b *Backend) leaseLife() time.Duration {
	margin := min(b.opts.AckWait/10, time.Second)
	return b.opts.AckWait - margin
}

// settle checks that l is a live lease of this Backend and, if final is
// true, marks it settled. It returns ErrLeaseLost for a lease that ran out
// or was settled.
func (b *Backend) settle(ctx context.Context, l *asyncreq.Lease, final bool, fn func(*delivery) error) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if l == nil {
		return asyncreq.ErrLeaseLost
	}
	d, ok := l.Handle.(*delivery)
	if !ok || d == nil {
		return asyncreq.ErrLeaseLost
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled || !time.Now().Before(d.deadline) {
		d.settled = true
		return asyncreq.ErrLeaseLost
	}
	if final {
		d.settled = true
	}
	return fn(d)
}

// Extend implements asyncreq.Queue by sending an in-progress
// acknowledgement, which restarts the AckWait; ttl is ignored.
func (b *Backend) Extend(ctx context.Context, l *asyncreq.Lease, ttl time.Duration) error {
	return b.settle(ctx, l, false, func(d *delivery) error {
		now := time.Now()
		if err := d.msg.InProgress(); err != nil {
			return fmt.Errorf("nats: extend %s: %w", l.ID, err)
		}
		d.deadline = now.Add(b.leaseLife())
		return nil
	})
}

// Ack implements asyncreq.Queue. It waits for the server to confirm the
// acknowledgement.
func (b *Backend) Ack(ctx context.Context, l *asyncreq.Lease) error {
	return b.settle(ctx, l, true, func(d *delivery) error {
		if err := d.msg.DoubleAck(ctx); err != nil {
			return ctxErr(ctx, fmt.Errorf("nats: ack %s: %w", l.ID, err))
		}
		return nil
	})
}

// Nack implements asyncreq.Queue with a negative acknowledgement delayed
// by delay.
func (b *Backend) Nack(ctx context.Context, l *asyncreq.Lease, delay time.Duration) error {
	return b.settle(ctx, l, true, func(d *delivery) error {
		var err error
		if delay > 0 {
			err = d.msg.NakWithDelay(delay)
		} else {
			err = d.msg.Nak()
		}
		if err != nil {
			return fmt.Errorf("nats: nack %s: %w", l.ID, err)
		}
		return nil
	})
}

// DequeueBatch implements asyncreq.BatchDequeuer: it waits like Dequeue for
// one message, then takes up to max-1 more that are waiting, without
// waiting for them. ttl is ignored.
func (b *Backend) DequeueBatch(ctx context.Context, max int, ttl time.Duration) ([]*asyncreq.Lease, error) {
	first, err := b.Dequeue(ctx, ttl)
	if err != nil {
		return nil, err
	}
	leases := []*asyncreq.Lease{first}
	if max <= 1 {
		return leases, nil
	}
	batch, err := b.cons.FetchNoWait(max - 1)
	if err != nil {
		return leases, nil // the first lease stands; the rest come next time
	}
	for m := range batch.Messages() {
		if l := b.lease(m); l != nil {
			leases = append(leases, l)
		}
	}
	return leases, nil
}
