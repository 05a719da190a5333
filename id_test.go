package asyncreq

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewIDIsTimeSortable(t *testing.T) {
	start := time.UnixMilli(1_800_000_000_000)
	var made []string
	for i := range 200 {
		made = append(made, newIDAt(start.Add(time.Duration(i)*time.Millisecond)))
	}
	require.True(t, slices.IsSorted(made), "ids made later sort after those made earlier")
	for i, id := range made {
		require.Len(t, id, IDLen)
		require.True(t, ValidID(id), id)
		at, ok := IDTime(id)
		require.True(t, ok)
		require.True(t, at.Equal(start.Add(time.Duration(i)*time.Millisecond)), "IDTime(%s) = %v", id, at)
	}
}

// TestNewIDKeepsRandomBits checks that the 20 characters after the time
// prefix are random: over many ids each of their 100 bits is set about
// half the time, and no two ids made in one millisecond are equal.
func TestNewIDKeepsRandomBits(t *testing.T) {
	at := time.UnixMilli(1_800_000_000_000)
	const n = 4000
	var ones [100]int
	seen := make(map[string]bool, n)
	for range n {
		id := newIDAt(at)
		require.False(t, seen[id], "duplicate id")
		seen[id] = true
		for i, c := range id[idTimeLen:] {
			v := strings.IndexRune(idAlphabet, c)
			for b := range 5 {
				ones[i*5+b] += (v >> (4 - b)) & 1
			}
		}
	}
	for i, c := range ones {
		require.InDelta(t, n/2, c, n/8, "random bit %d was set %d times in %d ids", i, c, n)
	}
	require.GreaterOrEqual(t, (IDLen-idTimeLen)*5, 96, "an id keeps at least 96 random bits")
}

func TestValidIDAcceptsBothForms(t *testing.T) {
	legacy := "01ARZ3NDEKTSV4RRFFQ69G5FAV"
	require.True(t, ValidID(legacy), "ids made before they carried a time stay valid")
	_, ok := IDTime(legacy)
	require.False(t, ok, "a legacy id carries no time")
	require.True(t, ValidID(NewID()))
	for _, bad := range []string{"", "01ARZ3NDEKTSV4RRFFQ69G5FA", strings.Repeat("0", 29), strings.Repeat("0", 31),
		"8" + strings.Repeat("0", 29), strings.Repeat("0", 29) + "U", strings.Repeat("0", 25) + "i"} {
		require.False(t, ValidID(bad), "%q", bad)
	}
}
