package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/reccache"
	goredis "github.com/redis/go-redis/v9"
)

// promoteLimit is the most delayed entries one Dequeue round moves to the
// stream.
const promoteLimit = 100

// claimEvery is the shortest time between two reclaim scans of one
// Backend: a lease that ran out is reclaimed within this time (and the time
// the scan takes to reach it on a long pending entries list).
func claimEvery(ttl time.Duration) time.Duration {
	return min(ttl/4, 250*time.Millisecond)
}

// consumerCleanupEvery is how often a Backend asks a Dequeue round to
// remove idle consumers.
const consumerCleanupEvery = time.Minute

// handle is a Lease's Handle: the stream entry and the delivery it stands
// for.
type handle struct {
	entry    string // stream entry id
	consumer string // consumer the entry is pending for
	count    int64  // the entry's delivery count in the group when leased
	n        int    // Lease.Delivery

	mu  sync.Mutex
	ttl time.Duration // current lease length
}

func (h *handle) leaseTTL() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ttl
}

// Enqueue adds id to the queue, to be delivered after delay. See
// asyncreq.Queue. An entry without delay is added to the stream at once; a
// delayed one waits in a sorted set scored by the Redis server's clock until
// a Dequeue moves it to the stream.
func (b *Backend) Enqueue(ctx context.Context, id string, delay time.Duration) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if id == "" {
		return errors.New("redis: enqueue: empty id")
	}
	err := enqueueScript.Run(ctx, b.rdb, []string{b.streamKey, b.delayedKey},
		id, ms(delay), 0, nonce()).Err()
	if err != nil {
		return wrap(ctx, "enqueue "+id, err)
	}
	return nil
}

// Dequeue waits until an id is due and returns a lease on it. See
// asyncreq.Queue and DequeueBatch.
func (b *Backend) Dequeue(ctx context.Context, ttl time.Duration) (*asyncreq.Lease, error) {
	ls, err := b.DequeueBatch(ctx, 1, ttl)
	if err != nil {
		return nil, err
	}
	return ls[0], nil
}

// DequeueBatch waits until at least one id is due and returns leases on up
// to max of them. See asyncreq.BatchDequeuer.
//
// A lease is the entry's place in the consumer group's pending entries
// list; it runs out when the entry has been idle there for ttl. Each round
// first moves due delayed entries to the stream, reclaims (XAUTOCLAIM)
// entries idle for longer than ttl, and reads new ones, in one Lua script;
// if that finds nothing it blocks in XREADGROUP for at most
// Options.MaxBlock, the time until the next delayed entry is due, or the
// context's deadline. Since a lease that ran out is judged by the ttl of
// the Dequeue that reclaims it, all consumers of one queue should use the
// same lease length.
func (b *Backend) DequeueBatch(ctx context.Context, max int, ttl time.Duration) ([]*asyncreq.Lease, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if ttl < time.Millisecond {
		return nil, fmt.Errorf("redis: dequeue: lease ttl %s is below 1ms", ttl)
	}
	if max < 1 {
		max = 1
	}
	for {
		if err := b.check(ctx); err != nil {
			return nil, err
		}
		leases, wait, err := b.fetch(ctx, max, ttl)
		if err != nil {
			return nil, err
		}
		if len(leases) > 0 {
			return leases, nil
		}
		block := b.opts.MaxBlock
		if wait >= 0 && wait < block {
			block = wait
		}
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl); left < block {
				block = left
			}
		}
		if block < time.Millisecond {
			if ctx.Err() != nil {
				continue
			}
			block = time.Millisecond // BLOCK 0 would wait for ever
		}
		leases, err = b.readBlocking(ctx, max, ttl, block)
		if err != nil {
			return nil, err
		}
		if len(leases) == 0 {
			continue
		}
		if ctx.Err() != nil {
			// The context ended while the read was blocked: hand the
			// entries back at once rather than leave them leased.
			b.release(context.WithoutCancel(ctx), leases)
			return nil, ctx.Err()
		}
		return leases, nil
	}
}

// fetch runs one non-blocking round (fetchScript). wait is the time until
// the next delayed entry is due, or -1.
func (b *Backend) fetch(ctx context.Context, max int, ttl time.Duration) ([]*asyncreq.Lease, time.Duration, error) {
	b.mu.Lock()
	// XAUTOCLAIM scans the pending entries list, which is costly under
	// load: reclaim at most every claimEvery.
	cursor := ""
	if now := time.Now(); now.Sub(b.lastClaim) >= claimEvery(ttl) {
		b.lastClaim = now
		cursor = b.cursor
	}
	var idleLimit int64
	if b.opts.ConsumerIdleTTL > 0 && time.Since(b.lastCleanup) >= consumerCleanupEvery {
		b.lastCleanup = time.Now()
		idleLimit = ms(b.opts.ConsumerIdleTTL)
	}
	b.mu.Unlock()

	var res []any
	for attempt := 0; ; attempt++ {
		var err error
		res, err = fetchScript.Run(ctx, b.rdb, []string{b.streamKey, b.delayedKey},
			b.opts.Group, b.opts.Consumer, max, ms(ttl), cursor, promoteLimit, idleLimit,
			b.base+"r:", reccache.EntryMax,
		).Slice()
		if err == nil {
			break
		}
		if attempt == 0 && isNoGroup(err) {
			if err := b.createGroup(ctx); err != nil {
				return nil, 0, err
			}
			continue
		}
		return nil, 0, wrap(ctx, "dequeue", err)
	}
	if len(res) < 2 || (len(res)-2)%5 != 0 {
		return nil, 0, errors.New("redis: dequeue: unexpected script reply")
	}
	next, _ := res[0].(string)
	b.mu.Lock()
	if next != "" {
		b.cursor = next
	}
	b.mu.Unlock()
	wait := time.Duration(-1)
	if w, ok := res[1].(int64); ok && w >= 0 {
		wait = time.Duration(w) * time.Millisecond
	}
	var leases []*asyncreq.Lease
	for i := 2; i+4 < len(res); i += 5 {
		entry, _ := res[i].(string)
		id, _ := res[i+1].(string)
		prior, _ := res[i+2].(int64)
		count, _ := res[i+3].(int64)
		leases = append(leases, b.lease(entry, id, int(prior), count, ttl))
		// The record as the round saw it: the claim that follows finds
		// it in the cache. A stale one only costs a failed compare-and-set.
		if f, ok := res[i+4].([]any); ok && len(f) == 4 && id != "" {
			if st, err := storedOf(f[1:4], f[0]); err == nil {
				b.cache.Put(id, st)
			}
		}
	}
	return leases, wait, nil
}

// lease makes a Lease for a stream entry that the group has delivered
// count times, after prior deliveries of the entries it replaced.
func (b *Backend) lease(entry, id string, prior int, count int64, ttl time.Duration) *asyncreq.Lease {
	n := prior + int(count)
	return &asyncreq.Lease{ID: id, Delivery: n, Handle: &handle{
		entry: entry, consumer: b.opts.Consumer, count: count, n: n, ttl: ttl,
	}}
}

// blocker is a connection of its own for blocking reads, with its client
// id for CLIENT UNBLOCK.
type blocker struct {
	conn *goredis.Conn
	id   int64
}

// maxIdleBlockers is how many blocking connections a Backend keeps
// between reads (they are held out of the client's pool meanwhile).
const maxIdleBlockers = 2

// getBlocker returns an idle blocking connection, or a new one.
func (b *Backend) getBlocker(ctx context.Context, cl *goredis.Client) (*blocker, error) {
	b.mu.Lock()
	if n := len(b.blockers); n > 0 {
		bl := b.blockers[n-1]
		b.blockers = b.blockers[:n-1]
		b.mu.Unlock()
		return bl, nil
	}
	b.mu.Unlock()
	conn := cl.Conn()
	id, err := conn.ClientID(ctx).Result()
	if err != nil {
		_ = conn.Close()
		return nil, wrap(ctx, "dequeue", err)
	}
	return &blocker{conn: conn, id: id}, nil
}

// putBlocker keeps bl for the next read, or closes it (returning its
// connection to the client's pool).
func (b *Backend) putBlocker(bl *blocker, healthy bool) {
	b.mu.Lock()
	if healthy && !b.closed.Load() && len(b.blockers) < maxIdleBlockers {
		b.blockers = append(b.blockers, bl)
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	_ = bl.conn.Close()
}

// readBlocking waits in XREADGROUP for new entries.
//
// On Options.BlockingClient, or else on the Backend's client when it is a
// *goredis.Client, the read runs on a connection of its own (kept between
// reads), and when ctx is canceled during the read another connection of
// that client's pool sends CLIENT UNBLOCK for it: the read ends at once and
// the connection stays in a clean state. Other clients (Cluster, Ring,
// AutoPipeliner without BlockingClient) end the read when its bounded block
// time is over.
func (b *Backend) readBlocking(ctx context.Context, max int, ttl, block time.Duration) ([]*asyncreq.Lease, error) {
	cl := b.opts.BlockingClient
	if cl == nil {
		cl, _ = b.rdb.(*goredis.Client)
	}
	if cl != nil {
		bl, err := b.getBlocker(ctx, cl)
		if err != nil {
			return nil, err
		}
		unblocked := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(unblocked)
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), block)
			defer cancel()
			_ = cl.ClientUnblock(uctx, bl.id).Err() // at worst the read runs its block time
		})
		healthy := false
		defer func() {
			if !stop() {
				<-unblocked // the connection must not be used again before the unblock is done
			}
			b.putBlocker(bl, healthy)
		}()
		leases, err := b.readGroup(ctx, bl.conn, max, ttl, block)
		// After an error the connection may have been replaced under
		// the same Conn, with another client id: do not keep it.
		healthy = err == nil
		return leases, err
	}
	return b.readGroup(ctx, b.rdb, max, ttl, block)
}

// readGroup runs one blocking XREADGROUP on cmd.
func (b *Backend) readGroup(ctx context.Context, cmd goredis.Cmdable, max int, ttl, block time.Duration) ([]*asyncreq.Lease, error) {
	for attempt := 0; ; attempt++ {
		streams, err := cmd.XReadGroup(ctx, &goredis.XReadGroupArgs{
			Group:    b.opts.Group,
			Consumer: b.opts.Consumer,
			Streams:  []string{b.streamKey, ">"},
			Count:    int64(max),
			Block:    block,
		}).Result()
		if errors.Is(err, goredis.Nil) {
			return nil, nil
		}
		if err != nil {
			if attempt == 0 && isNoGroup(err) {
				if err := b.createGroup(ctx); err != nil {
					return nil, err
				}
				continue
			}
			return nil, wrap(ctx, "dequeue", err)
		}
		var leases []*asyncreq.Lease
		for _, s := range streams {
			for _, m := range s.Messages {
				id, _ := m.Values["id"].(string)
				prior, _ := strconv.Atoi(fmt.Sprint(m.Values["n"]))
				leases = append(leases, b.lease(m.ID, id, prior, 1, ttl))
			}
		}
		return leases, nil
	}
}

// release hands leased entries that no caller saw back to the queue, to be
// delivered at once, without counting the delivery.
func (b *Backend) release(ctx context.Context, leases []*asyncreq.Lease) {
	for _, l := range leases {
		h := l.Handle.(*handle)
		_, _ = b.settle(ctx, "nack", l, 0, h.n-1) // a lease not handed back runs out and is reclaimed
	}
}

func (b *Backend) createGroup(ctx context.Context) error {
	if b.closed.Load() {
		// Do not bring back a queue whose keys were removed after Close.
		return asyncreq.ErrClosed
	}
	// "0": entries added before the group existed are delivered too. Acked
	// entries are deleted, so nothing is delivered twice by this.
	err := b.rdb.XGroupCreateMkStream(ctx, b.streamKey, b.opts.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return wrap(ctx, "create consumer group", err)
	}
	return nil
}

func isNoGroup(err error) bool {
	return err != nil && strings.Contains(err.Error(), "NOGROUP")
}

// Extend renews the lease for ttl from now. See asyncreq.Queue. It resets
// the entry's idle time in the pending entries list (XCLAIM to the same
// consumer), after checking that the lease is still held.
func (b *Backend) Extend(ctx context.Context, l *asyncreq.Lease, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("redis: extend: lease ttl %s is below 1ms", ttl)
	}
	h, err := b.settle(ctx, "extend", l, 0, 0)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.ttl = ttl
	h.mu.Unlock()
	return nil
}

// Ack settles the lease and removes the entry (XACK and XDEL, so the stream
// holds only entries not yet done). See asyncreq.Queue.
func (b *Backend) Ack(ctx context.Context, l *asyncreq.Lease) error {
	_, err := b.settle(ctx, "ack", l, 0, 0)
	return err
}

// Nack settles the lease and returns the entry, to be delivered again after
// delay. See asyncreq.Queue.
func (b *Backend) Nack(ctx context.Context, l *asyncreq.Lease, delay time.Duration) error {
	n := 0
	if l != nil {
		if h, ok := l.Handle.(*handle); ok && h != nil {
			n = h.n
		}
	}
	_, err := b.settle(ctx, "nack", l, delay, n)
	return err
}

// settle runs settleScript for a lease; n is the number of deliveries the
// entry a nack adds carries over.
func (b *Backend) settle(ctx context.Context, mode string, l *asyncreq.Lease, delay time.Duration, n int) (*handle, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if l == nil {
		return nil, fmt.Errorf("redis: %s: %w: nil lease", mode, asyncreq.ErrLeaseLost)
	}
	h, ok := l.Handle.(*handle)
	if !ok || h == nil {
		return nil, fmt.Errorf("redis: %s: %w: lease not made by this backend", mode, asyncreq.ErrLeaseLost)
	}
	held, err := goredis.NewCmdResult(b.runScript(ctx, settleScript, []string{b.streamKey, b.delayedKey},
		b.opts.Group, h.consumer, h.entry, h.count, ms(h.leaseTTL()), mode,
		ms(delay), l.ID, n, nonce(),
	)).Int()
	if err != nil {
		if isNoGroup(err) {
			return nil, asyncreq.ErrLeaseLost
		}
		return nil, wrap(ctx, mode+" "+l.ID, err)
	}
	if held == 0 {
		return nil, asyncreq.ErrLeaseLost
	}
	return h, nil
}
