// Package reccache is for backend authors: the bounded in-process cache
// that a backend keeps of records it recently read or wrote, keyed by
// record id, so that an update can go straight to its compare-and-set
// without reading the record first. A stale entry must be harmless to the
// backend (its compare-and-set fails); the cache only saves reads. An
// application that uses asyncreq has no need of it.
//
// The PostgreSQL and Redis backends use it, and its PollCache, which
// answers status polls from records recently read or written while change
// notifications flow. They are modules of their own, released with the
// root module but possibly built with a later one, so this package is API
// like the rest of the root module, and changes to it stay compatible.
//
// The cache has two generations: when the current one holds GenBytes, it
// becomes the previous one and the former previous one is dropped, so the
// cache holds at most about twice GenBytes. Entries larger than EntryMax
// are not kept.
package reccache

import "sync"

// Size limits of a Cache.
const (
	// GenBytes is the size of a generation, in the units of New's size
	// function (about bytes).
	GenBytes = 4 << 20
	// EntryMax is the size of the largest value a Cache keeps.
	EntryMax = 64 << 10
)

// Cache maps record ids to values of type V. Its zero value is not usable:
// make one with New. A Cache is safe for concurrent use.
type Cache[V any] struct {
	later func(a, b V) bool
	size  func(V) int

	mu        sync.Mutex
	cur, prev map[string]entry[V]
	curBytes  int
}

type entry[V any] struct {
	v    V
	size int
}

// New returns an empty Cache. later reports whether a holds a later
// version of its record than b; size is about how many bytes a value
// keeps alive.
func New[V any](later func(a, b V) bool, size func(V) int) *Cache[V] {
	return &Cache[V]{later: later, size: size}
}

// Get returns the value kept for id.
func (c *Cache[V]) Get(id string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cur[id]; ok {
		return e.v, true
	}
	e, ok := c.prev[id]
	return e.v, ok
}

// Put keeps v for id, unless the cache holds a later version of the
// record; it drops id's entry when v is larger than EntryMax.
func (c *Cache[V]) Put(id string, v V) {
	n := c.size(v)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.cur[id]; ok && c.later(old.v, v) {
		return
	}
	if old, ok := c.prev[id]; ok && c.later(old.v, v) {
		return
	}
	c.dropLocked(id)
	if n > EntryMax {
		return
	}
	if c.cur == nil || c.curBytes+n > GenBytes {
		// The next generation will hold about as many entries as this
		// one: made at that size, its map does not grow step by step.
		c.prev, c.cur, c.curBytes = c.cur, make(map[string]entry[V], len(c.cur)), 0
	}
	c.cur[id] = entry[V]{v: v, size: n}
	c.curBytes += n
}

// Drop forgets id.
func (c *Cache[V]) Drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(id)
}

func (c *Cache[V]) dropLocked(id string) {
	if old, ok := c.cur[id]; ok {
		c.curBytes -= old.size
		delete(c.cur, id)
	}
	delete(c.prev, id)
}
