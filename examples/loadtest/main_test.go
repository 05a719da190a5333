package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/examples/internal/backend"
	"github.com/asyncreq/asyncreq/memory"
)

func TestMain(m *testing.M) {
	// The test binary is the bare server of the -url runs' tests.
	serveBareIfAsked()
	goleak.VerifyTestMain(m)
}

// short are options for runs of a second or two.
func short(mode string) options {
	return options{
		mode:         mode,
		concurrency:  4,
		duration:     100 * time.Millisecond,
		n:            300,
		pollers:      2,
		pollInterval: time.Millisecond,
		bk:           backend.Config{Name: "memory"},
	}
}

func TestModesInProcess(t *testing.T) {
	for _, mode := range []string{"all", "mixed", "poll-e2e"} {
		t.Run(mode, func(t *testing.T) {
			require.NoError(t, run(t.Context(), short(mode)))
		})
	}
}

// server serves asyncreq's handler at /jobs, as another process would,
// with a worker on the memory backend running p, and returns its URL.
func server(t *testing.T, p asyncreq.ProcessorFunc) string {
	t.Helper()
	b := memory.New(nil)
	t.Cleanup(func() { _ = b.Close() })
	h, err := asyncreq.NewHandler(b, nil)
	require.NoError(t, err)
	w, err := asyncreq.NewWorker(b, p, &asyncreq.WorkerOptions{Concurrency: 8})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, w.Stop(ctx))
	})
	mux := http.NewServeMux()
	mux.Handle("/jobs", http.StripPrefix("/jobs", h))
	mux.Handle("/jobs/", http.StripPrefix("/jobs", h))
	mux.Handle("GET /metrics", processMetrics())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/jobs"
}

func TestModesAtURL(t *testing.T) {
	// Slow enough that the pollers find requests not yet done.
	u := server(t, func(ctx context.Context, _ *asyncreq.Request) (*asyncreq.Result, error) {
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return nil, err
		}
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")}, nil
	})
	// accept last: its warm-up and run leave thousands of requests queued
	// (about a second's worth of accepts), which the worker takes about
	// ten seconds to run, longer than e2e's Prefer: wait.
	for _, mode := range []string{"e2e", "mixed", "poll-e2e", "accept"} {
		t.Run(mode, func(t *testing.T) {
			o := short(mode)
			o.url = u
			require.NoError(t, run(t.Context(), o))
		})
	}
	for _, mode := range []string{"all", "drain"} {
		t.Run(mode, func(t *testing.T) {
			o := short(mode)
			o.url = u
			require.ErrorContains(t, run(t.Context(), o), "needs the server in this process")
		})
	}
}

func TestBareInAnotherProcess(t *testing.T) {
	ctx := t.Context()
	p, err := startBare(ctx, "127.0.0.1:0")
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = p.stop()
		}
	})
	pid := p.cmd.Process.Pid
	assert.NotEqual(t, os.Getpid(), pid, "served by another process")

	c := newClient(1)
	defer c.CloseIdleConnections()
	resp, _, err := post(ctx, c, p.url, nil, http.StatusAccepted)
	require.NoError(t, err)
	loc, err := resp.Location()
	require.NoError(t, err)
	assert.Regexp(t, `^/jobs/[^/]+/status$`, loc.Path)
	o := short("accept")
	o.duration = 200 * time.Millisecond
	m, err := newCPUMeter(p.url)
	require.NoError(t, err)
	st, err := postAt(ctx, o, p.url, m, nil, http.StatusAccepted)
	require.NoError(t, err)
	assert.Positive(t, st.n)
	if runtime.GOOS == "linux" {
		// Its /metrics gives its CPU time, which the load spent.
		assert.Positive(t, st.cpuPer(), "the bare server's CPU time per request")
		assert.Contains(t, st.String(), "server CPU ")
	}
	c.CloseIdleConnections()

	stopped = true
	require.NoError(t, p.stop())
	require.NotNil(t, p.cmd.ProcessState, "waited for")
	proc, err := os.FindProcess(pid)
	if err == nil {
		assert.ErrorIs(t, proc.Signal(syscall.Signal(0)), os.ErrProcessDone, "no process left")
	}
	_, _, err = post(ctx, c, p.url, nil, http.StatusAccepted)
	assert.Error(t, err, "nothing serves its URL any more")
}

func TestBareServerThatFailsToStart(t *testing.T) {
	// The child writes why to the test's standard error, and exits.
	_, err := startBare(t.Context(), "not an address")
	require.ErrorContains(t, err, "start the bare server")
}

func TestBareServerEndsWithItsInput(t *testing.T) {
	in, closeIn := io.Pipe()
	out, writeOut := io.Pipe()
	served := make(chan error, 1)
	go func() { served <- serveBare("127.0.0.1:0", in, writeOut) }()
	u, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	c := newClient(1)
	defer c.CloseIdleConnections()
	_, _, err = post(t.Context(), c, strings.TrimSpace(u), nil, http.StatusAccepted)
	require.NoError(t, err)
	require.NoError(t, closeIn.Close())
	require.NoError(t, <-served)
}

func TestVsComparesServerCPU(t *testing.T) {
	bare := baseline{stats: stats{n: 100, elapsed: time.Second, lat: []time.Duration{time.Millisecond}, cpu: 3 * time.Millisecond}, name: "bare (another process)"}
	st := stats{n: 50, elapsed: time.Second, lat: []time.Duration{time.Millisecond}, cpu: 3 * time.Millisecond}
	assert.Equal(t, 60*time.Microsecond, st.cpuPer())
	assert.Contains(t, st.String(), "server CPU 60µs a request")
	assert.True(t, strings.HasSuffix(st.vs(bare), ", server CPU 2.0"), st.vs(bare))

	unknown := stats{n: 50, elapsed: time.Second, lat: []time.Duration{time.Millisecond}}
	assert.Zero(t, unknown.cpuPer())
	assert.NotContains(t, unknown.String(), "CPU")
	assert.NotContains(t, unknown.vs(bare), "CPU", "no ratio without the server's figure")
	assert.NotContains(t, st.vs(baseline{stats: unknown, name: "bare"}), "CPU", "no ratio without the bare's figure")
}

func TestVsNamesTheBare(t *testing.T) {
	st := stats{n: 10, elapsed: time.Second, lat: []time.Duration{time.Millisecond}}
	assert.True(t, strings.HasPrefix(st.vs(baseline{stats: st, name: "bare (another process)"}), "× bare (another process): rate 1.00"))
	assert.True(t, strings.HasPrefix(st.vs(baseline{stats: st, name: "bare"}), "× bare: rate 1.00"))
}

func TestMixedMetersTheServer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the process collector's CPU time is read from /proc")
	}
	u := server(t, func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")}, nil
	})
	o := short("mixed")
	o.url = u
	o.n = 2000
	fig, err := mixed(t.Context(), o, baseline{stats: stats{n: 1, elapsed: time.Second}, name: "bare"})
	require.NoError(t, err)
	assert.Positive(t, fig.cpu, "the server's CPU time over the phase")
}

func TestMixedFailedRequestIsAnError(t *testing.T) {
	u := server(t, func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		return nil, asyncreq.Permanent(errors.New("no"), http.StatusUnprocessableEntity)
	})
	o := short("mixed")
	o.url = u
	require.ErrorContains(t, run(t.Context(), o), `the request is "failed"`)
}

func TestPollStatus(t *testing.T) {
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	answer := func(status int, loc, doc string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if loc != "" {
				w.Header().Set("Location", loc)
			}
			w.WriteHeader(status)
			_, _ = w.Write([]byte(doc))
		}
	}
	for _, tc := range []struct {
		name   string
		h      http.HandlerFunc
		done   bool
		result string
		err    string
		// created and finished are the times the document gave.
		created, finished time.Time
	}{
		{name: "succeeded", h: answer(http.StatusSeeOther, "/jobs/X", `{"status":"succeeded"}`), done: true, result: "/jobs/X"},
		{
			name: "succeeded, with times", done: true, result: "/jobs/X", created: at, finished: at.Add(time.Second),
			h: answer(http.StatusSeeOther, "/jobs/X", `{"status":"succeeded","created_at":"2026-12-05T10:00:00Z","updated_at":"2026-12-05T10:00:01Z"}`),
		},
		{name: "pending, with its time", h: answer(http.StatusOK, "", `{"status":"pending","created_at":"2026-12-05T10:00:00Z"}`), created: at},
		{name: "pending", h: answer(http.StatusOK, "", `{"status":"pending"}`)},
		{name: "running", h: answer(http.StatusOK, "", `{"status":"running"}`)},
		{name: "pending as 202", h: answer(http.StatusAccepted, "/jobs/X/status", `{"status":"pending"}`)},
		{name: "failed", h: answer(http.StatusOK, "", `{"status":"failed"}`), err: `the request is "failed"`},
		{name: "303 without Location", h: answer(http.StatusSeeOther, "", ""), err: "303 without a result URL"},
		{name: "not a status document", h: answer(http.StatusOK, "", `<html>`), err: "status document"},
		{name: "not found", h: answer(http.StatusNotFound, "", ""), err: "answered 404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			c := newClient(1)
			defer c.CloseIdleConnections()
			u, err := url.Parse(srv.URL + "/jobs/X/status")
			require.NoError(t, err)
			p, err := pollStatus(t.Context(), c, u)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.done, p.done)
			if tc.result != "" {
				assert.Equal(t, srv.URL+tc.result, p.result.String())
			}
			assert.Equal(t, tc.created, p.created)
			assert.Equal(t, tc.finished, p.finished)
		})
	}
}

func TestForMode(t *testing.T) {
	o := short("")
	o.n, o.workers = 0, 0
	for _, tc := range []struct {
		mode     string
		workers  int
		n        int
		defaults bool
	}{
		{"accept", 32, 20000, false},
		{"drain", 32, 20000, false},
		{"e2e", 32, 20000, false},
		{"mixed", 100, 10000, true},
		{"poll-e2e", 100, 20000, true},
	} {
		m := o.forMode(tc.mode)
		assert.Equal(t, tc.workers, m.workers, tc.mode)
		assert.Equal(t, tc.workers, m.bk.Concurrency, tc.mode)
		assert.Equal(t, tc.n, m.n, tc.mode)
		assert.Equal(t, tc.defaults, m.bk.Defaults, tc.mode)
	}
	off, on := false, true
	o.defaults = &off
	assert.False(t, o.forMode("mixed").bk.Defaults, "-defaults=false")
	o.defaults = &on
	assert.True(t, o.forMode("drain").bk.Defaults, "-defaults")
	o.workers, o.n = 7, 9
	assert.Equal(t, 7, o.forMode("mixed").workers, "-workers")
	assert.Equal(t, 9, o.forMode("mixed").n, "-n")
}
