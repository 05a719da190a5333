package rabbitmq_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
	"github.com/asyncreq/asyncreq/rabbitmq"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// brokerURL returns ASYNCREQ_TEST_AMQP or skips t.
func brokerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("ASYNCREQ_TEST_AMQP")
	if u == "" {
		t.Skip("ASYNCREQ_TEST_AMQP is not set (e.g. amqp://guest:guest@127.0.0.1:5672/); skipping the RabbitMQ integration tests")
	}
	return u
}

// queueName returns a queue name of the test's own; the queue and its
// delay queues are deleted when t ends.
func queueName(t testing.TB, u string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "asyncreq-test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { deleteQueues(t, u, name) })
	return name
}

func deleteQueues(t testing.TB, u, name string) {
	conn, err := amqp.Dial(u)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	names := []string{name}
	for i := 1; i <= 64; i++ {
		names = append(names, name+".delay."+strconv.Itoa(i))
	}
	for _, n := range names {
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		// Deleting a queue that does not exist is not an error in
		// RabbitMQ 3.x and later; any other failure closes only this
		// channel.
		_, _ = ch.QueueDelete(n, false, false, false)
		_ = ch.Close()
	}
}

// newQueue returns a Queue on a fresh queue (or on opts.Queue), closed when
// t ends.
func newQueue(t testing.TB, u string, opts *rabbitmq.Options) *rabbitmq.Queue {
	t.Helper()
	if opts == nil {
		opts = &rabbitmq.Options{}
	}
	if opts.Queue == "" {
		opts.Queue = queueName(t, u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := rabbitmq.Open(ctx, u, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, q.Close()) })
	return q
}

func dequeue(t *testing.T, q asyncreq.Queue, within time.Duration) *asyncreq.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	l, err := q.Dequeue(ctx, time.Second)
	require.NoError(t, err, "Dequeue within %v", within)
	return l
}

func requireEmpty(t *testing.T, q asyncreq.Queue, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	l, err := q.Dequeue(ctx, time.Second)
	if err == nil {
		t.Fatalf("Dequeue returned %q, want nothing for %v", l.ID, d)
	}
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestOpenRejectsBadOptions(t *testing.T) {
	u := brokerURL(t)
	_, err := rabbitmq.Open(t.Context(), u, &rabbitmq.Options{Prefetch: -1})
	require.ErrorContains(t, err, "Prefetch")
	_, err = rabbitmq.Open(t.Context(), u, &rabbitmq.Options{ReconnectMin: time.Second, ReconnectMax: time.Millisecond})
	require.ErrorContains(t, err, "ReconnectMax")
	_, err = rabbitmq.Open(t.Context(), "amqp://guest:guest@127.0.0.1:1/", nil)
	require.Error(t, err, "an unreachable broker fails Open")
}

func TestAckTwiceIsLeaseLostAndChannelSurvives(t *testing.T) {
	u := brokerURL(t)
	q := newQueue(t, u, nil)
	ctx := t.Context()
	require.NoError(t, q.Enqueue(ctx, "a", 0))
	l := dequeue(t, q, 5*time.Second)
	require.Equal(t, "a", l.ID)
	require.Equal(t, 1, l.Delivery)
	require.NoError(t, q.Extend(ctx, l, time.Second))
	require.NoError(t, q.Ack(ctx, l))
	require.ErrorIs(t, q.Ack(ctx, l), asyncreq.ErrLeaseLost)
	require.ErrorIs(t, q.Nack(ctx, l, 0), asyncreq.ErrLeaseLost)
	require.ErrorIs(t, q.Extend(ctx, l, time.Second), asyncreq.ErrLeaseLost)
	require.ErrorIs(t, q.Ack(ctx, &asyncreq.Lease{ID: "a", Handle: "bogus"}), asyncreq.ErrLeaseLost)

	// The channel is still usable: no unknown tag reached the broker.
	require.NoError(t, q.Enqueue(ctx, "b", 0))
	l = dequeue(t, q, 5*time.Second)
	require.Equal(t, "b", l.ID)
	require.NoError(t, q.Ack(ctx, l))
	requireEmpty(t, q, 300*time.Millisecond)
}

func TestNackRedelivers(t *testing.T) {
	u := brokerURL(t)
	q := newQueue(t, u, nil)
	ctx := t.Context()
	require.NoError(t, q.Enqueue(ctx, "a", 0))
	l := dequeue(t, q, 5*time.Second)
	require.NoError(t, q.Nack(ctx, l, 0))
	again := dequeue(t, q, 5*time.Second)
	require.Equal(t, "a", again.ID)
	require.Equal(t, 2, again.Delivery)

	start := time.Now()
	require.NoError(t, q.Nack(ctx, again, 600*time.Millisecond))
	requireEmpty(t, q, 300*time.Millisecond)
	third := dequeue(t, q, 5*time.Second)
	require.Equal(t, "a", third.ID)
	require.GreaterOrEqual(t, time.Since(start), 550*time.Millisecond)
	require.NoError(t, q.Ack(ctx, third))
}

func TestDelayedEnqueue(t *testing.T) {
	u := brokerURL(t)
	q := newQueue(t, u, nil)
	ctx := t.Context()
	start := time.Now()
	require.NoError(t, q.Enqueue(ctx, "long", 30*time.Second))
	require.NoError(t, q.Enqueue(ctx, "short", 500*time.Millisecond))
	require.NoError(t, q.Enqueue(ctx, "now", 0))
	l := dequeue(t, q, 5*time.Second)
	require.Equal(t, "now", l.ID)
	require.NoError(t, q.Ack(ctx, l))
	l = dequeue(t, q, 5*time.Second)
	require.Equal(t, "short", l.ID, "a short delay is not held behind a long one")
	require.GreaterOrEqual(t, time.Since(start), 450*time.Millisecond)
	require.NoError(t, q.Ack(ctx, l))
	requireEmpty(t, q, 300*time.Millisecond)
}

func TestCloseReleasesDequeue(t *testing.T) {
	u := brokerURL(t)
	q, err := rabbitmq.Open(t.Context(), u, &rabbitmq.Options{Queue: queueName(t, u)})
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() {
		_, err := q.Dequeue(context.Background(), time.Second)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, q.Close())
	require.NoError(t, q.Close(), "Close is idempotent")
	select {
	case err := <-errc:
		require.ErrorIs(t, err, asyncreq.ErrClosed)
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not release Dequeue")
	}
	require.ErrorIs(t, q.Enqueue(t.Context(), "a", 0), asyncreq.ErrClosed)
}

// proxy is a TCP proxy to the broker that a test can cut.
type proxy struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

// newProxy starts a proxy to the broker of u and returns it with a URL
// through it. It stops when t ends.
func newProxy(t *testing.T, u string) (*proxy, string) {
	t.Helper()
	pu, err := url.Parse(u)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, upstream: pu.Host, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	pu.Host = ln.Addr().String()
	return p, pu.String()
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.conns[up] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

// cut drops every connection; with down, new ones are refused until
// restore.
func (p *proxy) cut(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.cut(true)
	p.wg.Wait()
}

// TestReconnect cuts the connection under a Queue holding a lease: the
// lease is lost, publishing fails while the broker is unreachable (never a
// false nil), and after the way is open again the Queue reconnects by
// itself and delivers both the old message and new ones.
func TestReconnect(t *testing.T) {
	u := brokerURL(t)
	p, pu := newProxy(t, u)
	name := queueName(t, u)
	q := newQueue(t, pu, &rabbitmq.Options{Queue: name, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond})
	ctx := t.Context()

	require.NoError(t, q.Enqueue(ctx, "held", 0))
	held := dequeue(t, q, 5*time.Second)
	require.Equal(t, "held", held.ID)

	p.cut(true)
	require.Eventually(t, func() bool {
		return q.Extend(ctx, held, time.Second) != nil
	}, 5*time.Second, 20*time.Millisecond, "a lease from a dropped connection is lost")
	require.ErrorIs(t, q.Extend(ctx, held, time.Second), asyncreq.ErrLeaseLost)
	require.ErrorIs(t, q.Ack(ctx, held), asyncreq.ErrLeaseLost)
	require.Error(t, q.Enqueue(ctx, "while-down", 0), "Enqueue without a connection must fail")

	// Dequeue waits through the outage.
	type result struct {
		l   *asyncreq.Lease
		err error
	}
	got := make(chan result, 1)
	go func() {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		l, err := q.Dequeue(dctx, time.Second)
		got <- result{l, err}
	}()
	time.Sleep(300 * time.Millisecond)
	p.restore()

	r := <-got
	require.NoError(t, r.err)
	require.Equal(t, "held", r.l.ID, "the unacknowledged delivery comes back")
	require.NoError(t, q.Ack(ctx, r.l))
	require.Eventually(t, func() bool { return q.Enqueue(ctx, "after", 0) == nil }, 5*time.Second, 50*time.Millisecond)
	l := dequeue(t, q, 5*time.Second)
	require.Equal(t, "after", l.ID)
	require.NoError(t, q.Ack(ctx, l))
	requireEmpty(t, q, 300*time.Millisecond)
}

// TestPendingPublishFailsOnCut publishes from several goroutines while
// the connection is cut and restored: every Enqueue that returned nil is a
// message the broker kept.
func TestPendingPublishFailsOnCut(t *testing.T) {
	u := brokerURL(t)
	p, pu := newProxy(t, u)
	name := queueName(t, u)
	q := newQueue(t, pu, &rabbitmq.Options{Queue: name, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond})
	ctx := t.Context()

	stop := make(chan struct{})
	var mu sync.Mutex
	confirmed := make(map[string]bool)
	failed := 0
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				id := strconv.Itoa(i) + "-" + strconv.Itoa(j)
				err := q.Enqueue(ctx, id, 0)
				mu.Lock()
				if err == nil {
					confirmed[id] = true
				} else {
					failed++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	p.cut(false)
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	require.NoError(t, q.Close(), "its unacknowledged deliveries go back to the queue")
	require.NotZero(t, failed, "publishes in flight when the connection dropped must fail")

	// Read everything through a direct Queue on the same queue.
	direct := newQueue(t, u, &rabbitmq.Options{Queue: name, Prefetch: 500})
	seen := make(map[string]bool)
	for {
		ls, err := func() ([]*asyncreq.Lease, error) {
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return direct.DequeueBatch(dctx, 500, time.Second)
		}()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			break
		}
		for _, l := range ls {
			seen[l.ID] = true
			require.NoError(t, direct.Ack(ctx, l))
		}
	}
	missing := 0
	for id := range confirmed {
		if !seen[id] {
			missing++
		}
	}
	require.Zero(t, missing, "Enqueue returned nil for %d messages the broker does not have", missing)
	t.Logf("%d publishes confirmed, %d failed, %d messages delivered", len(confirmed), failed, len(seen))
}

// TestCrashedConsumer: a consumer takes a request and its connection goes
// away before it settles; another worker gets the request and finishes it,
// and the dead attempt cannot record an outcome.
func TestCrashedConsumer(t *testing.T) {
	u := brokerURL(t)
	name := queueName(t, u)
	store := memory.New(nil)
	t.Cleanup(func() { _ = store.Close() })
	ctx := t.Context()

	rec := &asyncreq.Record{ID: asyncreq.NewID(), State: asyncreq.StatePending, Enqueued: true,
		CreatedAt: time.Now(), UpdatedAt: time.Now(), Retention: time.Hour}
	_, err := store.Create(ctx, rec)
	require.NoError(t, err)

	crashed, err := rabbitmq.Open(ctx, u, &rabbitmq.Options{Queue: name, Prefetch: 1})
	require.NoError(t, err)
	require.NoError(t, crashed.Enqueue(ctx, rec.ID, 0))
	l := dequeue(t, crashed, 5*time.Second)
	require.Equal(t, rec.ID, l.ID)
	_, err = store.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateRunning
		r.Attempts++
		r.LeaseToken = "crashed"
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, crashed.Close()) // the connection closes without an ack
	require.Error(t, crashed.Ack(ctx, l))

	q := newQueue(t, u, &rabbitmq.Options{Queue: name})
	var runs atomic.Int32
	w, err := asyncreq.NewWorker(asyncreq.Pair(store, q), asyncreq.ProcessorFunc(func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		runs.Add(1)
		return &asyncreq.Result{Body: []byte("done")}, nil
	}), &asyncreq.WorkerOptions{PurgeInterval: -1, SweepInterval: -1})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	defer func() { require.NoError(t, w.Stop(context.Background())) }()
	require.Eventually(t, func() bool {
		got, err := store.Get(ctx, rec.ID)
		return err == nil && got.State == asyncreq.StateSucceeded
	}, 10*time.Second, 20*time.Millisecond)
	got, err := store.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, 2, got.Attempts, "the crashed attempt counts")
	require.Equal(t, int32(1), runs.Load())
}

// TestEnqueueOnlyQueueHoldsNothing: a Queue that never dequeues (an HTTP
// server's, with the workers elsewhere) does not consume, so another
// Queue gets every message at once.
func TestEnqueueOnlyQueueHoldsNothing(t *testing.T) {
	u := brokerURL(t)
	name := queueName(t, u)
	producer := newQueue(t, u, &rabbitmq.Options{Queue: name})
	ctx := t.Context()
	for i := range 20 {
		require.NoError(t, producer.Enqueue(ctx, strconv.Itoa(i), 0))
	}
	consumer := newQueue(t, u, &rabbitmq.Options{Queue: name, Prefetch: 5})
	for range 20 {
		l := dequeue(t, consumer, 2*time.Second)
		require.NoError(t, consumer.Ack(ctx, l))
	}
}

// TestOpenHonorsContext: a broker that accepts the TCP connection and then
// says nothing does not hold Open past its context.
func TestOpenHonorsContext(t *testing.T) {
	brokerURL(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var held []net.Conn
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	defer wg.Wait()
	defer ln.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = rabbitmq.Open(ctx, "amqp://guest:guest@"+ln.Addr().String()+"/", nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 3*time.Second)
}
