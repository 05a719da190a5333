// Package memory is an in-memory asyncreq backend: one value that is both
// the Store and the Queue.
//
// It is fast, needs nothing installed and is safe for concurrent use, but
// it keeps nothing across a restart: a 202 from a handler on it means the
// request is held by this process only. Use it for tests, for development,
// and for work that may be lost with the process; use the sqlite module for
// a durable embedded backend.
//
// Every operation is O(log n) or better in the number of records and queue
// entries: records and idempotency keys are in maps, and expiry, delayed
// entries and leases are kept in heaps. Dequeue waits on a channel, never by
// sleeping and polling.
//
// Watch (asyncreq.Watcher) sees every change of a record at once: a
// Backend lives in one process, so every change goes through it.
//
// The type follows the convention of every asyncreq backend module: the
// value that is both Store and Queue is a Backend, made by New, with nil
// opts meaning the defaults. Unlike the others, New takes no ctx and
// returns no error: it does no I/O and has nothing that can fail, so
// memory.New(nil) can stand inline in a test or an example.
//
// QueueStats (asyncreq.QueueStater) reads counters the Backend keeps, in
// O(1), and counts the records by final state.
//
// # Operator capabilities
//
// A Backend is an asyncreq.Lister, an asyncreq.FinishedPurger and an
// asyncreq.Requeuer. It keeps ordered indexes of its records for them, so
// that no call walks every record under the lock while accepts wait:
//
//   - List reads a page off an index of the records of one state (and of
//     one owner, when the query names one) ordered newest first, merging
//     the five states' indexes when the query names none: O(log n + limit)
//     a page under the lock, however many records there are and however
//     few of them the filter keeps.
//   - CountStates reads the sizes of those indexes: O(1), exact.
//   - PurgeFinished reads the final records in the order they last
//     changed off an index: O(limit · (log n + 512)) a call.
//   - Requeue updates the record and enqueues its id under one hold of the
//     lock, keeping an entry that still waits for the id (a pending
//     request canceled before a Dequeue took it) rather than adding a
//     second.
//
// The indexes are sorted chunks of at most 512 keys: adding or removing a
// record costs O(log n + 512), most often at the newest end, and they take
// about 80 bytes a record.
package memory

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
)

// Options configures a Backend. A nil *Options means all defaults.
type Options struct {
	// Now returns the current time. It is used for record expiry and
	// tombstones; waiting for delayed entries and leases uses real timers
	// measured from it. The default is time.Now.
	Now func() time.Time
}

// Backend is an in-memory Store and Queue. The zero value is not usable;
// call New.
type Backend struct {
	now func() time.Time

	mu         sync.Mutex
	closed     bool
	records    map[string]*asyncreq.Record
	idem       map[idemKey]string
	tombs      map[string]tombstone // by id
	unenqueued map[string]struct{}  // ids of records with Enqueued false, not final
	expiries   timeHeap             // final records by ExpiresAt (lazily pruned)
	tombHeap   timeHeap             // tombstones by end (lazily pruned)
	watchers   map[string][]chan struct{}
	finals     map[asyncreq.State]int64 // records held in each final state
	idx        indexes                  // ordered indexes for List and PurgeFinished

	ready   fifo                // entries due now
	delayed timeHeap            // entries due later, by due time
	leases  timeHeap            // leased entries, by lease end (lazily pruned)
	wake    chan struct{}       // closed and replaced when an entry becomes ready
	leased  map[*entry]struct{} // entries currently leased
	waiting map[string]int      // ready and delayed entries by id
}

var (
	_ asyncreq.Store            = (*Backend)(nil)
	_ asyncreq.Queue            = (*Backend)(nil)
	_ asyncreq.Accepter         = (*Backend)(nil)
	_ asyncreq.Watcher          = (*Backend)(nil)
	_ asyncreq.UnenqueuedLister = (*Backend)(nil)
	_ asyncreq.BatchDequeuer    = (*Backend)(nil)
	_ asyncreq.Completer        = (*Backend)(nil)
)

type idemKey struct{ owner, key string }

// tombstone is what is left of a purged or deleted record: when it runs
// out, and whose record it was.
type tombstone struct {
	until time.Time
	owner string
}

// entry is one queue entry. gen changes on every delivery and settlement,
// so a stale lease handle can be told from the current one.
type entry struct {
	id         string
	delivery   int
	gen        uint64
	leased     bool
	leaseUntil time.Time
	// readyAt is when the entry last became due (set as it joins the
	// ready queue), for QueueStats.OldestPending.
	readyAt time.Time
}

// handle is the Lease.Handle of a memory lease.
type handle struct {
	e   *entry
	gen uint64
}

// New returns an empty Backend.
func New(opts *Options) *Backend {
	b := &Backend{
		now:        time.Now,
		records:    make(map[string]*asyncreq.Record),
		idem:       make(map[idemKey]string),
		tombs:      make(map[string]tombstone),
		unenqueued: make(map[string]struct{}),
		watchers:   make(map[string][]chan struct{}),
		finals:     make(map[asyncreq.State]int64),
		wake:       make(chan struct{}),
		leased:     make(map[*entry]struct{}),
		waiting:    make(map[string]int),
	}
	b.idx.init()
	if opts != nil && opts.Now != nil {
		b.now = opts.Now
	}
	return b
}

// Close releases waiting Dequeue calls and makes every later call return
// asyncreq.ErrClosed. It is idempotent.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.wake)
		for id, chs := range b.watchers {
			for _, ch := range chs {
				close(ch)
			}
			delete(b.watchers, id)
		}
	}
	return nil
}

// Len returns the number of records held and the number of queue entries
// (ready, delayed or leased).
func (b *Backend) Len() (records, entries int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.records), b.ready.len() + b.delayed.Len() + len(b.leased)
}

// lock takes the mutex after checking ctx and that b is open.
func (b *Backend) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return asyncreq.ErrClosed
	}
	return nil
}

// Create implements asyncreq.Store.
func (b *Backend) Create(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	return b.create(ctx, rec, false)
}

// Accept implements asyncreq.Accepter: it records rec with Enqueued set and
// makes its id ready for Dequeue, atomically.
func (b *Backend) Accept(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	return b.create(ctx, rec, true)
}

func (b *Backend) create(ctx context.Context, rec *asyncreq.Record, enqueue bool) (*asyncreq.Record, error) {
	if rec == nil || rec.ID == "" {
		return nil, errors.New("asyncreq/memory: record without an id")
	}
	if err := b.lock(ctx); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	if rec.IdempotencyKey != "" {
		if id, ok := b.idem[idemKey{rec.Owner, rec.IdempotencyKey}]; ok {
			return b.records[id].Clone(), asyncreq.ErrDuplicate
		}
	}
	if _, ok := b.records[rec.ID]; ok {
		return nil, errors.New("asyncreq/memory: record id already exists")
	}
	c := rec.Clone()
	if enqueue {
		c.Enqueued = true
	}
	b.put(c, nil)
	if rec.IdempotencyKey != "" {
		b.idem[idemKey{rec.Owner, rec.IdempotencyKey}] = rec.ID
	}
	if enqueue {
		b.push(&entry{id: c.ID}, 0)
	}
	return nil, nil
}

// put stores rec, keeping the indexes in step with it; old is the record it
// replaces, if any. The caller holds b.mu.
func (b *Backend) put(rec, old *asyncreq.Record) {
	b.records[rec.ID] = rec
	if old == nil {
		b.idx.add(rec)
	} else {
		b.idx.change(rec, old)
	}
	if old != nil && old.State.Final() {
		b.finals[old.State]--
	}
	if rec.State.Final() {
		b.finals[rec.State]++
	}
	if !rec.Enqueued && !rec.State.Final() {
		b.unenqueued[rec.ID] = struct{}{}
	} else {
		delete(b.unenqueued, rec.ID)
	}
	if rec.State.Final() && !rec.ExpiresAt.IsZero() &&
		(old == nil || !old.State.Final() || !old.ExpiresAt.Equal(rec.ExpiresAt)) {
		heap.Push(&b.expiries, timed{at: rec.ExpiresAt, id: rec.ID})
	}
	if old != nil {
		b.notify(rec.ID)
	}
}

// notify wakes the watchers of id. The caller holds b.mu.
func (b *Backend) notify(id string) {
	for _, ch := range b.watchers[id] {
		close(ch)
	}
	delete(b.watchers, id)
}

// Get implements asyncreq.Store.
func (b *Backend) Get(ctx context.Context, id string) (*asyncreq.Record, error) {
	if err := b.lock(ctx); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	if rec, ok := b.records[id]; ok {
		return rec.Clone(), nil
	}
	return nil, b.missing(id)
}

// missing tells ErrGone from ErrNotFound for an id without a record. The
// caller holds b.mu.
func (b *Backend) missing(id string) error {
	if tb, ok := b.tombs[id]; ok {
		if b.now().Before(tb.until) {
			return &asyncreq.GoneError{Owner: tb.owner}
		}
		delete(b.tombs, id)
	}
	return asyncreq.ErrNotFound
}

// Update implements asyncreq.Store. fn runs once, under the Backend's lock.
func (b *Backend) Update(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	if err := b.lock(ctx); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	return b.update(id, fn)
}

// Complete implements asyncreq.Completer: Update and, when the record is
// final and l still holds its lease, Ack, under one hold of the lock.
func (b *Backend) Complete(ctx context.Context, l *asyncreq.Lease, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	if l == nil {
		return nil, asyncreq.ErrLeaseLost
	}
	if err := b.lock(ctx); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	rec, err := b.update(l.ID, fn)
	if err != nil || !rec.State.Final() {
		return rec, err
	}
	if e, err := b.live(l); err == nil {
		b.settle(e)
	}
	return rec, nil
}

// update is Update with b.mu held.
func (b *Backend) update(id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	old, ok := b.records[id]
	if !ok {
		return nil, b.missing(id)
	}
	c := old.Clone()
	if err := fn(c); err != nil {
		return nil, err
	}
	if c.ID != old.ID || c.Owner != old.Owner || c.IdempotencyKey != old.IdempotencyKey {
		return nil, errors.New("asyncreq/memory: update changed the record's identity")
	}
	// fn's argument stays the caller's: store a copy of it.
	b.put(keptCopy(c, old), old)
	return c, nil
}

// keptCopy returns a copy of c to store in place of old, the stored
// version c was made from. A body c has as old had it is shared with old:
// stored records are never changed in place, so only a body that changed
// costs a copy.
func keptCopy(c, old *asyncreq.Record) *asyncreq.Record {
	k := c.WithoutBodies().Clone()
	k.Body = sharedBody(c.Body, old.Body)
	if c.Result != nil {
		var was []byte
		if old.Result != nil {
			was = old.Result.Body
		}
		k.Result.Body = sharedBody(c.Result.Body, was)
	}
	return k
}

// sharedBody returns old if it holds the bytes of b, else a copy of b.
func sharedBody(b, old []byte) []byte {
	switch {
	case b == nil:
		return nil
	case old != nil && bytes.Equal(b, old):
		return old
	}
	return append([]byte{}, b...)
}

// Delete implements asyncreq.Store.
func (b *Backend) Delete(ctx context.Context, id string, tombstone bool) error {
	if err := b.lock(ctx); err != nil {
		return err
	}
	defer b.mu.Unlock()
	rec, ok := b.records[id]
	if !ok {
		return b.missing(id)
	}
	b.remove(rec)
	if tombstone && rec.TombstoneTTL > 0 {
		b.tomb(rec, b.now().Add(rec.TombstoneTTL))
	}
	return nil
}

// remove drops rec and its indexes. The caller holds b.mu.
func (b *Backend) remove(rec *asyncreq.Record) {
	delete(b.records, rec.ID)
	b.idx.remove(rec)
	delete(b.unenqueued, rec.ID)
	if rec.State.Final() {
		b.finals[rec.State]--
	}
	if rec.IdempotencyKey != "" {
		k := idemKey{rec.Owner, rec.IdempotencyKey}
		if b.idem[k] == rec.ID {
			delete(b.idem, k)
		}
	}
	b.notify(rec.ID)
}

// tomb keeps a tombstone of rec until the given time. The caller holds
// b.mu.
func (b *Backend) tomb(rec *asyncreq.Record, until time.Time) {
	b.tombs[rec.ID] = tombstone{until: until, owner: rec.Owner}
	heap.Push(&b.tombHeap, timed{at: until, id: rec.ID})
}

// Purge implements asyncreq.Store.
func (b *Backend) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	n := 0
	for {
		if err := b.lock(ctx); err != nil {
			return n, err
		}
		removed, more := b.purgeSome(now, min(purgeChunk, limit-n))
		b.mu.Unlock()
		n += removed
		if !more || n >= limit {
			return n, nil
		}
	}
}

// purgeChunk is the most records, and tombstones, Purge removes in one hold
// of the lock: a call that arrives during a purge (a submit, a status read)
// waits for a chunk, not for the whole batch. A batch of 1,000 under one
// hold raised the accepts' p99 2.5–5× during a purge of 100,000.
const purgeChunk = 64

// purgeSome removes up to max records expired at now, then up to
// purgeChunk tombstones expired at now; it returns how many records it
// removed and whether more of either may be left. b.mu is held.
func (b *Backend) purgeSome(now time.Time, max int) (removed int, more bool) {
	for removed < max && b.expiries.due(now) {
		t := heap.Pop(&b.expiries).(timed)
		rec, ok := b.records[t.id]
		if !ok || !rec.State.Final() || !rec.ExpiresAt.Equal(t.at) {
			continue // stale heap item: the record changed or is gone
		}
		b.remove(rec)
		if rec.TombstoneTTL > 0 {
			b.tomb(rec, rec.ExpiresAt.Add(rec.TombstoneTTL))
		}
		removed++
	}
	for i := 0; i < purgeChunk && b.tombHeap.due(now); i++ {
		t := heap.Pop(&b.tombHeap).(timed)
		if tb, ok := b.tombs[t.id]; ok && tb.until.Equal(t.at) {
			delete(b.tombs, t.id)
		}
	}
	return removed, b.expiries.due(now) || b.tombHeap.due(now)
}

// ListUnenqueued implements asyncreq.UnenqueuedLister.
func (b *Backend) ListUnenqueued(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if err := b.lock(ctx); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	var ids []string
	for id := range b.unenqueued {
		if len(ids) >= limit {
			break
		}
		if rec := b.records[id]; rec != nil && rec.CreatedAt.Before(before) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Watch implements asyncreq.Watcher. The channel is also closed when ctx
// ends or the Backend is closed.
func (b *Backend) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	if err := b.lock(ctx); err != nil {
		return nil, err
	}
	ch := make(chan struct{})
	b.watchers[id] = append(b.watchers[id], ch)
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		chs := b.watchers[id]
		for i, c := range chs {
			if c == ch {
				close(ch)
				chs[i] = chs[len(chs)-1]
				chs = chs[:len(chs)-1]
				if len(chs) == 0 {
					delete(b.watchers, id)
				} else {
					b.watchers[id] = chs
				}
				return
			}
		}
	})
	return ch, nil
}

// Enqueue implements asyncreq.Queue.
func (b *Backend) Enqueue(ctx context.Context, id string, delay time.Duration) error {
	if err := b.lock(ctx); err != nil {
		return err
	}
	defer b.mu.Unlock()
	b.push(&entry{id: id}, delay)
	return nil
}

// push makes e ready now or after delay. The caller holds b.mu.
func (b *Backend) push(e *entry, delay time.Duration) {
	e.leased = false
	e.gen++
	b.waiting[e.id]++
	if delay > 0 {
		heap.Push(&b.delayed, timed{at: b.now().Add(delay), e: e})
		b.signal() // a waiter may need to shorten its timer
		return
	}
	e.readyAt = b.now()
	b.ready.push(e)
	b.signal()
}

// unwait counts one ready entry of id less. The caller holds b.mu.
func (b *Backend) unwait(id string) {
	if n := b.waiting[id]; n > 1 {
		b.waiting[id] = n - 1
	} else {
		delete(b.waiting, id)
	}
}

// signal wakes every waiting Dequeue. The caller holds b.mu.
func (b *Backend) signal() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// Dequeue implements asyncreq.Queue.
func (b *Backend) Dequeue(ctx context.Context, ttl time.Duration) (*asyncreq.Lease, error) {
	ls, err := b.DequeueBatch(ctx, 1, ttl)
	if err != nil {
		return nil, err
	}
	return ls[0], nil
}

// DequeueBatch implements asyncreq.BatchDequeuer.
func (b *Backend) DequeueBatch(ctx context.Context, limit int, ttl time.Duration) ([]*asyncreq.Lease, error) {
	limit = max(limit, 1)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := b.lock(ctx); err != nil {
			return nil, err
		}
		now := b.now()
		b.promote(now)
		if b.ready.len() > 0 {
			n := min(limit, b.ready.len())
			ls := make([]*asyncreq.Lease, n)
			for i := range ls {
				e := b.ready.pop()
				b.unwait(e.id)
				e.leased = true
				e.gen++
				e.delivery++
				e.leaseUntil = now.Add(ttl)
				b.leased[e] = struct{}{}
				heap.Push(&b.leases, timed{at: e.leaseUntil, e: e, gen: e.gen})
				ls[i] = &asyncreq.Lease{ID: e.id, Delivery: e.delivery, Handle: handle{e: e, gen: e.gen}}
			}
			b.pruneLeases()
			b.mu.Unlock()
			return ls, nil
		}
		wake := b.wake
		var next time.Time
		if b.delayed.Len() > 0 {
			next = b.delayed[0].at
		}
		if b.leases.Len() > 0 && (next.IsZero() || b.leases[0].at.Before(next)) {
			next = b.leases[0].at
		}
		b.mu.Unlock()

		var tc <-chan time.Time
		if !next.IsZero() {
			d := max(next.Sub(now), time.Millisecond)
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
		case <-tc:
		}
	}
}

// promote moves due delayed entries and entries whose lease ran out to the
// ready queue. The caller holds b.mu.
func (b *Backend) promote(now time.Time) {
	for b.delayed.Len() > 0 && !b.delayed[0].at.After(now) {
		t := heap.Pop(&b.delayed).(timed)
		t.e.readyAt = t.at
		b.ready.push(t.e)
	}
	for b.leases.Len() > 0 && !b.leases[0].at.After(now) {
		t := heap.Pop(&b.leases).(timed)
		e := t.e
		if !e.leased || e.gen != t.gen || e.leaseUntil.After(now) {
			// Settled, redelivered, or extended (the later end has an
			// item of its own).
			continue
		}
		delete(b.leased, e)
		e.leased = false
		e.gen++
		e.readyAt = e.leaseUntil
		b.waiting[e.id]++
		b.ready.push(e)
	}
}

// live returns the entry of a lease that is still held, or ErrLeaseLost.
// The caller holds b.mu.
func (b *Backend) live(l *asyncreq.Lease) (*entry, error) {
	if l == nil {
		return nil, asyncreq.ErrLeaseLost
	}
	h, ok := l.Handle.(handle)
	if !ok || !h.e.leased || h.e.gen != h.gen || !b.now().Before(h.e.leaseUntil) {
		return nil, asyncreq.ErrLeaseLost
	}
	return h.e, nil
}

// Extend implements asyncreq.Queue.
func (b *Backend) Extend(ctx context.Context, l *asyncreq.Lease, ttl time.Duration) error {
	if err := b.lock(ctx); err != nil {
		return err
	}
	defer b.mu.Unlock()
	e, err := b.live(l)
	if err != nil {
		return err
	}
	e.leaseUntil = b.now().Add(ttl)
	heap.Push(&b.leases, timed{at: e.leaseUntil, e: e, gen: e.gen})
	b.pruneLeases()
	return nil
}

// pruneLeases drops the items of b.leases that no lease holds any more
// (settled, redelivered, or extended: the later end has an item of its
// own) once they are most of the heap. Without it the heap would keep an
// item, and its entry, for every lease of the last lease duration, however
// soon each was settled. The caller holds b.mu.
func (b *Backend) pruneLeases() {
	if len(b.leases) < 64 || len(b.leases) < 4*len(b.leased) {
		return
	}
	kept := b.leases[:0]
	for _, t := range b.leases {
		if e := t.e; e.leased && e.gen == t.gen && t.at.Equal(e.leaseUntil) {
			kept = append(kept, t)
		}
	}
	clear(b.leases[len(kept):])
	b.leases = kept
	heap.Init(&b.leases)
}

// Ack implements asyncreq.Queue.
func (b *Backend) Ack(ctx context.Context, l *asyncreq.Lease) error {
	if err := b.lock(ctx); err != nil {
		return err
	}
	defer b.mu.Unlock()
	e, err := b.live(l)
	if err != nil {
		return err
	}
	b.settle(e)
	return nil
}

// settle removes the leased entry e for good. The caller holds b.mu.
func (b *Backend) settle(e *entry) {
	delete(b.leased, e)
	e.leased = false
	e.gen++
}

// Nack implements asyncreq.Queue.
func (b *Backend) Nack(ctx context.Context, l *asyncreq.Lease, delay time.Duration) error {
	if err := b.lock(ctx); err != nil {
		return err
	}
	defer b.mu.Unlock()
	e, err := b.live(l)
	if err != nil {
		return err
	}
	delete(b.leased, e)
	b.push(e, delay)
	return nil
}

// timed is an item of a timeHeap: a record id or a queue entry with a time.
type timed struct {
	at  time.Time
	id  string
	e   *entry
	gen uint64
}

// timeHeap is a min-heap of timed items by time.
type timeHeap []timed

// due reports whether h's earliest item is due at now.
func (h timeHeap) due(now time.Time) bool { return len(h) > 0 && !h[0].at.After(now) }

func (h timeHeap) Len() int           { return len(h) }
func (h timeHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)        { *h = append(*h, x.(timed)) }
func (h *timeHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = timed{}
	*h = old[:len(old)-1]
	return t
}

// fifo is a queue of entries on a slice, compacted as it drains.
type fifo struct {
	items []*entry
	head  int
}

func (q *fifo) len() int { return len(q.items) - q.head }

func (q *fifo) push(e *entry) { q.items = append(q.items, e) }

func (q *fifo) pop() *entry {
	e := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head >= 1024 && q.head*2 >= len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return e
}
