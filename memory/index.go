package memory

import (
	"slices"
	"sort"
	"strings"
	"time"
)

// key orders records in an index: by a time (in nanoseconds since the
// Unix epoch, as asyncreq.ListCursor encodes it), then by id.
type key struct {
	ns int64
	id string
}

func keyOf(t time.Time, id string) key { return key{ns: t.UnixNano(), id: id} }

func (a key) cmp(b key) int {
	switch {
	case a.ns < b.ns:
		return -1
	case a.ns > b.ns:
		return 1
	}
	return strings.Compare(a.id, b.id)
}

// chunkMax is the most keys a chunk of an index holds before it splits.
const chunkMax = 512

// index is an ordered set of keys, ascending, kept as a list of sorted
// chunks of at most chunkMax keys: finding a key costs O(log n), adding or
// removing one O(log n + chunkMax) (a chunk's keys move, not the whole
// set's), and walking it costs O(1) a key. New records arrive at its end,
// where adding costs least.
type index struct {
	chunks [][]key
	n      int
	// spare is the array of the last chunk that emptied, for the next
	// chunk to start: an index that empties and fills again, as a queue
	// does, allocates nothing for it.
	spare []key
}

// newChunk returns an empty chunk with room for at least size keys.
func (x *index) newChunk(size int) []key {
	if c := x.spare; cap(c) >= size {
		x.spare = nil
		return c
	}
	return make([]key, 0, size)
}

// chunkFor returns the chunk that holds k, or would: the first whose last
// key is not less than k, else the last. The index is not empty.
func (x *index) chunkFor(k key) int {
	i := sort.Search(len(x.chunks), func(i int) bool {
		c := x.chunks[i]
		return c[len(c)-1].cmp(k) >= 0
	})
	return min(i, len(x.chunks)-1)
}

// search returns the position of the first key of c not less than k.
func search(c []key, k key) int {
	return sort.Search(len(c), func(j int) bool { return c[j].cmp(k) >= 0 })
}

// add puts k in the index; adding a key it holds already does nothing.
// Keys mostly arrive in order, or a little out of it (records by creation,
// or finishing in another order than they began), so a full chunk is
// split only when no cheaper way keeps chunks full: k after every key
// starts a new last chunk, and a full chunk whose next one has room passes
// its greatest key on to it. Such an index costs about its keys' own size
// in allocations.
func (x *index) add(k key) {
	if x.n == 0 {
		x.chunks = append(x.chunks[:0], append(x.newChunk(16), k))
		x.n = 1
		return
	}
	i := x.chunkFor(k)
	c := x.chunks[i]
	j := search(c, k)
	if j < len(c) && c[j] == k {
		return
	}
	x.n++
	if len(c) < chunkMax {
		x.chunks[i] = slices.Insert(c, j, k)
		return
	}
	if j == len(c) && i == len(x.chunks)-1 {
		x.chunks = append(x.chunks, append(x.newChunk(chunkMax), k))
		return
	}
	if i+1 < len(x.chunks) && len(x.chunks[i+1]) < chunkMax {
		x.chunks[i+1] = slices.Insert(x.chunks[i+1], 0, c[len(c)-1])
		copy(c[j+1:], c[j:len(c)-1])
		c[j] = k
		return
	}
	// A split keeps c's array for its left part. A full last chunk splits
	// where k goes when that is past its middle, leaving the keys before
	// k in a full chunk.
	cut := len(c) / 2
	if i == len(x.chunks)-1 && j > cut {
		cut = j
	}
	right := x.newChunk(chunkMax)[:len(c)-cut]
	copy(right, c[cut:])
	clear(c[cut:]) // let the ids moved to right be collected with it
	left := c[:cut]
	if j <= cut {
		left = slices.Insert(left, j, k)
	} else {
		right = slices.Insert(right, j-cut, k)
	}
	x.chunks[i] = left
	x.chunks = slices.Insert(x.chunks, i+1, right)
}

// remove takes k out of the index, if it is there. The first key of a
// chunk other than the last goes without moving the others (keys mostly
// leave in the order they came, oldest first); the chunk's array goes
// when it empties. The last chunk's keys move instead, keeping its room
// at the end for the keys to come.
func (x *index) remove(k key) {
	if x.n == 0 {
		return
	}
	i := x.chunkFor(k)
	c := x.chunks[i]
	j := search(c, k)
	if j == len(c) || c[j] != k {
		return
	}
	x.n--
	switch {
	case len(c) == 1:
		c[0] = key{}
		x.spare = c[:0]
		x.chunks = slices.Delete(x.chunks, i, i+1)
	case j == 0 && i < len(x.chunks)-1:
		c[0] = key{}
		x.chunks[i] = c[1:]
	default:
		x.chunks[i] = slices.Delete(c, j, j+1)
	}
}

// walker reads an index from a key downwards, newest first. It is valid
// only while the index does not change.
type walker struct {
	chunks [][]key
	ci, j  int // the current key is chunks[ci][j]; ci < 0 when done
}

// below returns a walker at the greatest key less than k, or at the
// greatest key of all when from is false.
func (x *index) below(k key, from bool) walker {
	w := walker{chunks: x.chunks, ci: len(x.chunks) - 1}
	if w.ci < 0 {
		return w
	}
	w.j = len(x.chunks[w.ci]) - 1
	if !from {
		return w
	}
	i := sort.Search(len(x.chunks), func(i int) bool {
		c := x.chunks[i]
		return c[len(c)-1].cmp(k) >= 0
	})
	if i == len(x.chunks) {
		return w // every key is less than k
	}
	w.ci, w.j = i, search(x.chunks[i], k)-1
	if w.j < 0 {
		w.ci--
		if w.ci >= 0 {
			w.j = len(x.chunks[w.ci]) - 1
		}
	}
	return w
}

// peek returns the current key, and false when the walk is done.
func (w *walker) peek() (key, bool) {
	if w.ci < 0 {
		return key{}, false
	}
	return w.chunks[w.ci][w.j], true
}

// next moves to the next smaller key.
func (w *walker) next() {
	w.j--
	if w.j < 0 {
		w.ci--
		if w.ci >= 0 {
			w.j = len(w.chunks[w.ci]) - 1
		}
	}
}

// ascend calls fn for each key of the index from the least up, until fn
// returns false. The index must not change meanwhile.
func (x *index) ascend(fn func(key) bool) {
	for _, c := range x.chunks {
		for _, k := range c {
			if !fn(k) {
				return
			}
		}
	}
}
