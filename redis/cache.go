package redis

import (
	"sync"

	"github.com/asyncreq/asyncreq"
)

// The record cache keeps, for records this Backend recently wrote or read,
// the version and fields it saw, so that an Update can go straight to the
// compare-and-set without reading the record first: a worker's outcome
// after its claim, or a progress report, costs one round trip. A stale
// entry is harmless: its compare-and-set fails and the script answers with
// the current record. Get always reads Redis.
//
// Versions count from 1 per record, so the cache relies on ids not being
// reused for a new record (Store.Create's contract: every record has a new
// id); Delete forgets the id in this Backend.
//
// The cache has two generations; when the current one holds
// cacheGenBytes, it becomes the previous one and the former previous one is
// dropped. Records larger than cacheEntryMax are not kept.
const (
	cacheGenBytes = 4 << 20
	cacheEntryMax = 64 << 10
)

type recCache struct {
	mu        sync.Mutex
	cur, prev map[string]stored
	curBytes  int
}

// get returns the entry for id.
func (c *recCache) get(id string) (stored, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.cur[id]; ok {
		return st, true
	}
	st, ok := c.prev[id]
	return st, ok
}

// fits reports whether a record of the given encoded meta and rec's bodies
// would be kept.
func fits(meta []byte, rec *asyncreq.Record) bool {
	n := len(meta) + len(rec.Body)
	if rec.Result != nil {
		n += len(rec.Result.Body)
	}
	return n <= cacheEntryMax
}

// put keeps st for id, unless the cache holds a later version of the
// record; it drops id's entry when st is too large.
func (c *recCache) put(id string, st stored) {
	n := st.size()
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.cur[id]; ok && newer(old.version, st.version) {
		return
	}
	if old, ok := c.prev[id]; ok && newer(old.version, st.version) {
		return
	}
	delete(c.prev, id)
	if n > cacheEntryMax {
		delete(c.cur, id)
		return
	}
	if c.cur == nil || c.curBytes+n > cacheGenBytes {
		c.prev, c.cur, c.curBytes = c.cur, make(map[string]stored), 0
	}
	c.cur[id] = st
	c.curBytes += n
}

// drop forgets id.
func (c *recCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cur, id)
	delete(c.prev, id)
}

// newer reports whether version a is later than version b. Versions are
// decimal integers without leading zeros.
func newer(a, b string) bool {
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a > b
}
