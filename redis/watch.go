package redis

import (
	"context"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
	goredis "github.com/redis/go-redis/v9"
)

var _ asyncreq.Watcher = (*Backend)(nil)

// Watching. Every script that changes an existing record (update, delete)
// also PUBLISHes to the record's channel, base + "w:" + id, in the same
// atomic step, so no keyspace notifications are needed. Creating a record
// publishes nothing, since nobody can watch a record before its new id is
// known. A Backend subscribes to the channel of a record while someone
// watches it, on one pub/sub connection of its own, read by one goroutine
// that the Backend owns (started by the first Watch, stopped by Close). A
// channel nobody watches any more stays subscribed for about a second, so
// that watching again after a change costs no round trip; idle channels
// are then unsubscribed together.
//
// Watch returns only once Redis has confirmed the subscription, so a change
// made after Watch returned is never missed. When the pub/sub connection
// fails, every watch is released as if its record had changed: callers
// read the record again, which is what they do after a change.

// watchChannel returns the pub/sub channel of the record with the given id.
func (b *Backend) watchChannel(id string) string { return b.base + "w:" + id }

// Watch returns a channel that is closed at the next change of the record
// with the given id, when ctx ends, or when the Backend's pub/sub
// connection fails (see asyncreq.Watcher). A record that expires by its
// TTL does not close it.
func (b *Backend) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	return b.hub.watch(ctx, b, b.watchChannel(id))
}

// watcher is one Watch call.
type watcher struct {
	ch    chan struct{} // closed on a change, a reset or the end of ctx
	ready chan struct{} // closed once the subscription is confirmed
	done  bool          // ch closed; guarded by hub.mu
	isSet bool          // ready closed; guarded by hub.mu
	stop  func() bool   // stops the release at the end of ctx; guarded by hub.mu
}

// finish closes w's channel. h.mu is held.
func (w *watcher) finish() {
	if w.done {
		return
	}
	w.done = true
	close(w.ch)
	if w.stop != nil {
		w.stop()
	}
}

// watchChan is the state of one subscribed channel.
type watchChan struct {
	watchers map[*watcher]struct{}
	// pending lists the SUBSCRIBE (true) and UNSUBSCRIBE (false) commands
	// sent and not yet confirmed, in the order they were sent.
	pending []bool
	// active is the server's state after the confirmed commands.
	active bool
	// idleSince is when the last watcher left; zero while watched or once
	// UNSUBSCRIBE was sent.
	idleSince time.Time
}

// linger is how long a channel nobody watches stays subscribed.
const linger = time.Second

// subscribed reports whether the server is and stays subscribed: the
// watchers of c are then ready.
func (c *watchChan) subscribed() bool {
	if len(c.pending) == 0 {
		return c.active
	}
	for _, sub := range c.pending {
		if !sub {
			return false
		}
	}
	return c.active
}

// hub holds the Backend's pub/sub connection and its watchers.
type hub struct {
	mu        sync.Mutex
	ps        *goredis.PubSub // nil until the first Watch and after Close
	chans     map[string]*watchChan
	running   bool          // the receive goroutine runs
	lastSweep time.Time     // last look for idle channels
	closed    bool          // Close was called
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the receive goroutine ends
}

func (h *hub) watch(ctx context.Context, b *Backend, name string) (<-chan struct{}, error) {
	w := &watcher{ch: make(chan struct{}), ready: make(chan struct{})}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, asyncreq.ErrClosed
	}
	if !h.running {
		h.running = true
		h.stop = make(chan struct{})
		h.done = make(chan struct{})
		h.chans = make(map[string]*watchChan)
		h.ps = b.rdb.Subscribe(context.WithoutCancel(ctx))
		go h.receive(b)
	}
	c := h.chans[name]
	if c == nil {
		c = &watchChan{watchers: make(map[*watcher]struct{})}
		h.chans[name] = c
	}
	c.watchers[w] = struct{}{}
	c.idleSince = time.Time{}
	if len(c.watchers) == 1 && !c.subscribed() {
		if err := h.ps.Subscribe(ctx, name); err != nil {
			delete(c.watchers, w)
			h.fail() // the receive goroutine resets the state
			h.mu.Unlock()
			return nil, wrap(ctx, "watch", err)
		}
		c.pending = append(c.pending, true)
	}
	if c.subscribed() {
		w.isSet = true
		close(w.ready)
	}
	h.mu.Unlock()

	select {
	case <-w.ready:
	case <-w.ch: // reset before the confirmation: a spurious change
	case <-ctx.Done():
		h.release(name, w)
		return nil, ctx.Err()
	}
	stop := context.AfterFunc(ctx, func() { h.release(name, w) })
	h.mu.Lock()
	if w.done {
		stop()
	} else {
		w.stop = stop
	}
	h.mu.Unlock()
	return w.ch, nil
}

// release ends one watch: its channel is closed, and the Backend
// unsubscribes when it was the channel's last.
func (h *hub) release(name string, w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.done {
		return
	}
	w.finish()
	c := h.chans[name]
	if c == nil {
		return
	}
	delete(c.watchers, w)
	h.idle(c)
}

// idle notes that nobody watches c any more, and unsubscribes the channels
// that have been idle for linger, in one command. A channel stays
// subscribed for a while so that a caller that watches again after a change
// (a long poll, a worker's heartbeat) finds it ready at once. h.mu is held.
func (h *hub) idle(c *watchChan) {
	now := time.Now()
	if len(c.watchers) == 0 && c.idleSince.IsZero() {
		c.idleSince = now
	}
	if now.Sub(h.lastSweep) < linger/2 || h.ps == nil {
		return
	}
	h.lastSweep = now
	var names []string
	for name, c := range h.chans {
		if len(c.watchers) == 0 && !c.idleSince.IsZero() && now.Sub(c.idleSince) >= linger && c.subscribed() {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.ps.Unsubscribe(ctx, names...); err != nil {
		h.fail()
		return
	}
	for _, name := range names {
		c := h.chans[name]
		c.pending = append(c.pending, false)
		c.idleSince = time.Time{}
	}
}

// fail closes the pub/sub connection so that the receive goroutine resets
// every watch. h.mu is held.
func (h *hub) fail() {
	if h.ps != nil {
		_ = h.ps.Close()
	}
}

// receive reads the pub/sub connection until Close.
func (h *hub) receive(b *Backend) {
	defer close(h.done)
	backoff := 10 * time.Millisecond
	for {
		h.mu.Lock()
		ps := h.ps
		h.mu.Unlock()
		msg, err := ps.Receive(context.Background())
		if err != nil {
			h.mu.Lock()
			h.reset()
			if h.closed {
				h.mu.Unlock()
				return
			}
			_ = ps.Close()
			h.ps = b.rdb.Subscribe(context.Background())
			h.mu.Unlock()
			select {
			case <-h.stop:
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		h.mu.Lock()
		switch m := msg.(type) {
		case *goredis.Subscription:
			h.confirmed(m)
		case *goredis.Message:
			if c := h.chans[m.Channel]; c != nil {
				for w := range c.watchers {
					if w.isSet {
						w.finish()
						delete(c.watchers, w)
					}
				}
				h.idle(c)
			}
		}
		h.mu.Unlock()
	}
}

// confirmed applies a subscribe or unsubscribe confirmation. h.mu is held.
func (h *hub) confirmed(m *goredis.Subscription) {
	c := h.chans[m.Channel]
	if c == nil || (m.Kind != "subscribe" && m.Kind != "unsubscribe") {
		return
	}
	if len(c.pending) > 0 {
		c.pending = c.pending[1:]
	}
	c.active = m.Kind == "subscribe"
	if c.subscribed() {
		for w := range c.watchers {
			if !w.isSet {
				w.isSet = true
				close(w.ready)
			}
		}
	}
	if len(c.watchers) == 0 && len(c.pending) == 0 && !c.active {
		delete(h.chans, m.Channel)
	}
}

// reset releases every watch, as after a change. h.mu is held.
func (h *hub) reset() {
	for _, c := range h.chans {
		for w := range c.watchers {
			w.finish()
		}
	}
	h.chans = make(map[string]*watchChan)
}

// close stops the receive goroutine and waits for it.
func (h *hub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	running := h.running
	if running {
		close(h.stop)
		_ = h.ps.Close()
	}
	h.mu.Unlock()
	if running {
		<-h.done
	}
}
