package postgres

import (
	"strconv"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/reccache"
)

// The version cache keeps, for records this Backend recently read or wrote,
// the record and its row version (xmin), so that Update and Complete can go
// straight to the compare-and-set UPDATE without reading the record first:
// a worker's claim (whose record the dequeue read) and its outcome (whose
// record the claim wrote) each cost one statement. A stale entry is
// harmless: the UPDATE finds another xmin and writes nothing, and the
// update is tried again on the record as read (see Backend.updateBatch).
// Get reads the database, or answers from the poll cache (see
// Options.PollCacheAge and reccache.PollCache).
//
// An xmin names the transaction that wrote the row version, so two
// versions of a record never share one unless a single transaction wrote
// both, and only the last of those is ever visible. Ids are not reused for
// a new record (Store.Create's contract), and a deleted record makes the
// UPDATE find no row.
//
// The cache's bounds are those of reccache: two generations of about 4
// MiB, records over 64 KiB not kept.

// cached is a record as stored, with its row version. The record is never
// changed once in the cache: users clone it before changing it.
type cached struct {
	rec     *asyncreq.Record
	version string // xmin, in decimal
}

// newVersionCache returns an empty version cache.
func newVersionCache() *reccache.Cache[cached] {
	return reccache.New(func(a, b cached) bool { return later(a.version, b.version) }, func(e cached) int {
		return reccache.RecordSize(e.rec)
	})
}

// cacheRecord keeps rec, stored at row version version, in s's cache. rec
// must not be changed afterwards.
func (s *Backend) cacheRecord(rec *asyncreq.Record, version string) {
	s.cache.Put(rec.ID, cached{rec: rec, version: version})
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
