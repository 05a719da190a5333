package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

func shortScale(bk string, t *testing.T) options {
	o := short("scale")
	o.retained = []int{0, 500}
	o.rounds = 2
	o.expired = 300
	o.fillConc = 8
	o.bk.Name = bk
	if bk == "sqlite" {
		o.bk.SQLitePath = filepath.Join(t.TempDir(), "scale.db")
	}
	return o
}

func TestScaleMode(t *testing.T) {
	for _, bk := range []string{"memory", "sqlite"} {
		t.Run(bk, func(t *testing.T) {
			require.NoError(t, run(t.Context(), shortScale(bk, t)))
		})
	}
}

func TestScaleStoreFillAndPurge(t *testing.T) {
	ctx := t.Context()
	o := shortScale("sqlite", t).forMode("scale")
	st, err := openScaleStore(ctx, o, "t", 200)
	require.NoError(t, err)
	defer st.close()
	require.Equal(t, 201, len(st.ids), "the template and the retained requests")
	for _, id := range st.ids {
		rec, err := st.b.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.StateSucceeded, rec.State)
		assert.True(t, rec.ExpiresAt.After(time.Now().Add(time.Hour)), "retained for the template's retention")
		assert.Equal(t, st.tmpl.Result.Body, rec.Result.Body)
	}
	pf, err := purgePhase(ctx, o, st)
	require.NoError(t, err)
	assert.False(t, pf.selfExpiring)
	assert.Equal(t, o.expired, pf.purged, "every expired request and none retained")
	assert.Positive(t, pf.without.n)
	for _, id := range st.ids {
		_, err := st.b.Get(ctx, id)
		require.NoError(t, err, "a retained request is not purged")
	}
	// The phase's accepts are settled, so that the next round's mixed
	// drain finds nothing queued before its own requests.
	counts, err := asyncreq.CountStates(ctx, st.b)
	require.NoError(t, err)
	assert.Zero(t, counts.Pending+counts.Running, "requests the purge phase accepted are left unfinished")
	assert.Positive(t, counts.Succeeded)
}

func TestParseCounts(t *testing.T) {
	got, err := parseCounts("0, 100k,1M,250")
	require.NoError(t, err)
	assert.Equal(t, []int{0, 100_000, 1_000_000, 250}, got)
	for _, bad := range []string{"x", "-1", "1G", "1.5M"} {
		_, err := parseCounts(bad)
		assert.Error(t, err, bad)
	}
}

func TestScaleOptionsChecked(t *testing.T) {
	o := shortScale("memory", t)
	o.retained = nil
	require.ErrorContains(t, run(context.Background(), o), "-retained")
	o = shortScale("memory", t)
	o.url = "http://127.0.0.1:1/"
	require.ErrorContains(t, run(context.Background(), o), "needs the server in this process")
}
