package redis

import (
	"context"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Polling clients. A Get is answered from the poll cache (reccache's
// PollCache) when this Backend read or wrote the record less than
// Options.PollCacheAge ago and no change of it was announced since. Every
// script that changes an existing record publishes to the record's watch
// channel, with the writer's origin as the message: a Backend subscribes to
// the channels of its queue with one PSUBSCRIBE, on a pub/sub connection of
// its own, and drops a record from its cache when another writer's message
// names it (its own writes update the cache as they return). The
// subscription is made by the first Get, since only Get reads the cache;
// nothing is kept before Redis has confirmed it, and everything cached is
// dropped whenever the connection fails, until it is confirmed again.

// defaultPollCacheAge is the default of Options.PollCacheAge.
const defaultPollCacheAge = 500 * time.Millisecond

// pollListener is a Backend's subscription to the change messages of its
// queue's records.
type pollListener struct {
	mu      sync.Mutex
	started bool
	closed  bool
	ps      *goredis.PubSub    // the current subscription; nil between two
	cancel  context.CancelFunc // ends the receive goroutine's context
	done    chan struct{}      // closed when the receive goroutine ends
	up      bool               // the subscription is confirmed and the cache on
	subs    int                // confirmations of the subscription so far
}

// listenPolls starts the subscription if it is not running yet. The
// goroutine it starts subscribes, so that no Get waits for a dial.
func (b *Backend) listenPolls() {
	l := &b.listener
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.closed || b.opts.PollCacheAge <= 0 {
		return
	}
	l.started = true
	var ctx context.Context
	ctx, l.cancel = context.WithCancel(context.Background())
	l.done = make(chan struct{})
	go b.receivePolls(ctx)
}

// changePattern is the PSUBSCRIBE pattern of the watch channels of the
// Backend's records: its key prefix, with the characters that a pattern
// gives a meaning escaped, then "w:*".
func (b *Backend) changePattern() string {
	var sb strings.Builder
	for _, r := range b.base {
		if strings.ContainsRune(`*?[]\^`, r) {
			sb.WriteByte('\\')
		}
		sb.WriteRune(r)
	}
	sb.WriteString("w:*")
	return sb.String()
}

// receivePolls subscribes and reads the subscription until ctx ends,
// telling the poll cache what it learns; after a failure it subscribes
// again on a new connection, waiting longer each time it fails in a row.
func (b *Backend) receivePolls(ctx context.Context) {
	l := &b.listener
	defer close(l.done)
	prefix := b.base + "w:"
	backoff := 10 * time.Millisecond
	for {
		ps := b.rdb.PSubscribe(ctx, b.changePattern())
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = ps.Close()
			return
		}
		l.ps = ps
		l.mu.Unlock()
		for {
			msg, err := ps.Receive(ctx)
			if err != nil {
				break
			}
			switch m := msg.(type) {
			case *goredis.Subscription:
				if m.Kind == "psubscribe" {
					backoff = 10 * time.Millisecond
					b.setListening(true)
				}
			case *goredis.Message:
				if m.Payload != b.origin {
					if id, ok := strings.CutPrefix(m.Channel, prefix); ok {
						b.polls.Changed(id)
					}
				}
			}
		}
		b.setListening(false)
		l.mu.Lock()
		l.ps = nil
		l.mu.Unlock()
		_ = ps.Close()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// setListening turns the poll cache on or off, dropping what it holds.
func (b *Backend) setListening(up bool) {
	l := &b.listener
	l.mu.Lock()
	l.up = up
	if up {
		l.subs++
	}
	l.mu.Unlock()
	b.polls.Listen(up)
}

// subscriptions reports whether the subscription is confirmed now, and
// how many times it was confirmed.
func (b *Backend) subscriptions() (up bool, n int) {
	l := &b.listener
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up, l.subs
}

// closePolls ends the subscription and waits for its goroutine.
func (b *Backend) closePolls() {
	l := &b.listener
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	started := l.started
	if started {
		l.cancel()
		if l.ps != nil {
			_ = l.ps.Close()
		}
	}
	l.mu.Unlock()
	if started {
		<-l.done
	}
	b.polls.Listen(false)
}
