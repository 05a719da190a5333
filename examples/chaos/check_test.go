package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// TestCheckFindsFaults gives the checks requests with every fault they
// look for, behind a real Handler, and expects each to be counted.
func TestCheckFindsFaults(t *testing.T) {
	store := memory.New(nil)
	h, err := asyncreq.NewHandler(store, nil)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/jobs/", http.StripPrefix("/jobs", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	a := newAPI([]string{srv.URL + "/jobs"}, 1)
	defer a.close()
	ctx := t.Context()

	var (
		st   submitStats
		reqs = map[string]*request{}
		log  strings.Builder
	)
	submit := func(name string) *request {
		body := []byte("request " + name)
		id := a.submit(ctx, name, body, 0, &st)
		require.NotEmpty(t, id, name)
		r := &request{id: id, body: body, sum: sumOf(body)}
		reqs[name] = r
		return r
	}
	succeed := func(r *request, run, result string) {
		_, err := store.Update(ctx, r.id, func(rec *asyncreq.Record) error {
			rec.State, rec.UpdatedAt = asyncreq.StateSucceeded, time.Now()
			rec.Result = &asyncreq.Result{Header: http.Header{"Run-Id": {run}}, Body: []byte(result)}
			return nil
		})
		require.NoError(t, err)
	}
	ran := func(run, id, sum string) {
		fmt.Fprintf(&log, "start %s %s %s\ndone %s %s %s\n", run, id, sum, run, id, sum)
	}

	ok := submit("ok")
	ran("r1", ok.id, ok.sum)
	ran("r2", ok.id, ok.sum) // run twice, recorded once: fine
	succeed(ok, "r2", ok.sum)

	wrong := submit("wrong")
	ran("r3", wrong.id, wrong.sum)
	succeed(wrong, "r3", "not the hash")

	norun := submit("norun")
	succeed(norun, "r4", norun.sum) // a result no run returned

	submit("pending") // never run: lost

	rewritten := submit("rewritten")
	ran("r5", rewritten.id, rewritten.sum)
	ran("r6", rewritten.id, rewritten.sum)
	succeed(rewritten, "r5", rewritten.sum)

	twice := submit("twice")
	ran("r7", twice.id, twice.sum)
	ran("r8", asyncreq.NewID(), twice.sum) // the same body under another id
	succeed(twice, "r7", twice.sum)

	failed := submit("failed")
	_, err = store.Update(ctx, failed.id, func(rec *asyncreq.Record) error {
		rec.State, rec.Error = asyncreq.StateFailed, &asyncreq.Problem{Status: 500}
		return nil
	})
	require.NoError(t, err)

	unknown := &request{id: asyncreq.NewID(), body: []byte("unknown"), sum: sumOf([]byte("unknown"))}
	reqs["unknown"] = unknown

	all := make([]*request, 0, len(reqs))
	for _, r := range reqs {
		all = append(all, r)
	}
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	require.Equal(t, 2, drain(dctx, a, all), "the pending and the unknown request never finish")
	require.NotNil(t, rewritten.seen)
	succeed(rewritten, "r6", rewritten.sum) // written again after it was seen

	path := filepath.Join(t.TempDir(), "runs.log")
	require.NoError(t, os.WriteFile(path, []byte(log.String()), 0o644))
	rep := &Report{Submit: st}
	require.NoError(t, verify(ctx, a, all, path, rep))
	t.Log(rep)
	require.False(t, rep.OK())
	require.Equal(t, 1, rep.Succeeded, "ok")
	require.Equal(t, 2, rep.Wrong, "wrong, norun")
	require.Equal(t, 2, rep.Lost, "pending, unknown")
	require.Equal(t, 2, rep.Doubled, "rewritten, twice")
	require.Equal(t, 1, rep.Failed, "failed")
	require.Equal(t, 7, rep.RunsStarted)
	require.Equal(t, 7, rep.RunsFinished)
	require.Equal(t, 2, rep.StartedTwice, "ok, rewritten")
}

func TestParseRunLogRejectsGarbage(t *testing.T) {
	_, _, err := parseRunLog(strings.NewReader("start r1 id sum\nhalf a line"))
	require.ErrorContains(t, err, "line 2")
}
