package memory

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// keys returns n distinct keys, ascending.
func keys(n int) []key {
	ks := make([]key, n)
	for i := range ks {
		ks[i] = key{ns: int64(i / 3), id: fmt.Sprintf("id-%08d", i)}
	}
	return ks
}

// checkIndex fails t unless x holds exactly want, ascending, in chunks
// that are neither empty nor over chunkMax.
func checkIndex(t *testing.T, x *index, want map[key]bool) {
	t.Helper()
	var got []key
	x.ascend(func(k key) bool { got = append(got, k); return true })
	var exp []key
	for k := range want {
		exp = append(exp, k)
	}
	slices.SortFunc(exp, key.cmp)
	require.Equal(t, exp, got)
	require.Equal(t, len(exp), x.n)
	for _, c := range x.chunks {
		require.NotEmpty(t, c)
		require.LessOrEqual(t, len(c), chunkMax)
	}
	// Walking down from every held key finds the one below it.
	for i, k := range exp {
		w := x.below(k, true)
		g, ok := w.peek()
		if i == 0 {
			require.False(t, ok)
			continue
		}
		require.True(t, ok)
		require.Equal(t, exp[i-1], g)
	}
}

func TestIndexAgainstAModel(t *testing.T) {
	all := keys(5 * chunkMax)
	for name, order := range map[string]func() []key{
		"ascending":  func() []key { return slices.Clone(all) },
		"descending": func() []key { s := slices.Clone(all); slices.Reverse(s); return s },
		"random": func() []key {
			s := slices.Clone(all)
			rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
			return s
		},
	} {
		t.Run(name, func(t *testing.T) {
			var x index
			want := make(map[key]bool)
			for i, k := range order() {
				x.add(k)
				want[k] = true
				// Take some keys out as others come in: the oldest, as a
				// queue does, and one at random.
				if i%3 == 2 {
					oldest := all[0]
					for _, a := range all {
						if want[a] {
							oldest = a
							break
						}
					}
					x.remove(oldest)
					delete(want, oldest)
				}
				if i%7 == 6 {
					r := all[rand.IntN(len(all))]
					x.remove(r)
					delete(want, r)
				}
				x.add(k) // a second add changes nothing
				want[k] = true
			}
			checkIndex(t, &x, want)
			for _, k := range all {
				x.remove(k)
				delete(want, k)
				if k.ns%97 == 0 {
					checkIndex(t, &x, want)
				}
			}
			checkIndex(t, &x, want)
			require.Empty(t, x.chunks)
		})
	}
}

// keySize is the size of a key: an int64 and a string header.
const keySize = 24.0

// bytesPerKeyAdded adds ks to x in their order and returns the bytes this
// allocated a key.
func bytesPerKeyAdded(x *index, ks []key) float64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, k := range ks {
		x.add(k)
	}
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / float64(len(ks))
}

// Keys that arrive in order, as records do, cost an index little more than
// their own size: a full last chunk stays full and a new one starts.
func TestIndexAddingInOrderAllocatesAboutTheKeys(t *testing.T) {
	var x index
	require.Less(t, bytesPerKeyAdded(&x, keys(100*chunkMax)), 1.5*keySize, "bytes allocated a key added in order")
	for _, c := range x.chunks[:len(x.chunks)-1] {
		require.Len(t, c, chunkMax)
	}
}

// Keys that arrive a little out of order, as finished records do (each
// finishes a few places from where it began), cost about their size too.
func TestIndexAddingNearlyInOrderAllocatesAboutTheKeys(t *testing.T) {
	ks := keys(100 * chunkMax)
	// Each finishes up to 200 places after it began, as with 100 requests
	// running at once.
	at := make(map[key]int, len(ks))
	for i, k := range ks {
		at[k] = i + rand.IntN(200)
	}
	slices.SortFunc(ks, func(a, b key) int { return at[a] - at[b] })
	var x index
	require.Less(t, bytesPerKeyAdded(&x, ks), 1.5*keySize, "bytes allocated a key added nearly in order")
	want := make(map[key]bool, len(ks))
	for _, k := range ks {
		want[k] = true
	}
	checkIndex(t, &x, want)
}

// An index that empties and fills again, as the index of the pending or
// running requests of a queue that keeps up does, allocates nothing.
func TestIndexEmptyingAndFillingAllocatesNothing(t *testing.T) {
	ks := keys(4)
	var x index
	x.add(ks[0])
	x.remove(ks[0])
	allocs := testing.AllocsPerRun(100, func() {
		for _, k := range ks {
			x.add(k)
		}
		for _, k := range ks {
			x.remove(k)
		}
	})
	require.Zero(t, allocs)
	require.Zero(t, x.n)
}
