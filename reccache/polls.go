package reccache

import (
	"net/http"
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
type PollCache struct {
	age  time.Duration // <= 0: off
	size func(*asyncreq.Record) int

	mu        sync.Mutex
	listening bool // notifications are received
	m         map[string]*pollEntry
	bytes     int
	rescan    time.Time // a full cache is not scanned for old entries before
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
type pollEntry struct {
	rec  *asyncreq.Record // never changed once stored; nil if none yet
	at   time.Time        // when the read or write that gave rec was issued
	size int
	last *PollMark // the latest read or write noted, nil once done
}

// NewPollCache returns an empty PollCache whose entries last age; age 0 or
// less turns it off (Get answers nil, nothing is kept). size is about how
// many bytes a record keeps alive; nil means RecordSize. The cache keeps
// nothing until Listen says notifications are received.
func NewPollCache(age time.Duration, size func(*asyncreq.Record) int) *PollCache {
	if size == nil {
		size = RecordSize
	}
	return &PollCache{age: age, size: size, m: make(map[string]*pollEntry)}
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

// Get returns a copy of the cached record id if it was read or written
// less than the cache's age before now and has not expired, nil otherwise.
func (p *PollCache) Get(id string, now time.Time) *asyncreq.Record {
	if p.age <= 0 {
		return nil
	}
	p.mu.Lock()
	e := p.m[id]
	var rec *asyncreq.Record
	if e != nil && e.rec != nil && now.Sub(e.at) < p.age && (e.rec.ExpiresAt.IsZero() || now.Before(e.rec.ExpiresAt)) {
		rec = e.rec
	}
	p.mu.Unlock()
	if rec == nil {
		return nil
	}
	return rec.Clone()
}

// Begin notes a read or write of id about to be issued at now, and returns
// what to give End or Wrote with its outcome; nil when nothing is to be
// cached (the cache is off, or notifications are not received).
func (p *PollCache) Begin(id string, now time.Time) *PollMark {
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
		e = &pollEntry{}
		p.m[id] = e
	}
	e.last = mark
	return mark
}

// End keeps rec, the outcome of the read Begin noted as e (nil when it
// found nothing), if no change of the record (nor a loss of
// notifications) was noted since. rec is copied: the caller keeps it.
func (p *PollCache) End(id string, mark *PollMark, rec *asyncreq.Record) {
	if mark == nil {
		return
	}
	size := 0
	if rec != nil {
		size = p.size(rec)
		if size <= EntryMax {
			rec = rec.Clone()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.m[id]
	if e == nil || e.last != mark {
		return // changed, reset, or read or written again since
	}
	p.keepLocked(id, e, mark, rec, size)
}

// Wrote keeps rec, the record a write Begin noted as e stored, if no change
// of the record was noted since, and otherwise drops what the cache holds
// of it. A nil rec (the write's outcome is unknown, or it wrote nothing)
// drops the entry. rec must not be changed afterwards.
func (p *PollCache) Wrote(id string, mark *PollMark, rec *asyncreq.Record) {
	if p.age <= 0 {
		return
	}
	size := 0
	if rec != nil {
		size = p.size(rec)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.m[id]
	if mark == nil || e == nil || e.last != mark {
		p.removeLocked(id)
		return
	}
	p.keepLocked(id, e, mark, rec, size)
}

// keepLocked stores rec, of size bytes, in e, the entry of id, as the
// outcome of mark, its latest read or write; it removes e instead if rec
// is nil, over EntryMax, or does not fit.
func (p *PollCache) keepLocked(id string, e *pollEntry, mark *PollMark, rec *asyncreq.Record, size int) {
	p.removeLocked(id)
	if rec == nil || size > EntryMax || !p.roomLocked(size, mark.at) {
		return
	}
	e.rec, e.at, e.size, e.last = rec, mark.at, size, nil
	p.m[id] = e
	p.bytes += size
}

// roomLocked reports whether size more bytes fit, dropping the entries
// older than the cache's age (as of now) if they do not. A full cache is
// scanned for them at most every half age: while it is full of younger
// entries, a scan at every read or write would cost a walk of the whole
// cache each, and finds nothing to drop.
func (p *PollCache) roomLocked(size int, now time.Time) bool {
	if p.bytes+size <= PollBytes {
		return true
	}
	if now.Before(p.rescan) {
		return false
	}
	for id, e := range p.m {
		if e.rec != nil && now.Sub(e.at) >= p.age {
			p.removeLocked(id)
		}
	}
	if p.bytes+size <= PollBytes {
		return true
	}
	p.rescan = now.Add(p.age / 2)
	return false
}

// removeLocked removes the entry of id, if any.
func (p *PollCache) removeLocked(id string) {
	if e, ok := p.m[id]; ok {
		p.bytes -= e.size
		delete(p.m, id)
	}
}

// Changed drops what the cache holds of id, and any read or write of it
// in flight: call it when a notification says id changed.
func (p *PollCache) Changed(id string) {
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
func (p *PollCache) Listen(up bool) {
	if p.age <= 0 {
		return
	}
	p.mu.Lock()
	p.listening = up
	clear(p.m)
	p.bytes = 0
	p.mu.Unlock()
}
