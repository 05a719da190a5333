// Package rabbitmq is an asyncreq Queue on RabbitMQ. It is a Queue only and
// pairs with any Store (memory, SQLite, PostgreSQL, Redis, NATS).
//
// Its names follow the convention of every asyncreq backend module: a
// backend that is a Queue only names its type Queue, and since it opens
// its own connection from a URL (and its Close closes it), the constructor
// is Open(ctx, url, opts), where ctx bounds the first connection and nil
// opts means the defaults.
//
// # Topology
//
// Open declares a durable quorum queue (Options.Queue) that carries request
// ids, and, on first use, delay queues named "<queue>.delay.<n>" for
// delayed work. A delayed Enqueue or Nack publishes the id to a delay queue
// with a per-message TTL of the delay; the delay queue dead-letters expired
// messages (at least once) through the default exchange back to the main
// queue. No plugin is needed. Delays are grouped into delay queues by
// their power of two in milliseconds, because RabbitMQ expires messages
// only at the head of a queue: a message waits at most for a longer delay
// of the same group ahead of it, so a delay is never shorter than asked and
// less than twice as long.
//
// # Publishing
//
// Every publish goes to a channel in confirm mode and Enqueue returns nil
// only after the broker confirmed the message, which for a quorum queue
// means a majority of its replicas wrote it to disk (fsync). So a 202 from
// a handler on this Queue means the id survives a broker crash. If the
// connection drops before the confirm, Enqueue returns an error, never a
// false nil; the handler then answers 503 (and the Store's
// asyncreq.UnenqueuedLister, if it has one, covers the rest).
//
// # Leases
//
// Consumption uses manual acknowledgements, and the lease is the delivery
// itself: it lasts while the consumer's connection lives, however long
// that is, so the ttl arguments of Dequeue and Extend are ignored. Extend
// only checks that the delivery is still live (its connection has not
// dropped and it was not settled). When a connection drops (a crashed
// worker, a broker restart, a network fault), RabbitMQ returns its
// unacknowledged deliveries to the queue for another consumer; the old
// leases then answer asyncreq.ErrLeaseLost. The worker's Extend calls go
// on but do not keep the lease alive: AMQP heartbeats
// (Options.Heartbeat) do, by keeping the connection.
//
// RabbitMQ closes a channel whose delivery stays unacknowledged longer
// than its consumer_timeout (30 minutes by default); the Queue then
// reconnects and the delivery goes to another consumer. Set
// consumer_timeout above the longest request, or raise it per queue by
// policy.
//
// A Queue tracks the delivery tags it handed out, so a second Ack, an Ack
// after Nack, or any settlement of a delivery from a dropped connection
// returns asyncreq.ErrLeaseLost without sending anything (RabbitMQ would
// close the channel on an unknown tag).
//
// # Prefetch
//
// Options.Prefetch is the most unacknowledged deliveries the broker sends
// this process. Set it to the Worker's Concurrency: smaller starves the
// worker, larger holds requests in this process that another worker could
// be running.
//
// A Queue starts consuming at its first Dequeue, so a process that only
// enqueues (an HTTP server without a worker) holds no deliveries. A
// consuming Queue holds up to Prefetch deliveries until they are handed
// out or it is closed: stop the Worker, then Close the Queue, and the
// deliveries it held go back to the queue.
//
// # Reconnection
//
// A supervisor goroutine owned by the Queue reconnects with exponential
// backoff (Options.ReconnectMin to Options.ReconnectMax) after the
// connection or one of its channels closes, redeclares the topology and
// resumes consuming. While it is down, Enqueue and Nack fail at once and
// Dequeue waits. Nothing is lost or recorded twice: unacknowledged
// deliveries come back to the queue, their old leases fail with
// ErrLeaseLost, and the Store's lease token keeps a stale worker from
// recording an outcome.
//
// # Statistics
//
// QueueStats (asyncreq.QueueStater) is a passive declaration of the queue,
// a few milliseconds whatever its length. AMQP gives the ready messages
// only: Pending is counted; Running, Delayed and OldestPending are not, and
// messages prefetched by a consumer count in no state.
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/asyncreq/asyncreq"
)

// Options configures a Queue. A nil *Options means all defaults.
type Options struct {
	// Queue is the name of the quorum queue. The default is "asyncreq".
	Queue string
	// Prefetch is the most unacknowledged deliveries this process holds;
	// set it to the Worker's Concurrency. The default is 10 (the Worker's
	// default Concurrency).
	Prefetch int
	// Heartbeat is the AMQP heartbeat interval, which detects a dead
	// connection. The default is 10s.
	Heartbeat time.Duration
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// reconnection attempts. The defaults are 100ms and 10s.
	ReconnectMin, ReconnectMax time.Duration
	// Logger receives connection losses and failed reconnection attempts.
	// The default discards them.
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultQueue        = "asyncreq"
	DefaultPrefetch     = 10
	DefaultHeartbeat    = 10 * time.Second
	DefaultReconnectMin = 100 * time.Millisecond
	DefaultReconnectMax = 10 * time.Second
)

// handshakeTimeout bounds the TCP, TLS and AMQP handshake of a connection.
const handshakeTimeout = 30 * time.Second

// confirmTimeout bounds the wait for a publish confirm when the caller's
// context has no deadline.
const confirmTimeout = 30 * time.Second

func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Queue == "" {
		c.Queue = DefaultQueue
	}
	if c.Prefetch == 0 {
		c.Prefetch = DefaultPrefetch
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = max(DefaultReconnectMax, c.ReconnectMin)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case len(c.Queue) > 200:
		return c, fmt.Errorf("rabbitmq: Options.Queue is longer than 200 bytes")
	case c.Prefetch < 0 || c.Prefetch > 65535:
		return c, fmt.Errorf("rabbitmq: Options.Prefetch %d is not in 1..65535", c.Prefetch)
	case c.Heartbeat < time.Second:
		return c, fmt.Errorf("rabbitmq: Options.Heartbeat %s is shorter than 1s", c.Heartbeat)
	case c.ReconnectMin < 0:
		return c, fmt.Errorf("rabbitmq: Options.ReconnectMin %s is negative", c.ReconnectMin)
	case c.ReconnectMax < c.ReconnectMin:
		return c, fmt.Errorf("rabbitmq: Options.ReconnectMax %s is shorter than ReconnectMin %s", c.ReconnectMax, c.ReconnectMin)
	}
	return c, nil
}

// errNotConnected is returned by publishing calls while the Queue is
// reconnecting.
var errNotConnected = errors.New("rabbitmq: not connected")

// Queue is an asyncreq.Queue on a RabbitMQ quorum queue. It is safe for
// concurrent use. The zero value is not usable; call Open.
type Queue struct {
	url  string
	opts Options

	stop func()        // cancels the supervisor's context
	done chan struct{} // closed when the supervisor has returned

	mu        sync.Mutex
	closed    bool
	consuming bool          // set by the first Dequeue: consume on every session
	sess      *session      // the live session, or nil while reconnecting
	ready     chan struct{} // closed when sess is set; replaced when it dies
}

var (
	_ asyncreq.Queue         = (*Queue)(nil)
	_ asyncreq.BatchDequeuer = (*Queue)(nil)
)

// session is one connection with its publish and consume channels.
type session struct {
	conn *amqp.Connection
	pub  *amqp.Channel // confirm mode
	cons *amqp.Channel

	consMu     sync.Mutex
	deliveries <-chan amqp.Delivery // nil until consuming starts

	connClosed chan *amqp.Error
	pubClosed  chan *amqp.Error
	consClosed chan *amqp.Error
	canceled   chan string

	dead chan struct{} // closed by the supervisor when the session ended

	mu   sync.Mutex
	open map[uint64]struct{} // delivery tags handed out and not settled

	declMu   sync.Mutex
	declared map[string]bool // delay queues declared on this connection
}

// handle is the Lease.Handle of a RabbitMQ lease.
type handle struct {
	s   *session
	tag uint64
}

// Open connects to the broker at url, declares the quorum queue and starts
// the supervisor that reconnects; consuming starts at the first Dequeue.
// It fails if the first connection fails, and returns ctx.Err() when ctx
// ends first; ctx bounds that first connection only. Close the Queue to
// stop it and close its connection.
func Open(ctx context.Context, url string, opts *Options) (*Queue, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	q := &Queue{url: url, opts: o, done: make(chan struct{}), ready: make(chan struct{})}
	s, err := q.connect(ctx)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	q.stop = cancel
	q.setSession(s)
	go q.supervise(sctx, s)
	return q, nil
}

// Close stops the supervisor and closes the connection; unsettled
// deliveries go back to the queue. Every later call returns
// asyncreq.ErrClosed. It is idempotent.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		<-q.done
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	q.stop()
	<-q.done
	return nil
}

// connect dials the broker and sets up a session.
func (q *Queue) connect(ctx context.Context) (*session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var d net.Dialer
	// stopAbort ends the watch that aborts the handshake when ctx ends.
	var stopAbort func() bool
	conn, err := amqp.DialConfig(q.url, amqp.Config{
		Heartbeat:  q.opts.Heartbeat,
		Properties: amqp.Table{"connection_name": "asyncreq " + q.opts.Queue},
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// The AMQP handshake clears the deadline when it completes;
			// the end of ctx cuts it short through stopAbort.
			if err := c.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
				_ = c.Close()
				return nil, err
			}
			stopAbort = context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
			return c, nil
		},
	})
	if stopAbort != nil && !stopAbort() {
		// ctx ended during or just after the handshake, and the deadline
		// it set may have broken the connection.
		if err == nil {
			_ = conn.Close()
		}
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("rabbitmq: connect: %w", err))
	}
	s, err := q.setup(conn)
	if err != nil {
		_ = conn.Close()
		return nil, ctxErr(ctx, err)
	}
	return s, nil
}

// setup declares the queue and opens the channels of a new connection.
func (q *Queue) setup(conn *amqp.Connection) (*session, error) {
	s := &session{
		conn:     conn,
		dead:     make(chan struct{}),
		open:     make(map[uint64]struct{}),
		declared: make(map[string]bool),
	}
	s.connClosed = conn.NotifyClose(make(chan *amqp.Error, 1))
	var err error
	if s.pub, err = conn.Channel(); err != nil {
		return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	if _, err := s.pub.QueueDeclare(q.opts.Queue, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeQuorum,
	}); err != nil {
		return nil, fmt.Errorf("rabbitmq: declare queue %s: %w", q.opts.Queue, err)
	}
	if err := s.pub.Confirm(false); err != nil {
		return nil, fmt.Errorf("rabbitmq: confirm mode: %w", err)
	}
	s.pubClosed = s.pub.NotifyClose(make(chan *amqp.Error, 1))
	if s.cons, err = conn.Channel(); err != nil {
		return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	if err := s.cons.Qos(q.opts.Prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("rabbitmq: prefetch: %w", err)
	}
	s.consClosed = s.cons.NotifyClose(make(chan *amqp.Error, 1))
	s.canceled = s.cons.NotifyCancel(make(chan string, 1))
	q.mu.Lock()
	consuming := q.consuming
	q.mu.Unlock()
	if consuming {
		if _, err := q.consume(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// consume starts consuming on s, once, and returns its deliveries. A
// Queue consumes only once Dequeue was called, so that a Queue used only
// to enqueue (in a process that runs no worker) holds no deliveries.
func (q *Queue) consume(s *session) (<-chan amqp.Delivery, error) {
	s.consMu.Lock()
	defer s.consMu.Unlock()
	if s.deliveries != nil {
		return s.deliveries, nil
	}
	d, err := s.cons.Consume(q.opts.Queue, "", false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: consume %s: %w", q.opts.Queue, err)
	}
	s.deliveries = d
	return d, nil
}

// setSession makes s the live session and wakes the callers waiting for
// one.
func (q *Queue) setSession(s *session) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sess = s
	close(q.ready)
}

// dropSession marks s dead: its leases are lost and callers wait for the
// next session.
func (q *Queue) dropSession(s *session) {
	q.mu.Lock()
	if q.sess == s {
		q.sess = nil
		q.ready = make(chan struct{})
	}
	q.mu.Unlock()
	s.mu.Lock()
	close(s.dead)
	clear(s.open)
	s.mu.Unlock()
	_ = s.conn.Close()
}

// supervise owns the connection: it waits for the session to end,
// reconnects with backoff, and returns when ctx ends, closing the
// connection.
func (q *Queue) supervise(ctx context.Context, s *session) {
	defer close(q.done)
	for {
		var cause any = "canceled by the broker"
		select {
		case <-ctx.Done():
			q.dropSession(s)
			return
		case err := <-s.connClosed:
			cause = err
		case err := <-s.pubClosed:
			cause = err
		case err := <-s.consClosed:
			cause = err
		case <-s.canceled:
		}
		q.opts.Logger.Warn("rabbitmq: connection lost; reconnecting", "queue", q.opts.Queue, "cause", fmt.Sprint(cause))
		q.dropSession(s)
		backoff := q.opts.ReconnectMin
		for {
			timer := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			ns, err := q.connect(ctx)
			if err == nil {
				s = ns
				break
			}
			if ctx.Err() != nil {
				return
			}
			q.opts.Logger.Warn("rabbitmq: reconnect failed", "queue", q.opts.Queue, "err", err, "retry_in", backoff)
			backoff = min(2*backoff, q.opts.ReconnectMax)
		}
		q.opts.Logger.Info("rabbitmq: reconnected", "queue", q.opts.Queue)
		q.setSession(s)
	}
}

// current returns the live session, or errNotConnected while reconnecting.
func (q *Queue) current(ctx context.Context) (*session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, asyncreq.ErrClosed
	}
	if q.sess == nil {
		return nil, errNotConnected
	}
	return q.sess, nil
}

// wait returns the live session, waiting for one while reconnecting.
func (q *Queue) wait(ctx context.Context) (*session, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		q.mu.Lock()
		closed, s, ready := q.closed, q.sess, q.ready
		q.mu.Unlock()
		if closed {
			return nil, asyncreq.ErrClosed
		}
		if s != nil {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.done:
			return nil, asyncreq.ErrClosed
		case <-ready:
		}
	}
}

// delayQueue returns the name of the delay queue for delay, declaring it
// on s's connection first if needed.
func (q *Queue) delayQueue(s *session, delay time.Duration) (string, error) {
	ms := uint64(max(delay.Milliseconds(), 1))
	name := q.opts.Queue + ".delay." + strconv.Itoa(bits.Len64(ms))
	s.declMu.Lock()
	defer s.declMu.Unlock()
	if s.declared[name] {
		return name, nil
	}
	// A separate channel, so that a refused declaration (arguments that
	// differ from an existing queue) closes only that channel.
	ch, err := s.conn.Channel()
	if err != nil {
		return "", fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	defer func() { _ = ch.Close() }()
	_, err = ch.QueueDeclare(name, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:           amqp.QueueTypeQuorum,
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": q.opts.Queue,
		"x-dead-letter-strategy":    "at-least-once",
		amqp.QueueOverflowArg:       amqp.QueueOverflowRejectPublish,
	})
	if err != nil {
		return "", fmt.Errorf("rabbitmq: declare delay queue %s: %w", name, err)
	}
	s.declared[name] = true
	return name, nil
}

// publish sends id to the main queue, or to a delay queue when delay > 0,
// and waits for the broker's confirm.
func (q *Queue) publish(ctx context.Context, s *session, id string, delay time.Duration) error {
	msg := amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		ContentType:  "text/plain",
		Body:         []byte(id),
	}
	key := q.opts.Queue
	if delay > 0 {
		name, err := q.delayQueue(s, delay)
		if err != nil {
			return err
		}
		key = name
		msg.Expiration = strconv.FormatInt(max(delay.Milliseconds(), 1), 10)
	}
	// Without a deadline from the caller, a broker that never confirms (a
	// resource alarm blocks publishers) must not hold the call forever.
	pctx, cancel := ctx, context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		pctx, cancel = context.WithTimeout(ctx, confirmTimeout)
	}
	defer cancel()
	dc, err := s.pub.PublishWithDeferredConfirmWithContext(pctx, "", key, false, false, msg)
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("rabbitmq: publish %s: %w", id, err))
	}
	acked, err := dc.WaitContext(pctx)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("rabbitmq: publish %s: no confirm within %s", id, confirmTimeout)
	}
	if !acked {
		return fmt.Errorf("rabbitmq: publish %s: not confirmed by the broker", id)
	}
	return nil
}

// Enqueue implements asyncreq.Queue. It returns nil only after the broker
// confirmed the message; while the Queue is reconnecting it fails at once.
func (q *Queue) Enqueue(ctx context.Context, id string, delay time.Duration) error {
	s, err := q.current(ctx)
	if err != nil {
		return err
	}
	if id == "" {
		return errors.New("rabbitmq: enqueue: empty id")
	}
	return q.publish(ctx, s, id, delay)
}

// Dequeue implements asyncreq.Queue. The lease lasts while the connection
// does; ttl is ignored. While the Queue is reconnecting Dequeue waits.
func (q *Queue) Dequeue(ctx context.Context, ttl time.Duration) (*asyncreq.Lease, error) {
	q.mu.Lock()
	q.consuming = true
	q.mu.Unlock()
	for {
		s, err := q.wait(ctx)
		if err != nil {
			return nil, err
		}
		deliveries, err := q.consume(s)
		if err != nil {
			// The channel closed; the supervisor reconnects.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-s.dead:
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.dead:
		case d, ok := <-deliveries:
			if !ok {
				// The supervisor notices the closed channel and reconnects.
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-s.dead:
				}
				continue
			}
			if l := s.lease(d); l != nil {
				return l, nil
			}
		}
	}
}

// lease records d as handed out and returns its lease, or nil if the
// session died meanwhile (the broker has already taken d back).
func (s *session) lease(d amqp.Delivery) *asyncreq.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.dead:
		return nil
	default:
	}
	s.open[d.DeliveryTag] = struct{}{}
	delivery := 1
	// Quorum queues count the earlier failed deliveries of a message.
	switch n := d.Headers["x-delivery-count"].(type) {
	case int64:
		delivery += int(n)
	case int32:
		delivery += int(n)
	case int:
		delivery += n
	default:
		if d.Redelivered {
			delivery = 2
		}
	}
	return &asyncreq.Lease{ID: string(d.Body), Delivery: delivery, Handle: &handle{s: s, tag: d.DeliveryTag}}
}

// take checks that l is a live lease and, if settle is true, removes it
// from the open deliveries, so that it can be settled once. It returns
// ErrLeaseLost for a lease that was settled or whose connection dropped.
func take(l *asyncreq.Lease, settle bool) (*handle, error) {
	if l == nil {
		return nil, asyncreq.ErrLeaseLost
	}
	h, ok := l.Handle.(*handle)
	if !ok || h == nil {
		return nil, asyncreq.ErrLeaseLost
	}
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if _, ok := h.s.open[h.tag]; !ok {
		return nil, asyncreq.ErrLeaseLost
	}
	if settle {
		delete(h.s.open, h.tag)
	}
	return h, nil
}

// settleErr maps an error from acknowledging on h's channel: a dropped
// connection means the lease is lost.
func settleErr(h *handle, what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, amqp.ErrClosed) || h.s.conn.IsClosed() {
		return asyncreq.ErrLeaseLost
	}
	return fmt.Errorf("rabbitmq: %s: %w", what, err)
}

// checkOpen returns ctx.Err() or ErrClosed.
func (q *Queue) checkOpen(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return asyncreq.ErrClosed
	}
	return nil
}

// Extend implements asyncreq.Queue. The lease needs no renewal; Extend
// reports whether it is still live. ttl is ignored.
func (q *Queue) Extend(ctx context.Context, l *asyncreq.Lease, ttl time.Duration) error {
	if err := q.checkOpen(ctx); err != nil {
		return err
	}
	_, err := take(l, false)
	return err
}

// Ack implements asyncreq.Queue.
func (q *Queue) Ack(ctx context.Context, l *asyncreq.Lease) error {
	if err := q.checkOpen(ctx); err != nil {
		return err
	}
	h, err := take(l, true)
	if err != nil {
		return err
	}
	return settleErr(h, "ack "+l.ID, h.s.cons.Ack(h.tag, false))
}

// Nack implements asyncreq.Queue. With no delay the delivery is returned to
// the queue. With a delay the id is published to a delay queue (confirmed)
// and then the delivery is acknowledged; if that publish fails, the
// delivery is returned to the queue at once instead, and Nack reports the
// error.
func (q *Queue) Nack(ctx context.Context, l *asyncreq.Lease, delay time.Duration) error {
	if err := q.checkOpen(ctx); err != nil {
		return err
	}
	h, err := take(l, true)
	if err != nil {
		return err
	}
	if delay <= 0 {
		return settleErr(h, "nack "+l.ID, h.s.cons.Nack(h.tag, false, true))
	}
	if perr := q.publish(ctx, h.s, l.ID, delay); perr != nil {
		if err := settleErr(h, "nack "+l.ID, h.s.cons.Nack(h.tag, false, true)); err != nil {
			return err
		}
		return perr
	}
	return settleErr(h, "nack "+l.ID, h.s.cons.Ack(h.tag, false))
}

// ctxErr returns ctx.Err() unwrapped when ctx ended, and err otherwise.
func ctxErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// DequeueBatch implements asyncreq.BatchDequeuer: it waits like Dequeue for
// one delivery, then takes up to max-1 more that this process already
// holds (see Options.Prefetch), without waiting. ttl is ignored.
func (q *Queue) DequeueBatch(ctx context.Context, max int, ttl time.Duration) ([]*asyncreq.Lease, error) {
	first, err := q.Dequeue(ctx, ttl)
	if err != nil {
		return nil, err
	}
	leases := []*asyncreq.Lease{first}
	s := first.Handle.(*handle).s
	deliveries, err := q.consume(s)
	if err != nil {
		return leases, nil
	}
	for len(leases) < max {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return leases, nil
			}
			if l := s.lease(d); l != nil {
				leases = append(leases, l)
			}
		default:
			return leases, nil
		}
	}
	return leases, nil
}
