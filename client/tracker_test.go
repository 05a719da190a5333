package client

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jobServer is a hand-made asynchronous server: jobs stay running until
// finished by the test.
type jobServer struct {
	mu       sync.Mutex
	next     int
	finished map[string]bool
	failed   map[string]bool

	inFlight    atomic.Int32
	maxInFlight atomic.Int32
	statusCalls atomic.Int32
	slow        time.Duration
}

func newJobServer() *jobServer {
	return &jobServer{finished: make(map[string]bool), failed: make(map[string]bool)}
}

func (s *jobServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodPost && len(parts) == 1 && parts[0] == "jobs":
		s.mu.Lock()
		s.next++
		id := fmt.Sprintf("job%d", s.next)
		s.mu.Unlock()
		w.Header().Set("Location", "/jobs/"+id+"/status")
		writeJSON(w, http.StatusAccepted, `{"id":"`+id+`","status":"pending"}`)
	case r.Method == http.MethodGet && len(parts) == 3 && parts[2] == "status":
		s.statusCalls.Add(1)
		n := s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		for {
			m := s.maxInFlight.Load()
			if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		if s.slow > 0 {
			select {
			case <-time.After(s.slow):
			case <-r.Context().Done():
				return
			}
		}
		id := parts[1]
		s.mu.Lock()
		done, failed := s.finished[id], s.failed[id]
		s.mu.Unlock()
		switch {
		case id == "missing":
			http.NotFound(w, r)
		case failed:
			writeJSON(w, http.StatusOK, `{"id":"`+id+`","status":"failed","error":{"title":"Bad","status":422}}`)
		case done:
			w.Header().Set("Location", "/jobs/"+id)
			writeJSON(w, http.StatusSeeOther, `{"id":"`+id+`","status":"succeeded"}`)
		default:
			writeJSON(w, http.StatusOK, `{"id":"`+id+`","status":"running"}`)
		}
	case r.Method == http.MethodGet && len(parts) == 2:
		_, _ = io.WriteString(w, "result-"+parts[1])
	default:
		http.NotFound(w, r)
	}
}

func (s *jobServer) finish(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.finished[id] = true
	}
}

func (s *jobServer) finishAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 1; i <= s.next; i++ {
		s.finished[fmt.Sprintf("job%d", i)] = true
	}
}

// collector gathers deliveries from OnDone.
type collector struct {
	mu  sync.Mutex
	got []Delivery
	ch  chan struct{}
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1000)} }

func (c *collector) onDone(d Delivery) {
	c.mu.Lock()
	c.got = append(c.got, d)
	c.mu.Unlock()
	c.ch <- struct{}{}
}

func (c *collector) wait(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-c.ch:
		case <-timeout:
			require.FailNow(t, "deliveries did not arrive", "want %d", n)
		}
	}
}

func (c *collector) keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, d := range c.got {
		out = append(out, d.Key)
	}
	sort.Strings(out)
	return out
}

func stopTracker(t *testing.T, tr *Tracker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, tr.Stop(ctx))
}

func TestTrackerChannel(t *testing.T) {
	js := newJobServer()
	srv := newServer(t, js)
	c := newTestClient(t, nil)
	tr, err := NewTracker(c, nil)
	require.NoError(t, err)
	require.NoError(t, tr.Start(t.Context()))
	defer stopTracker(t, tr)
	require.ErrorIs(t, tr.Start(t.Context()), ErrTrackerStarted)

	var keys []string
	for range 5 {
		op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/jobs", nil, nil)
		require.NoError(t, err)
		k, err := tr.Track(t.Context(), op)
		require.NoError(t, err)
		keys = append(keys, k)
		k2, err := tr.Track(t.Context(), op)
		require.NoError(t, err)
		assert.Equal(t, k, k2, "tracking twice is one tracking")
	}
	assert.Equal(t, 5, tr.Pending())
	js.finish("job2", "job4")
	got := map[string]string{}
	for range 2 {
		select {
		case d := <-tr.Results():
			require.NoError(t, d.Err)
			got[d.Key] = string(d.Result.Body)
		case <-time.After(10 * time.Second):
			require.FailNow(t, "no delivery")
		}
	}
	assert.Equal(t, map[string]string{"job2": "result-job2", "job4": "result-job4"}, got)
	js.finishAll()
	for range 3 {
		select {
		case d := <-tr.Results():
			require.NoError(t, d.Err)
			got[d.Key] = string(d.Result.Body)
		case <-time.After(10 * time.Second):
			require.FailNow(t, "no delivery")
		}
	}
	assert.Len(t, got, 5)
	for _, k := range keys {
		assert.Equal(t, "result-"+k, got[k])
	}
	require.Eventually(t, func() bool { return tr.Pending() == 0 }, 10*time.Second, time.Millisecond,
		"delivered operations are forgotten")
}

func TestTrackerBoundedConcurrency(t *testing.T) {
	js := newJobServer()
	js.slow = 5 * time.Millisecond
	srv := newServer(t, js)
	c := newTestClient(t, nil)
	col := newCollector()
	tr, err := NewTracker(c, &TrackerOptions{Concurrency: 2, OnDone: col.onDone})
	require.NoError(t, err)
	assert.Nil(t, tr.Results())
	for range 8 {
		op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/jobs", nil, nil)
		require.NoError(t, err)
		_, err = tr.Track(t.Context(), op) // before Start
		require.NoError(t, err)
	}
	require.NoError(t, tr.Start(t.Context()))
	defer stopTracker(t, tr)
	require.Eventually(t, func() bool { return js.statusCalls.Load() >= 16 }, 10*time.Second, time.Millisecond)
	js.finishAll()
	col.wait(t, 8)
	assert.LessOrEqual(t, js.maxInFlight.Load(), int32(2))
	assert.Len(t, col.keys(), 8)
}

func TestTrackerErrors(t *testing.T) {
	js := newJobServer()
	srv := newServer(t, js)
	c := newTestClient(t, nil)
	store := NewMemoryTrackerStore()
	col := newCollector()
	// A token in the store that cannot be resumed is delivered with its error.
	require.NoError(t, store.Put(t.Context(), TrackedOperation{Key: "bad", Token: "garbage"}))
	tr, err := NewTracker(c, &TrackerOptions{Store: store, OnDone: col.onDone})
	require.NoError(t, err)

	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/jobs", nil, nil)
	require.NoError(t, err)
	js.mu.Lock()
	js.failed["job1"] = true
	js.mu.Unlock()
	missing, err := c.Resume(mustToken(t, srv.URL+"/jobs/missing/status"))
	require.NoError(t, err)

	require.NoError(t, tr.Start(t.Context()))
	defer stopTracker(t, tr)
	_, err = tr.Track(t.Context(), op)
	require.NoError(t, err)
	_, err = tr.Track(t.Context(), missing)
	require.NoError(t, err)
	col.wait(t, 3)

	col.mu.Lock()
	defer col.mu.Unlock()
	byKey := map[string]Delivery{}
	for _, d := range col.got {
		byKey[d.Key] = d
	}
	var te *TokenError
	assert.ErrorAs(t, byKey["bad"].Err, &te)
	var oe *OperationError
	assert.ErrorAs(t, byKey["job1"].Err, &oe)
	assert.ErrorIs(t, byKey[srv.URL+"/jobs/missing/status"].Err, asyncreq.ErrNotFound)
	require.Eventually(t, func() bool {
		list, err := store.List(t.Context())
		return err == nil && len(list) == 0
	}, 10*time.Second, time.Millisecond, "delivered operations are forgotten")
}

// mustToken makes a token for a status URL.
func mustToken(t *testing.T, statusURL string) string {
	t.Helper()
	c := newTestClient(t, nil)
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", statusURL)
		w.WriteHeader(http.StatusAccepted)
	}))
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL, nil, nil)
	require.NoError(t, err)
	op.origin = originOf(op.statusURL)
	tok, err := op.ResumeToken()
	require.NoError(t, err)
	return tok
}

func TestTrackerInlineOperation(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "now")
	}))
	c := newTestClient(t, nil)
	col := newCollector()
	store := NewMemoryTrackerStore()
	tr, err := NewTracker(c, &TrackerOptions{OnDone: col.onDone, Store: store})
	require.NoError(t, err)
	require.NoError(t, tr.Start(t.Context()))
	defer stopTracker(t, tr)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL, nil, nil)
	require.NoError(t, err)
	_, err = tr.Track(t.Context(), op)
	require.NoError(t, err)
	col.wait(t, 1)
	col.mu.Lock()
	assert.Equal(t, "now", string(col.got[0].Result.Body))
	col.mu.Unlock()
	list, err := store.List(t.Context())
	require.NoError(t, err)
	assert.Empty(t, list, "an inline operation is never stored")
}

// TestTrackerRestartFileTrackerStore: a tracker is stopped with operations
// pending; a new tracker over the same file picks them up, and every
// operation is delivered exactly once across the two.
func TestTrackerRestartFileTrackerStore(t *testing.T) {
	js := newJobServer()
	srv := newServer(t, js)
	path := filepath.Join(t.TempDir(), "tracked.json")
	c := newTestClient(t, nil)

	store1, err := OpenFileTrackerStore(path)
	require.NoError(t, err)
	col1 := newCollector()
	tr1, err := NewTracker(c, &TrackerOptions{Store: store1, OnDone: col1.onDone, Concurrency: 3})
	require.NoError(t, err)
	require.NoError(t, tr1.Start(t.Context()))
	const n = 12
	for range n {
		op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/jobs", nil, nil)
		require.NoError(t, err)
		_, err = tr1.Track(t.Context(), op)
		require.NoError(t, err)
	}
	js.finish("job1", "job2", "job3")
	col1.wait(t, 3)
	stopTracker(t, tr1)
	stopTracker(t, tr1) // idempotent

	extra, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/jobs", nil, nil)
	require.NoError(t, err)
	_, err = tr1.Track(t.Context(), extra)
	require.ErrorIs(t, err, ErrTrackerStopped)
	require.ErrorIs(t, tr1.Start(t.Context()), ErrTrackerStopped)

	// What the first tracker left is on disk.
	reopened, err := OpenFileTrackerStore(path)
	require.NoError(t, err)
	left, err := reopened.List(t.Context())
	require.NoError(t, err)
	assert.Len(t, left, n-3)

	// The requests finish while no tracker runs; a new one, in effect in
	// another process (new client, new store value), picks them up.
	js.finishAll()
	c2 := newTestClient(t, nil)
	col2 := newCollector()
	tr2, err := NewTracker(c2, &TrackerOptions{Store: reopened, OnDone: col2.onDone, Concurrency: 3})
	require.NoError(t, err)
	require.NoError(t, tr2.Start(t.Context()))
	col2.wait(t, n-3)
	stopTracker(t, tr2)

	all := append(col1.keys(), col2.keys()...)
	sort.Strings(all)
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("job%d", i))
	}
	sort.Strings(want)
	assert.Equal(t, want, all, "every operation delivered exactly once")
	col2.mu.Lock()
	for _, d := range col2.got {
		assert.NoError(t, d.Err)
		assert.Equal(t, "result-"+d.Key, string(d.Result.Body))
	}
	col2.mu.Unlock()

	final, err := OpenFileTrackerStore(path)
	require.NoError(t, err)
	left, err = final.List(t.Context())
	require.NoError(t, err)
	assert.Empty(t, left)
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary files left behind")
}

// TestTrackerStopWhileDelivering: a delivery nobody receives is not lost
// when the tracker stops; the next tracker delivers it.
func TestTrackerStopWhileDelivering(t *testing.T) {
	js := newJobServer()
	srv := newServer(t, js)
	store := NewMemoryTrackerStore()
	c := newTestClient(t, nil)
	tr, err := NewTracker(c, &TrackerOptions{Store: store})
	require.NoError(t, err)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/jobs", nil, nil)
	require.NoError(t, err)
	_, err = tr.Track(t.Context(), op)
	require.NoError(t, err)
	js.finishAll()
	require.NoError(t, tr.Start(t.Context()))
	// Let the tracker reach the point of delivering, and receive nothing.
	require.Eventually(t, func() bool { return js.statusCalls.Load() >= 1 }, 10*time.Second, time.Millisecond)
	stopTracker(t, tr)

	tr2, err := NewTracker(c, &TrackerOptions{Store: store})
	require.NoError(t, err)
	require.NoError(t, tr2.Start(t.Context()))
	defer stopTracker(t, tr2)
	select {
	case d := <-tr2.Results():
		require.NoError(t, d.Err)
		assert.Equal(t, "job1", d.Key)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "not delivered after restart")
	}
}

func TestFileTrackerStore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.json")
	s, err := OpenFileTrackerStore(path)
	require.NoError(t, err)
	require.NoError(t, s.Put(t.Context(), TrackedOperation{Key: "b", Token: "tb"}))
	require.NoError(t, s.Put(t.Context(), TrackedOperation{Key: "a", Token: "ta"}))
	require.NoError(t, s.Put(t.Context(), TrackedOperation{Key: "a", Token: "ta2"}))
	require.NoError(t, s.Delete(t.Context(), "nope"))

	s2, err := OpenFileTrackerStore(path)
	require.NoError(t, err)
	list, err := s2.List(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []TrackedOperation{{"a", "ta2"}, {"b", "tb"}}, list)
	require.NoError(t, s2.Delete(t.Context(), "a"))
	s3, err := OpenFileTrackerStore(path)
	require.NoError(t, err)
	list, err = s3.List(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []TrackedOperation{{"b", "tb"}}, list)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.Equal(t, context.Canceled, s3.Put(ctx, TrackedOperation{Key: "c"}))

	require.NoError(t, os.WriteFile(path, []byte("{not json"), 0o600))
	_, err = OpenFileTrackerStore(path)
	require.Error(t, err)
	require.NoError(t, os.WriteFile(path, []byte(`{"version":7}`), 0o600))
	_, err = OpenFileTrackerStore(path)
	require.Error(t, err)
	_, err = OpenFileTrackerStore("")
	require.Error(t, err)

	// A store in a directory that is gone reports the write error.
	gone, err := OpenFileTrackerStore(filepath.Join(dir, "missing", "s.json"))
	require.NoError(t, err)
	require.Error(t, gone.Put(t.Context(), TrackedOperation{Key: "x", Token: "y"}))
}

func TestNewTrackerValidates(t *testing.T) {
	_, err := NewTracker(nil, nil)
	require.Error(t, err)
	c := newTestClient(t, nil)
	_, err = NewTracker(c, &TrackerOptions{Concurrency: -1})
	require.ErrorContains(t, err, "Concurrency")
	tr, err := NewTracker(c, nil)
	require.NoError(t, err)
	require.NoError(t, tr.Stop(t.Context()), "Stop before Start")
}

// childEnv names the environment variables that turn
// TestTrackerChildProcess into the tracking process of
// TestTrackerKilledAndRestarted.
const (
	childEnvServer = "ASYNCREQ_CLIENT_TEST_CHILD_SERVER"
	childEnvStore  = "ASYNCREQ_CLIENT_TEST_CHILD_STORE"
)

// TestTrackerChildProcess is not a test of its own: run by
// TestTrackerKilledAndRestarted in a child process, it submits and tracks
// requests, says "ready", and waits to be killed.
func TestTrackerChildProcess(t *testing.T) {
	serverURL, storePath := os.Getenv(childEnvServer), os.Getenv(childEnvStore)
	if serverURL == "" || storePath == "" {
		t.Skip("runs only as the child process of TestTrackerKilledAndRestarted")
	}
	c := newTestClient(t, nil)
	store, err := OpenFileTrackerStore(storePath)
	require.NoError(t, err)
	tr, err := NewTracker(c, &TrackerOptions{Store: store, OnDone: func(d Delivery) {
		fmt.Printf("delivered %s\n", d.Key)
	}})
	require.NoError(t, err)
	require.NoError(t, tr.Start(t.Context()))
	for range 6 {
		op, err := c.Submit(t.Context(), http.MethodPost, serverURL+"/jobs", nil, nil)
		require.NoError(t, err)
		_, err = tr.Track(t.Context(), op)
		require.NoError(t, err)
	}
	fmt.Println("ready")
	select {} // until killed
}

// TestTrackerKilledAndRestarted: the process tracking requests is killed
// (no Stop, no cleanup); a tracker started afterwards over the same file
// delivers every request exactly once.
func TestTrackerKilledAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	js := newJobServer()
	srv := newServer(t, js)
	path := filepath.Join(t.TempDir(), "tracked.json")

	cmd := exec.Command(os.Args[0], "-test.run=^TestTrackerChildProcess$", "-test.v")
	cmd.Env = append(os.Environ(), childEnvServer+"="+srv.URL, childEnvStore+"="+path)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := bufio.NewScanner(stdout)
	ready := false
	var early []string
	for lines.Scan() {
		line := lines.Text()
		if k, ok := strings.CutPrefix(line, "delivered "); ok {
			early = append(early, k)
		}
		if line == "ready" {
			ready = true
			break
		}
	}
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	require.True(t, ready, "the child process did not get ready")
	require.Empty(t, early, "nothing was finished before the kill")

	js.finishAll()
	store, err := OpenFileTrackerStore(path)
	require.NoError(t, err)
	col := newCollector()
	tr, err := NewTracker(newTestClient(t, nil), &TrackerOptions{Store: store, OnDone: col.onDone})
	require.NoError(t, err)
	require.NoError(t, tr.Start(t.Context()))
	col.wait(t, 6)
	stopTracker(t, tr)
	assert.Equal(t, []string{"job1", "job2", "job3", "job4", "job5", "job6"}, col.keys())
	left, err := store.List(t.Context())
	require.NoError(t, err)
	assert.Empty(t, left)
}
