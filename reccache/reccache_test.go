package reccache

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// versioned is a test value: a version and a payload of some size.
type versioned struct {
	version int
	payload string
}

func newCache() *Cache[versioned] {
	return New(func(a, b versioned) bool { return a.version > b.version },
		func(v versioned) int { return len(v.payload) })
}

func TestPutGetDrop(t *testing.T) {
	c := newCache()
	_, ok := c.Get("a")
	require.False(t, ok)
	c.Put("a", versioned{1, "x"})
	v, ok := c.Get("a")
	require.True(t, ok)
	assert.Equal(t, 1, v.version)
	c.Drop("a")
	_, ok = c.Get("a")
	assert.False(t, ok)
}

func TestPutKeepsLaterVersion(t *testing.T) {
	c := newCache()
	c.Put("a", versioned{2, "new"})
	c.Put("a", versioned{1, "old"})
	v, _ := c.Get("a")
	assert.Equal(t, 2, v.version, "an older version must not replace a later one")
	c.Put("a", versioned{3, "newer"})
	v, _ = c.Get("a")
	assert.Equal(t, 3, v.version)
}

func TestLargeEntryIsNotKeptAndDropsTheOldOne(t *testing.T) {
	c := newCache()
	c.Put("a", versioned{1, "small"})
	c.Put("a", versioned{2, strings.Repeat("x", EntryMax+1)})
	_, ok := c.Get("a")
	assert.False(t, ok, "an entry over EntryMax is not kept, and the stale smaller one is gone")
}

func TestGenerationsBoundTheSize(t *testing.T) {
	c := newCache()
	payload := strings.Repeat("x", 1<<10)
	n := 3 * GenBytes / len(payload)
	for i := range n {
		c.Put(fmt.Sprint(i), versioned{1, payload})
	}
	kept := 0
	for i := range n {
		if _, ok := c.Get(fmt.Sprint(i)); ok {
			kept++
		}
	}
	assert.LessOrEqual(t, kept*len(payload), 2*GenBytes, "at most two generations are kept")
	assert.GreaterOrEqual(t, kept*len(payload), GenBytes, "the current generation is kept")
	_, ok := c.Get(fmt.Sprint(n - 1))
	assert.True(t, ok, "the newest entry is kept")
	_, ok = c.Get("0")
	assert.False(t, ok, "the oldest entries are dropped")
}

// A new generation's map is made at the size of the one before it, so
// filling it does not grow it step by step (rehashing its entries at each).
func TestANewGenerationStartsAtItsSize(t *testing.T) {
	c := newCache()
	payload := strings.Repeat("x", 1<<10)
	perGen := GenBytes / len(payload)
	ids := make([]string, 3*perGen)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	for _, id := range ids[:2*perGen] {
		c.Put(id, versioned{1, payload})
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, id := range ids[2*perGen:] {
		c.Put(id, versioned{1, payload})
	}
	runtime.ReadMemStats(&after)
	perEntry := float64(after.TotalAlloc-before.TotalAlloc) / float64(perGen)
	// Made at once, a map of this size takes about 110 bytes an entry
	// here; grown from empty, it allocated about 220.
	assert.Less(t, perEntry, 150.0, "bytes allocated an entry of a generation")
}

func TestReplacingAnEntryKeepsTheCountRight(t *testing.T) {
	c := newCache()
	payload := strings.Repeat("x", 1<<10)
	for v := range GenBytes / len(payload) * 2 {
		c.Put("a", versioned{v, payload})
	}
	assert.Equal(t, len(payload), c.curBytes, "one entry replaced many times counts once")
}
