package postgres

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/asyncreq/asyncreq"
)

// TestPollCacheOrdersOverlappingWrites: of reads and writes of one record
// that overlap, the poll cache keeps a record only when no other was noted
// after it began; a write that ends after a later one began drops the
// entry, whichever commits first, since the database may hold either.
func TestPollCacheOrdersOverlappingWrites(t *testing.T) {
	now := time.Now()
	rec := func(attempts int) *asyncreq.Record {
		return &asyncreq.Record{ID: "r", State: asyncreq.StateRunning, Attempts: attempts}
	}
	attempts := func(p *pollCache) int {
		got := p.get("r", now)
		if got == nil {
			return -1
		}
		return got.Attempts
	}
	newCache := func() *pollCache {
		p := newPollCache(time.Hour)
		p.listen(true)
		return p
	}

	p := newCache()
	w1, w2 := p.begin("r", now), p.begin("r", now)
	p.wrote("r", w2, rec(2))
	assert.Equal(t, 2, attempts(p), "the later write, ended first")
	p.wrote("r", w1, rec(1))
	assert.Equal(t, -1, attempts(p), "an earlier write ending last drops the entry")

	p = newCache()
	w1, w2 = p.begin("r", now), p.begin("r", now)
	p.wrote("r", w1, rec(1))
	p.wrote("r", w2, rec(2))
	assert.Equal(t, -1, attempts(p), "either write may be the last in the database")

	p = newCache()
	r, w := p.begin("r", now), p.begin("r", now)
	p.wrote("r", w, rec(2))
	p.end("r", r, rec(1))
	assert.Equal(t, 2, attempts(p), "a read begun before the write is not kept")

	p = newCache()
	w, r = p.begin("r", now), p.begin("r", now)
	p.end("r", r, rec(1))
	p.wrote("r", w, rec(2))
	assert.Equal(t, -1, attempts(p), "a read begun during the write is not kept, nor is the write")

	p = newCache()
	w = p.begin("r", now)
	p.changed("r")
	p.wrote("r", w, rec(2))
	assert.Equal(t, -1, attempts(p), "a change announced during the write")

	p = newCache()
	w = p.begin("r", now)
	p.wrote("r", w, &asyncreq.Record{ID: "r", State: asyncreq.StateSucceeded, Attempts: 3, Result: &asyncreq.Result{Body: []byte("ok")}})
	assert.Equal(t, 3, attempts(p), "a final record is kept")
	assert.Nil(t, p.get("r", now.Add(time.Hour)), "until the cache's age has passed")
}
