package postgres

import (
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
)

// The poll cache answers a Get of an unfinished record from the record as
// a Get read it moments ago, while nothing says it changed since: a client
// that polls the status of a running request every few milliseconds then
// costs a read of the database every Options.PollCacheAge, not at every
// poll.
//
// What says a record changed is the change notification every write sends
// on commit (NOTIFY, see Backend.changed), received on the LISTEN
// connection for other processes' writes and at once for this Backend's
// own. A notification is a hint, not a guarantee: it arrives a moment after
// the commit, and it is lost if its sender fails to send it. So an entry
// is used for PollCacheAge at most after its read was issued, only while
// the LISTEN connection is up, and everything cached is dropped whenever
// that connection is lost, since notifications may have been missed. A
// lost notification therefore delays what a poll sees by PollCacheAge at
// most, and a delivered one by the time it took to arrive.
//
// Only pending and running records are cached: a final record is what a
// poll reads once, and the purges that delete final records send no
// notification.

// pollCacheBytes bounds the records the poll cache holds, by
// recordSize; records over pollCacheMaxRecord are not kept.
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
}

// pollEntry is one record in the poll cache, or a read of it in flight
// (rec nil). A change of the record removes the entry, so that a read in
// flight during the change is not kept.
type pollEntry struct {
	rec  *asyncreq.Record // never changed once stored; nil until read
	at   time.Time        // when the read was issued
	size int
}

func newPollCache(age time.Duration) *pollCache {
	return &pollCache{age: age, m: make(map[string]*pollEntry)}
}

// get returns a copy of the cached record id if it was read less than the
// cache's age ago, nil otherwise.
func (p *pollCache) get(id string, now time.Time) *asyncreq.Record {
	if p.age <= 0 {
		return nil
	}
	p.mu.Lock()
	e := p.m[id]
	var rec *asyncreq.Record
	if e != nil && e.rec != nil && now.Sub(e.at) < p.age {
		rec = e.rec
	}
	p.mu.Unlock()
	if rec == nil {
		return nil
	}
	return rec.Clone()
}

// begin notes a read of id about to be issued, and returns what to give
// end with its outcome; nil when nothing is to be cached (the cache is
// off, or LISTEN is down).
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

// end keeps rec, the outcome of the read begin noted as e, if it is
// unfinished and no change of the record (nor a loss of the LISTEN
// connection) was noted since begin. rec is copied: the caller keeps it.
func (p *pollCache) end(id string, e *pollEntry, rec *asyncreq.Record) {
	if e == nil {
		return
	}
	keep := rec != nil && !rec.State.Final()
	var size int
	if keep {
		size = recordSize(rec)
		keep = size <= pollCacheMaxRecord
	}
	if keep {
		rec = rec.Clone()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[id] != e {
		return // changed, reset, or read again since
	}
	if !keep || !p.roomLocked(size, e.at) {
		delete(p.m, id)
		return
	}
	e.rec, e.size = rec, size
	p.bytes += size
}

// roomLocked reports whether size more bytes fit, dropping the entries
// older than the cache's age (as of now) if they do not.
func (p *pollCache) roomLocked(size int, now time.Time) bool {
	if p.bytes+size <= pollCacheBytes {
		return true
	}
	for id, e := range p.m {
		if e.rec != nil && now.Sub(e.at) >= p.age {
			p.removeLocked(id)
		}
	}
	return p.bytes+size <= pollCacheBytes
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
