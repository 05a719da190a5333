package reccache

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	attempts := func(p *PollCache[*asyncreq.Record]) int {
		got := get(p, "r", now)
		if got == nil {
			return -1
		}
		return got.Attempts
	}
	newCache := func() *PollCache[*asyncreq.Record] {
		p := newTestCache(time.Hour)
		p.Listen(true)
		return p
	}

	p := newCache()
	w1, w2 := p.Begin("r", now), p.Begin("r", now)
	p.Wrote("r", w2, rec(2))
	assert.Equal(t, 2, attempts(p), "the later write, ended first")
	p.Wrote("r", w1, rec(1))
	assert.Equal(t, -1, attempts(p), "an earlier write ending last drops the entry")

	p = newCache()
	w1, w2 = p.Begin("r", now), p.Begin("r", now)
	p.Wrote("r", w1, rec(1))
	p.Wrote("r", w2, rec(2))
	assert.Equal(t, -1, attempts(p), "either write may be the last in the database")

	p = newCache()
	r, w := p.Begin("r", now), p.Begin("r", now)
	p.Wrote("r", w, rec(2))
	p.Read("r", r, rec(1))
	assert.Equal(t, 2, attempts(p), "a read begun before the write is not kept")

	p = newCache()
	w, r = p.Begin("r", now), p.Begin("r", now)
	p.Read("r", r, rec(1))
	p.Wrote("r", w, rec(2))
	assert.Equal(t, -1, attempts(p), "a read begun during the write is not kept, nor is the write")

	p = newCache()
	w = p.Begin("r", now)
	p.Changed("r")
	p.Wrote("r", w, rec(2))
	assert.Equal(t, -1, attempts(p), "a change announced during the write")

	p = newCache()
	w = p.Begin("r", now)
	p.Wrote("r", w, &asyncreq.Record{ID: "r", State: asyncreq.StateSucceeded, Attempts: 3, Result: &asyncreq.Result{Body: []byte("ok")}})
	assert.Equal(t, 3, attempts(p), "a final record is kept")
	assert.Nil(t, get(p, "r", now.Add(time.Hour)), "until the cache's age has passed")
}

// BenchmarkPollCacheFull reads records into a poll cache that is full of
// records read within its age: the cost of a read's begin and end when
// the oldest entry is dropped to keep it.
func BenchmarkPollCacheFull(b *testing.B) {
	now := time.Now()
	p := newTestCache(time.Hour)
	p.Listen(true)
	body := make([]byte, 1<<10)
	fill(p, now, body)
	i := 0
	for b.Loop() {
		id := "new" + strconv.Itoa(i)
		i++
		p.Read(id, p.Begin(id, now), &asyncreq.Record{ID: id, State: asyncreq.StateRunning, Body: body})
	}
	if get(p, "new"+strconv.Itoa(i-1), now) == nil {
		b.Fatal("the newest record was not kept in a full cache")
	}
	if p.bytes > PollBytes {
		b.Fatalf("the cache holds %d bytes, over its %d", p.bytes, PollBytes)
	}
}

// fill reads records with body into p at now until it is nearly full (less
// than a record's room left), and returns their ids, oldest first.
func fill(p *PollCache[*asyncreq.Record], now time.Time, body []byte) []string {
	var ids []string
	for i := 0; p.bytes+testSize(&asyncreq.Record{Body: body}) <= PollBytes; i++ {
		id := strconv.Itoa(i)
		p.Read(id, p.Begin(id, now), &asyncreq.Record{ID: id, State: asyncreq.StateRunning, Body: body})
		ids = append(ids, id)
	}
	return ids
}

// TestPollCacheFullDropsTheOldest: a full cache keeps a new record by
// dropping its oldest entries, as many as the new one needs, although they
// are younger than its age: a poll is most likely of a request written
// moments ago. Entries removed since they were kept (a change) are not
// counted as the oldest.
func TestPollCacheFullDropsTheOldest(t *testing.T) {
	now := time.Now()
	p := newTestCache(time.Hour)
	p.Listen(true)
	body := make([]byte, 16<<10)
	ids := fill(p, now, body)
	require.Greater(t, len(ids), 100)
	p.Changed(ids[1]) // removed: not the second oldest any more

	big := &asyncreq.Record{ID: "new", State: asyncreq.StateRunning, Body: make([]byte, 40<<10)}
	later := now.Add(time.Minute)
	p.Read(big.ID, p.Begin(big.ID, later), big)
	has := func(id string) bool { _, ok := p.Get(id, later); return ok }
	assert.True(t, has(big.ID), "the new record is kept")
	assert.LessOrEqual(t, p.bytes, PollBytes)
	for _, id := range []string{ids[0], ids[2]} {
		assert.False(t, has(id), "oldest entry %s is dropped", id)
	}
	for _, id := range ids[3:] {
		require.True(t, has(id), "entry %s, newer than what the new record needed dropped", id)
	}
}

// TestPollCacheDropsAgedEntries: entries older than the cache's age are
// dropped as new ones are kept, whether or not the cache is full, so that
// what it holds is what it may still answer with.
func TestPollCacheDropsAgedEntries(t *testing.T) {
	const age = time.Second
	now := time.Now()
	p := newTestCache(age)
	p.Listen(true)
	rec := func(id string) *asyncreq.Record { return &asyncreq.Record{ID: id, State: asyncreq.StateRunning} }
	for _, id := range []string{"a", "b"} {
		p.Read(id, p.Begin(id, now), rec(id))
	}
	p.Read("c", p.Begin("c", now.Add(age/2)), rec("c"))
	p.Read("d", p.Begin("d", now.Add(age)), rec("d"))
	assert.Len(t, p.m, 2, "a and b aged when d was kept")
	assert.NotNil(t, get(p, "c", now.Add(age)))
	assert.NotNil(t, get(p, "d", now.Add(age)))
	assert.Equal(t, 2*testSize(rec("")), p.bytes)
}

// TestPollCacheListOfKeptStaysShort: records written again and again
// within a long age, behind an older entry that stays, leave the list of
// values kept about as long as the cache, not one item for every time a
// record was kept.
func TestPollCacheListOfKeptStaysShort(t *testing.T) {
	now := time.Now()
	p := newTestCache(time.Hour)
	p.Listen(true)
	// Kept first and never again: the oldest entry, young all along.
	p.Read("first", p.Begin("first", now), &asyncreq.Record{ID: "first", State: asyncreq.StateRunning})
	for i := range 100_000 {
		id := strconv.Itoa(i % 10)
		p.Wrote(id, p.Begin(id, now), &asyncreq.Record{ID: id, State: asyncreq.StateRunning, Attempts: i})
	}
	require.Len(t, p.m, 11)
	require.NotNil(t, get(p, "first", now))
	assert.LessOrEqual(t, len(p.kept)-p.head, 2*len(p.m)+64)
	for i := range 10 {
		got := get(p, strconv.Itoa(i), now)
		require.NotNil(t, got)
		assert.Equal(t, 99_990+i, got.Attempts, "the last value kept of %d", i)
	}
}

// testSize is a record's size in the tests: its bodies and a little more.
func testSize(rec *asyncreq.Record) int {
	n := 64 + len(rec.Body)
	if rec.Result != nil {
		n += len(rec.Result.Body)
	}
	return n
}

// TestPollCacheAnswersDuringAWrite: while a read or write of a record is
// in flight, Get answers the record as the cache held it before (the
// write may not have taken effect yet); once the write is done, what it
// wrote. A notification of a change drops both.
func TestPollCacheAnswersDuringAWrite(t *testing.T) {
	now := time.Now()
	p := newTestCache(time.Hour)
	p.Listen(true)
	rec := func(attempts int) *asyncreq.Record {
		return &asyncreq.Record{ID: "r", State: asyncreq.StateRunning, Attempts: attempts}
	}
	attempts := func() int {
		if got := get(p, "r", now); got != nil {
			return got.Attempts
		}
		return -1
	}
	p.Read("r", p.Begin("r", now), rec(1))
	require.Equal(t, 1, attempts())

	w := p.Begin("r", now)
	assert.Equal(t, 1, attempts(), "during the write")
	r := p.Begin("r", now)
	assert.Equal(t, 1, attempts(), "during the write and a read")
	p.Read("r", r, rec(2))
	assert.Equal(t, 2, attempts(), "the read begun last")
	p.Wrote("r", w, rec(3))
	assert.Equal(t, -1, attempts(), "a write that ended after a later read began")

	p.Read("r", p.Begin("r", now), rec(4))
	w = p.Begin("r", now)
	p.Changed("r")
	assert.Equal(t, -1, attempts(), "a change during the write")
	p.Wrote("r", w, rec(5))
	assert.Equal(t, -1, attempts(), "the write that overlapped a change")

	p.Read("r", p.Begin("r", now), rec(6))
	w = p.Begin("r", now)
	p.Wrote("r", w, rec(7))
	assert.Equal(t, 7, attempts(), "after the write")
	p.Begin("r", now)
	p.Changed("r") // a write whose outcome is unknown
	assert.Equal(t, -1, attempts(), "a write whose outcome is unknown")
	assert.Zero(t, p.bytes, "bytes held by no entry")
	assert.Empty(t, p.m)
}

// newTestCache returns a PollCache of records sized by testSize.
func newTestCache(age time.Duration) *PollCache[*asyncreq.Record] {
	return NewPollCache(age, testSize, func(rec *asyncreq.Record) time.Time { return rec.ExpiresAt })
}

// get returns a copy of what p holds of id, nil if nothing.
func get(p *PollCache[*asyncreq.Record], id string, now time.Time) *asyncreq.Record {
	rec, ok := p.Get(id, now)
	if !ok {
		return nil
	}
	return rec.Clone()
}

// TestPollCacheSettled: Settled answers what Get does, except while a read
// or write of the record is in flight.
func TestPollCacheSettled(t *testing.T) {
	now := time.Now()
	p := newTestCache(time.Hour)
	p.Listen(true)
	rec := &asyncreq.Record{ID: "r", State: asyncreq.StateRunning, Attempts: 1}
	_, ok := p.Settled("r", now)
	assert.False(t, ok, "nothing kept")

	w := p.Begin("r", now)
	_, ok = p.Settled("r", now)
	assert.False(t, ok, "during the first write")
	p.Wrote("r", w, rec)
	got, ok := p.Settled("r", now)
	require.True(t, ok, "after the write")
	assert.Same(t, rec, got)

	w = p.Begin("r", now)
	_, ok = p.Get("r", now)
	assert.True(t, ok, "Get answers the record before the write in flight")
	_, ok = p.Settled("r", now)
	assert.False(t, ok, "Settled does not")
	p.Wrote("r", w, rec)
	_, ok = p.Settled("r", now.Add(time.Hour))
	assert.False(t, ok, "too old")
	rec2 := &asyncreq.Record{ID: "r", State: asyncreq.StateSucceeded, ExpiresAt: now.Add(time.Minute)}
	p.Wrote("r", p.Begin("r", now), rec2)
	_, ok = p.Settled("r", now.Add(2*time.Minute))
	assert.False(t, ok, "expired")
}
