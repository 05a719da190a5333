package postgres

import (
	"strconv"
	"sync"

	"github.com/asyncreq/asyncreq"
)

// The version cache keeps, for records this Store recently read or wrote,
// the record and its row version (xmin), so that Update and Complete can go
// straight to the compare-and-set UPDATE without reading the record first:
// a worker's claim (whose record the dequeue read) and its outcome (whose
// record the claim wrote) each cost one statement. A stale entry is
// harmless: the UPDATE finds another xmin and writes nothing, and the
// update is tried again on the record as read (see Store.updateBatch).
// Get always reads the database.
//
// An xmin names the transaction that wrote the row version, so two
// versions of a record never share one unless a single transaction wrote
// both, and only the last of those is ever visible. Ids are not reused for
// a new record (Store.Create's contract), and a deleted record makes the
// UPDATE find no row.
//
// The cache has two generations; when the current one holds
// cacheGenBytes, it becomes the previous one and the former previous one is
// dropped. Records larger than cacheEntryMax are not kept.
const (
	cacheGenBytes = 4 << 20
	cacheEntryMax = 64 << 10
)

// cached is a record as stored, with its row version. The record is never
// changed once in the cache: users clone it before changing it.
type cached struct {
	rec     *asyncreq.Record
	version string // xmin, in decimal
	size    int
}

type versionCache struct {
	mu        sync.Mutex
	cur, prev map[string]cached
	curBytes  int
}

// get returns the entry for id.
func (c *versionCache) get(id string) (cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cur[id]; ok {
		return e, true
	}
	e, ok := c.prev[id]
	return e, ok
}

// put keeps rec, stored at row version version, unless the cache holds a
// later version of the record; it drops the record's entry when rec is
// too large. rec must not be changed afterwards.
func (c *versionCache) put(rec *asyncreq.Record, version string) {
	e := cached{rec: rec, version: version, size: recordSize(rec)}
	if rec.Result != nil {
		e.size += len(rec.Result.Body)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.cur[rec.ID]; ok && later(old.version, version) {
		return
	}
	if old, ok := c.prev[rec.ID]; ok && later(old.version, version) {
		return
	}
	delete(c.prev, rec.ID)
	if e.size > cacheEntryMax {
		c.dropLocked(rec.ID)
		return
	}
	if old, ok := c.cur[rec.ID]; ok {
		c.curBytes -= old.size
	}
	if c.cur == nil || c.curBytes+e.size > cacheGenBytes {
		c.prev, c.cur, c.curBytes = c.cur, make(map[string]cached), 0
	}
	c.cur[rec.ID] = e
	c.curBytes += e.size
}

// drop forgets id.
func (c *versionCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(id)
}

func (c *versionCache) dropLocked(id string) {
	if old, ok := c.cur[id]; ok {
		c.curBytes -= old.size
		delete(c.cur, id)
	}
	delete(c.prev, id)
}

// later reports whether row version a was written after b. Transaction
// ids wrap around at 2^32, and PostgreSQL orders two of them by their
// distance modulo 2^32 (TransactionIdPrecedes), as done here; versions
// that do not parse are never later.
func later(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 32)
	y, errB := strconv.ParseUint(b, 10, 32)
	return errA == nil && errB == nil && int32(uint32(x)-uint32(y)) > 0
}
