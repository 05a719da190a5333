package redis

import (
	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/reccache"
)

// The record cache keeps, for records this Backend recently wrote or read,
// the version and fields it saw, so that an Update can go straight to the
// compare-and-set without reading the record first: a worker's outcome
// after its claim, or a progress report, costs one round trip. A stale
// entry is harmless: its compare-and-set fails and the script answers with
// the current record. Get reads Redis unless the poll cache answers (see
// polls.go).
//
// Versions count from 1 per record, so the cache relies on ids not being
// reused for a new record (Store.Create's contract: every record has a new
// id); Delete forgets the id in this Backend.
//
// The cache's bounds are those of reccache: two generations of about 4
// MiB, records over 64 KiB not kept.

// newRecCache returns an empty record cache.
func newRecCache() *reccache.Cache[stored] {
	return reccache.New(func(a, b stored) bool { return newer(a.version, b.version) }, stored.size)
}

// fits reports whether a record of the given encoded meta and rec's bodies
// would be kept.
func fits(meta []byte, rec *asyncreq.Record) bool {
	n := len(meta) + len(rec.Body)
	if rec.Result != nil {
		n += len(rec.Result.Body)
	}
	return n <= reccache.EntryMax
}

// newer reports whether version a is later than version b. Versions are
// decimal integers without leading zeros.
func newer(a, b string) bool {
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a > b
}
