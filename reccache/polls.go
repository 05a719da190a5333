package reccache

import (
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
)

// A PollCache answers a backend's Get from the record as a Get read it, or
// as the backend wrote it (an Update or Complete: a worker's claim, its
// progress, its outcome), moments ago, while nothing says it changed since:
// a client that polls the status of a running request every few
// milliseconds then costs a read of the database every age, not one at
// every poll, and a client that reads the outcome the worker beside the
// handler just wrote costs none.
//
// What says a record changed is a change notification that every write
// sends, which the backend receives on a connection of its own and passes
// to Changed (its own writes need none: it calls Wrote). A notification is
// a hint, not a guarantee: it arrives a moment after the write, and it is
// lost if its sender fails to send it. So an entry is used for the cache's
// age at most after its read or write was issued, only while the backend
// says it receives notifications (Listen), and everything cached is
// dropped whenever it stops receiving them, since some may have been
// missed. A lost notification therefore delays what a poll sees by the age
// at most, and a delivered one by the time it took to arrive.
//
// A read or write notes itself in the cache before it is issued (Begin),
// and its record is kept only if that note is still the latest of its
// record when it is done: a change noted in between (another read or
// write, a notification) means the record may be outdated already. A
// write that finds its note replaced drops the entry, since the record it
// replaced is older than the write. While a read or write is in flight,
// Get still answers the record the entry held before it: a write not yet
// done may or may not have taken effect, and the record before it is a
// right answer to a Get that overlaps it.
//
// Final records are cached too, but an expired record is never answered
// from the cache, so that a backend may remove expired records without a
// notification.
//
// V is what the backend keeps of a record: the record itself, or the
// record as the backend stores it (its encoding, say) if decoding it at
// the Get that uses it is cheaper than at every write. A value is never
// changed once given to the cache, and the cache hands the same value to
// every Get: the backend copies or decodes it.
type PollCache[V any] struct {
	age     time.Duration // <= 0: off
	size    func(V) int
	expires func(V) time.Time

	mu        sync.Mutex
	listening bool // notifications are received
	m         map[string]*pollEntry[V]
	bytes     int
	// kept lists the values kept, oldest first, from head on: a full cache
	// drops its oldest entries to keep a new one, and entries past the age
	// go as new ones are kept. An item whose entry was removed or kept again
	// since is skipped.
	kept []keptItem[V]
	head int
	seq  uint64 // of the last value kept
}

// keptItem is a value kept in a PollCache, in PollCache.kept.
type keptItem[V any] struct {
	id  string
	e   *pollEntry[V]
	seq uint64 // the entry's seq when it was kept
}

// PollBytes bounds the records a PollCache holds, in the units of its size
// function (about bytes). Records larger than EntryMax are not kept.
const PollBytes = 8 << 20

// PollMark is a read or write of a record in flight, noted in a
// PollCache by Begin.
type PollMark struct {
	at time.Time // when the read or write was issued
}

// pollEntry is what a PollCache holds of one record. A change of the
// record removes it, so that a read or write in flight during the change
// is not kept.
type pollEntry[V any] struct {
	v    V
	has  bool      // v is set
	at   time.Time // when the read or write that gave v was issued
	size int
	seq  uint64    // when v was kept, in the cache's count of keeps
	last *PollMark // the latest read or write noted, nil once done
}

// NewPollCache returns an empty PollCache whose entries last age; age 0 or
// less turns it off (Get finds nothing, nothing is kept). size is about
// how many bytes a value keeps alive, and expires when its record expires
// (the zero time: never). The cache keeps nothing until Listen says
// notifications are received.
func NewPollCache[V any](age time.Duration, size func(V) int, expires func(V) time.Time) *PollCache[V] {
	return &PollCache[V]{age: age, size: size, expires: expires, m: make(map[string]*pollEntry[V])}
}

// NewRecordPollCache returns a PollCache of records, sized by RecordSize.
func NewRecordPollCache(age time.Duration) *PollCache[*asyncreq.Record] {
	return NewPollCache(age, RecordSize, func(rec *asyncreq.Record) time.Time { return rec.ExpiresAt })
}

// RecordSize is about how many bytes rec keeps alive: its bodies, URL and
// headers, and 256 for the rest.
func RecordSize(rec *asyncreq.Record) int {
	n := 256 + len(rec.Body) + len(rec.URL) + headerSize(rec.Header)
	if rec.Result != nil {
		n += len(rec.Result.Body) + headerSize(rec.Result.Header)
	}
	return n
}

func headerSize(h http.Header) int {
	n := 0
	for k, vs := range h {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return n
}

// Get returns the value kept for id if it was read or written less than
// the cache's age before now and its record has not expired. The value is
// shared: the caller must not change it.
func (p *PollCache[V]) Get(id string, now time.Time) (V, bool) {
	var v V
	if p.age <= 0 {
		return v, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.getLocked(id, now)
}

func (p *PollCache[V]) getLocked(id string, now time.Time) (V, bool) {
	var v V
	e := p.m[id]
	if e == nil || !e.has || now.Sub(e.at) >= p.age {
		return v, false
	}
	if exp := p.expires(e.v); !exp.IsZero() && !now.Before(exp) {
		return v, false
	}
	return e.v, true
}

// Settled is Get, but finds nothing while a read or write of id is in
// flight (noted by Begin and not yet done), even though Get would answer
// the value kept before it: a backend that hears of every change of its
// records at once (they all go through it) may take such a value as the
// record as stored, where Get's answer may be outdated by a write in
// flight.
func (p *PollCache[V]) Settled(id string, now time.Time) (V, bool) {
	var v V
	if p.age <= 0 {
		return v, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.m[id]; e == nil || e.last != nil {
		return v, false
	}
	return p.getLocked(id, now)
}

// Begin notes a read or write of id about to be issued at now, and returns
// what to give Read or Wrote with its outcome; nil when nothing is to be
// cached (the cache is off, or notifications are not received).
func (p *PollCache[V]) Begin(id string, now time.Time) *PollMark {
	if p.age <= 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.listening {
		return nil
	}
	mark := &PollMark{at: now}
	e := p.m[id]
	if e == nil {
		e = &pollEntry[V]{}
		p.m[id] = e
	}
	e.last = mark
	return mark
}

// Read keeps v, what the read Begin noted as mark found, if no change of
// the record (nor a loss of notifications) and no other read or write of
// it was noted since. v must not be changed afterwards. A read that found
// nothing, or failed, keeps nothing: call Changed, or nothing at all.
func (p *PollCache[V]) Read(id string, mark *PollMark, v V) {
	if mark == nil {
		return
	}
	size := p.size(v)
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.m[id]
	if e == nil || e.last != mark {
		return // changed, reset, or read or written again since
	}
	p.keepLocked(id, e, mark, v, size)
}

// Wrote keeps v, the record as the write Begin noted as mark stored it,
// if no change of the record was noted since, and otherwise drops what the
// cache holds of it. v must not be changed afterwards. After a write that
// did not store, or whose outcome is unknown, call Changed instead.
func (p *PollCache[V]) Wrote(id string, mark *PollMark, v V) {
	if p.age <= 0 {
		return
	}
	size := p.size(v)
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.m[id]
	if mark == nil || e == nil || e.last != mark {
		p.removeLocked(id)
		return
	}
	p.keepLocked(id, e, mark, v, size)
}

// keepLocked stores v, of size bytes, in e, the entry of id, as the
// outcome of mark, its latest read or write, dropping the oldest entries
// if the cache is full; it removes e instead if v is over EntryMax.
func (p *PollCache[V]) keepLocked(id string, e *pollEntry[V], mark *PollMark, v V, size int) {
	p.removeLocked(id)
	if size > EntryMax {
		return
	}
	p.dropOldLocked(size, mark.at)
	p.seq++
	e.v, e.has, e.at, e.size, e.seq, e.last = v, true, mark.at, size, p.seq, nil
	p.m[id] = e
	p.bytes += size
	p.kept = append(p.kept, keptItem[V]{id: id, e: e, seq: p.seq})
	if len(p.kept)-p.head > 2*len(p.m)+64 {
		// Mostly items of entries kept again or removed since, which the
		// head has not reached yet (a record read or written again and
		// again within the age): keep the list about as long as the cache.
		p.kept = slices.DeleteFunc(p.kept[p.head:], func(k keptItem[V]) bool { return !p.current(k) })
		p.head = 0
	}
}

// current reports whether k is the value its entry holds now.
func (p *PollCache[V]) current(k keptItem[V]) bool {
	return p.m[k.id] == k.e && k.e.has && k.e.seq == k.seq
}

// dropOldLocked makes room for size more bytes by dropping the oldest
// entries, and drops the entries older than the cache's age (as of now)
// at the head of the list of those kept. A poll is most likely of a
// request written moments ago, so a full cache keeps the newest.
func (p *PollCache[V]) dropOldLocked(size int, now time.Time) {
	for p.head < len(p.kept) {
		k := p.kept[p.head]
		current := p.current(k)
		if current && p.bytes+size <= PollBytes && now.Sub(k.e.at) < p.age {
			break
		}
		if current {
			p.removeLocked(k.id)
		}
		p.kept[p.head] = keptItem[V]{}
		p.head++
	}
	if p.head > len(p.kept)/2 {
		// Half the list is dropped items: move the rest to the front.
		n := copy(p.kept, p.kept[p.head:])
		clear(p.kept[n:])
		p.kept, p.head = p.kept[:n], 0
	}
}

// removeLocked removes the entry of id, if any.
func (p *PollCache[V]) removeLocked(id string) {
	if e, ok := p.m[id]; ok {
		p.bytes -= e.size
		delete(p.m, id)
	}
}

// Changed drops what the cache holds of id, and any read or write of it
// in flight: call it when a notification says id changed, and after a
// write whose outcome is unknown.
func (p *PollCache[V]) Changed(id string) {
	if p.age <= 0 {
		return
	}
	p.mu.Lock()
	p.removeLocked(id)
	p.mu.Unlock()
}

// Listen drops everything cached and records whether notifications are
// now received: call it with true once the backend receives them, and with
// false as soon as it may have missed one (its connection failed).
func (p *PollCache[V]) Listen(up bool) {
	if p.age <= 0 {
		return
	}
	p.mu.Lock()
	p.listening = up
	clear(p.m)
	p.bytes = 0
	clear(p.kept)
	p.kept, p.head = p.kept[:0], 0
	p.mu.Unlock()
}
