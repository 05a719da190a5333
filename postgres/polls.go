package postgres

import (
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
)

// The poll cache answers a Get from the record as a Get read it, or as
// this Backend wrote it (an Update or Complete: a worker's claim, its
// progress, its outcome), moments ago, while nothing says it changed since:
// a client that polls the status of a running request every few
// milliseconds then costs a read of the database every
// Options.PollCacheAge, not one at every poll, and a client that reads the
// outcome the worker beside the handler just wrote costs none.
//
// What says a record changed is the change notification every write sends
// on commit (NOTIFY, see Backend.changed), received on the LISTEN
// connection for other processes' writes and at once for this Backend's
// own. A notification is a hint, not a guarantee: it arrives a moment after
// the commit, and it is lost if its sender fails to send it. So an entry
// is used for PollCacheAge at most after its read or write was issued,
// only while the LISTEN connection is up, and everything cached is dropped
// whenever that connection is lost, since notifications may have been
// missed. A lost notification therefore delays what a poll sees by
// PollCacheAge at most, and a delivered one by the time it took to arrive.
//
// A read or write notes itself in the cache before it is issued, replacing
// the entry of its record, and its record is kept only if that note is
// still the entry when it is done: a change noted in between (another
// read or write of this Backend, a notification) means the record may be
// outdated already. A write that finds its note replaced drops the entry,
// since the record it replaced is older than the write.
//
// Final records are cached too. The purge deletes them without a
// notification, but only once they expired, and an expired record is never
// answered from the cache.

// pollCacheBytes bounds the records the poll cache holds, by
// cacheSize; records over pollCacheMaxRecord are not kept.
const (
	pollCacheBytes     = 8 << 20
	pollCacheMaxRecord = 64 << 10
)

// pollCache is a Backend's poll cache.
type pollCache struct {
	age time.Duration // 0: off

	mu        sync.Mutex
	listening bool // the LISTEN connection is up
	m         map[string]*pollEntry
	bytes     int
	rescan    time.Time // a full cache is not scanned for old entries before
}

// pollEntry is one record in the poll cache, or a read or write of it in
// flight (rec nil). A change of the record removes the entry, so that a
// read or write in flight during the change is not kept.
type pollEntry struct {
	rec  *asyncreq.Record // never changed once stored; nil until done
	at   time.Time        // when the read or write was issued
	size int
}

func newPollCache(age time.Duration) *pollCache {
	return &pollCache{age: age, m: make(map[string]*pollEntry)}
}

// get returns a copy of the cached record id if it was read or written
// less than the cache's age ago and has not expired, nil otherwise.
func (p *pollCache) get(id string, now time.Time) *asyncreq.Record {
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

// begin notes a read or write of id about to be issued, and returns what
// to give end or wrote with its outcome; nil when nothing is to be cached
// (the cache is off, or LISTEN is down).
func (p *pollCache) begin(id string, now time.Time) *pollEntry {
	if p.age <= 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.listening {
		return nil
	}
	e := &pollEntry{at: now}
	p.removeLocked(id)
	p.m[id] = e
	return e
}

// end keeps rec, the outcome of the read begin noted as e, if no change
// of the record (nor a loss of the LISTEN connection) was noted since
// begin. rec is copied: the caller keeps it.
func (p *pollCache) end(id string, e *pollEntry, rec *asyncreq.Record) {
	if e == nil {
		return
	}
	size := 0
	if rec != nil {
		size = cacheSize(rec)
		if size <= pollCacheMaxRecord {
			rec = rec.Clone()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[id] != e {
		return // changed, reset, or read again since
	}
	p.keepLocked(id, e, rec, size)
}

// wrote keeps rec, the record a write begin noted as e stored, if no
// change of the record was noted since begin, and otherwise drops what the
// cache holds of it. rec must not be changed afterwards.
func (p *pollCache) wrote(id string, e *pollEntry, rec *asyncreq.Record) {
	if p.age <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e == nil || p.m[id] != e {
		p.removeLocked(id)
		return
	}
	p.keepLocked(id, e, rec, cacheSize(rec))
}

// keepLocked stores rec, of size bytes, in e, the entry of id; it removes
// e instead if rec is nil, over pollCacheMaxRecord, or does not fit.
func (p *pollCache) keepLocked(id string, e *pollEntry, rec *asyncreq.Record, size int) {
	if rec == nil || size > pollCacheMaxRecord || !p.roomLocked(size, e.at) {
		delete(p.m, id)
		return
	}
	e.rec, e.size = rec, size
	p.bytes += size
}

// roomLocked reports whether size more bytes fit, dropping the entries
// older than the cache's age (as of now) if they do not. A full cache is
// scanned for them at most every half age: while it is full of younger
// entries, a scan at every read or write would cost a walk of the whole
// cache each, and finds nothing to drop.
func (p *pollCache) roomLocked(size int, now time.Time) bool {
	if p.bytes+size <= pollCacheBytes {
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
	if p.bytes+size <= pollCacheBytes {
		return true
	}
	p.rescan = now.Add(p.age / 2)
	return false
}

// removeLocked removes the entry of id, if any.
func (p *pollCache) removeLocked(id string) {
	if e, ok := p.m[id]; ok {
		p.bytes -= e.size
		delete(p.m, id)
	}
}

// changed drops what the cache holds of id, and any read of it in flight.
func (p *pollCache) changed(id string) {
	if p.age <= 0 {
		return
	}
	p.mu.Lock()
	p.removeLocked(id)
	p.mu.Unlock()
}

// listen drops everything cached and records whether the LISTEN
// connection is now up: after it was lost, notifications may have been
// missed, and while it is down none arrive.
func (p *pollCache) listen(up bool) {
	if p.age <= 0 {
		return
	}
	p.mu.Lock()
	p.listening = up
	clear(p.m)
	p.bytes = 0
	p.mu.Unlock()
}
