package postgres

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// waker wakes every goroutine waiting on it at once: wait returns a channel
// that the next wake closes.
type waker struct {
	mu sync.Mutex
	ch chan struct{}
}

func (w *waker) init() { w.ch = make(chan struct{}) }

// wait returns the channel the next wake closes. Take it before looking for
// work, so that a wake in between is not missed.
func (w *waker) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

func (w *waker) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.ch)
	w.ch = make(chan struct{})
}

// watch is one Watch call: its channel, and the release of its context.
type watch struct {
	ch   chan struct{}
	stop func() bool
}

// watchSet holds the open watches by record id. A watch leaves the set
// exactly once, and whoever takes it out closes its channel.
type watchSet struct {
	mu sync.Mutex
	m  map[string]map[*watch]struct{}
}

func (ws *watchSet) init() { ws.m = make(map[string]map[*watch]struct{}) }

// add opens a watch on id that ends when ctx does.
func (ws *watchSet) add(ctx context.Context, id string) <-chan struct{} {
	w := &watch{ch: make(chan struct{})}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	set := ws.m[id]
	if set == nil {
		set = make(map[*watch]struct{})
		ws.m[id] = set
	}
	set[w] = struct{}{}
	w.stop = context.AfterFunc(ctx, func() { ws.remove(id, w) })
	return w.ch
}

// remove takes w out of the set and closes it, unless a change did first.
func (ws *watchSet) remove(id string, w *watch) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	set := ws.m[id]
	if _, ok := set[w]; !ok {
		return
	}
	delete(set, w)
	if len(set) == 0 {
		delete(ws.m, id)
	}
	close(w.ch)
}

// fire closes the watches of id.
func (ws *watchSet) fire(id string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.m[id] {
		w.stop()
		close(w.ch)
	}
	delete(ws.m, id)
}

// closeAll closes every watch.
func (ws *watchSet) closeAll() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for id, set := range ws.m {
		for w := range set {
			w.stop()
			close(w.ch)
		}
		delete(ws.m, id)
	}
}

// Backoff between attempts to reopen a lost LISTEN connection.
const (
	listenBackoffMin = 100 * time.Millisecond
	listenBackoffMax = 10 * time.Second
)

// listen keeps a LISTEN connection on the schema's channel until ctx ends,
// and turns notifications into wakes of waiting Dequeues and Watches.
// Whenever the connection is reestablished, everything waiting is woken,
// since notifications may have been missed. ready is closed once the first
// attempt to listen succeeded or failed.
func (s *Backend) listen(ctx context.Context, ready chan<- struct{}) {
	defer s.wg.Done()
	backoff := listenBackoffMin
	for first := true; ; first = false {
		connected, err := s.listenOnce(ctx, first, ready)
		if first && !connected {
			close(ready)
		}
		if ctx.Err() != nil {
			return
		}
		if connected {
			backoff = listenBackoffMin
		}
		s.opts.Logger.Warn("postgres: LISTEN connection lost; idle workers fall back to polling",
			"channel", s.channel, "retry_in", backoff, "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, listenBackoffMax)
	}
}

// listenOnce opens a connection, listens until it fails or ctx ends, and
// reports whether it got as far as listening. On the first attempt it
// closes ready once it listens.
func (s *Backend) listenOnce(ctx context.Context, first bool, ready chan<- struct{}) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return false, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return false, err
	}
	s.polls.Listen(true)
	if first {
		close(ready)
	} else {
		s.jobs.wake()
		s.watches.closeAll()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			s.polls.Listen(false)
			return true, err
		}
		s.dispatch(n.Payload)
	}
}

// dispatch acts on one notification payload.
func (s *Backend) dispatch(payload string) {
	kind, rest, _ := strings.Cut(payload, sep)
	switch kind {
	case "j":
		if rest == s.queue {
			s.jobs.wake()
		}
	case "r":
		origin, rest, _ := strings.Cut(rest, sep)
		queue, id, _ := strings.Cut(rest, sep)
		if origin != s.origin && queue == s.queue {
			s.polls.Changed(id)
			s.watches.fire(id)
		}
	}
}

// notifier sends NOTIFY payloads after the changes they announce have
// committed, from a goroutine of its own, so that no caller waits for it.
// Payloads posted while a send is under way, or within notifyGap of the
// last one, go together in the next send, each only once. A payload that
// cannot be sent is dropped: the listeners' polling fallback covers it.
type notifier struct {
	exec    func(ctx context.Context, payloads []string) error
	gap     time.Duration // notifyGap, but in tests
	log     *slog.Logger
	channel string
	mu      sync.Mutex
	pending map[string]struct{}
	kick    chan struct{} // has an element when pending is not empty
	stop    chan struct{}
	done    chan struct{}
}

// notifyTimeout bounds one send.
const notifyTimeout = 5 * time.Second

// notifyGap is the least time between the starts of two sends. A change
// after a quiet spell is sent at once; under a steady stream of changes,
// one NOTIFY statement every notifyGap carries all of them, instead of one
// statement (a transaction, a round trip and a wakeup of every listening
// connection) for every few. With a NOTIFY per accepted batch, PostgreSQL
// spent 65-79 µs an accept, and 47-55 with this gap (docs/benchmarks.md).
// Other processes learn of a change up to notifyGap later under load;
// those in this process are told directly, at once.
const notifyGap = 5 * time.Millisecond

// newNotifier starts the notifier of s.
func newNotifier(s *Backend) *notifier {
	return startNotifier(s.opts.Logger, s.channel, notifyGap, func(ctx context.Context, payloads []string) error {
		_, err := s.pool.Exec(ctx, s.sql.notify, s.channel, payloads)
		return err
	})
}

// startNotifier starts a notifier whose sends call exec, at least gap
// apart.
func startNotifier(log *slog.Logger, channel string, gap time.Duration, exec func(ctx context.Context, payloads []string) error) *notifier {
	n := &notifier{
		exec:    exec,
		gap:     gap,
		log:     log,
		channel: channel,
		pending: make(map[string]struct{}),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go n.loop()
	return n
}

// post queues payload for the next send.
func (n *notifier) post(payload string) {
	n.mu.Lock()
	n.pending[payload] = struct{}{}
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// close sends what is pending and stops the goroutine.
func (n *notifier) close() {
	close(n.stop)
	<-n.done
}

func (n *notifier) loop() {
	defer close(n.done)
	gap := time.NewTimer(0)
	defer gap.Stop()
	for {
		select {
		case <-n.kick:
		case <-n.stop:
			n.send()
			return
		}
		// A send starts no sooner than n.gap after the last one began.
		select {
		case <-gap.C:
		case <-n.stop:
			n.send()
			return
		}
		gap.Reset(n.gap)
		n.send()
	}
}

// send sends every pending payload in one statement.
func (n *notifier) send() {
	n.mu.Lock()
	if len(n.pending) == 0 {
		n.mu.Unlock()
		return
	}
	payloads := make([]string, 0, len(n.pending))
	for p := range n.pending {
		payloads = append(payloads, p)
	}
	clear(n.pending)
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	if err := n.exec(ctx, payloads); err != nil {
		n.log.Warn("postgres: NOTIFY failed; other processes notice the changes by polling",
			"channel", n.channel, "payloads", len(payloads), "error", err)
	}
}
