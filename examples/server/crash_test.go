//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// TestCrashRecoverySQLite starts the example server on SQLite, submits
// requests, kills it with SIGKILL while it is processing them, restarts it
// on the same database file, and checks that every accepted request
// completes once, with its own report.
//
// The leases held by the killed process last the worker's lease duration
// (30s), so the test takes about that long.
func TestCrashRecoverySQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server twice, waiting out a lease (~40s)")
	}
	const (
		n        = 50
		workTime = 2 * time.Second
	)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	dir := t.TempDir()
	bin := buildServer(t, ctx, dir)
	dbPath := filepath.Join(dir, "crash.db")

	// First run: accept n requests, let some finish and some start, kill.
	srv := startServer(t, ctx, bin, dbPath, workTime)
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	type job struct {
		key  string
		body []byte
		id   string
	}
	jobs := make([]*job, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range jobs {
		jobs[i] = &job{
			key:  fmt.Sprintf("crash-%d", i),
			body: fmt.Appendf(nil, "document %d\n%s\nthe end\n", i, strings.Repeat(fmt.Sprintf("word%d ", i), i+1)),
		}
		wg.Go(func() {
			id, err := submit(ctx, client, srv.url, jobs[i].key, jobs[i].body)
			jobs[i].id = id
			if err != nil {
				errs <- fmt.Errorf("job %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	ids := map[string]int{}
	for i, j := range jobs {
		require.True(t, asyncreq.ValidID(j.id), "job %d: id %q", i, j.id)
		_, dup := ids[j.id]
		require.False(t, dup, "job %d got the id of job %d", i, ids[j.id])
		ids[j.id] = i
	}

	// Wait for the first requests to finish: the worker has then just
	// started on the next ones.
	var before map[asyncreq.State]int
	waitFor(t, ctx, 30*time.Second, func() bool {
		before = map[asyncreq.State]int{}
		for _, j := range jobs {
			doc, _, err := status(ctx, client, srv.url, j.id)
			require.NoError(t, err)
			before[doc.Status]++
		}
		return before[asyncreq.StateSucceeded] > 0
	}, "some requests succeeded")
	require.Less(t, before[asyncreq.StateSucceeded], n, "every request finished before the kill")
	// The first requests the worker took all started together and finish
	// together; the next ones start as they finish. Kill halfway through
	// those, so that the kill lands while requests are running.
	time.Sleep(workTime / 2)
	srv.kill(t)
	t.Logf("killed with %v", before)

	// Second run on the same file.
	srv = startServer(t, ctx, bin, dbPath, workTime)
	defer srv.stop(t)

	// A client that never saw its answer retries with the same key and
	// body, and gets the same request, not a second one.
	for _, j := range jobs[:10] {
		id, err := submit(ctx, client, srv.url, j.key, j.body)
		require.NoError(t, err)
		require.Equal(t, j.id, id, "a retried submission must answer with the first request")
	}

	// Every accepted request completes, once, with its own report.
	attempts := map[int]int{}
	pending := map[string]*job{}
	for _, j := range jobs {
		pending[j.id] = j
	}
	waitFor(t, ctx, 90*time.Second, func() bool {
		for id, j := range pending {
			doc, code, err := status(ctx, client, srv.url, id)
			require.NoError(t, err)
			require.Equal(t, id, doc.ID)
			require.NotContains(t, []asyncreq.State{asyncreq.StateFailed, asyncreq.StateCanceled}, doc.Status,
				"request %s: %+v", id, doc.Error)
			if doc.Status != asyncreq.StateSucceeded {
				continue
			}
			require.Equal(t, http.StatusSeeOther, code)
			require.LessOrEqual(t, doc.Attempts, 2, "request %s ran more than once after one crash", id)
			checkReport(t, ctx, client, srv.url, id, j.body)
			attempts[doc.Attempts]++
			delete(pending, id)
		}
		return len(pending) == 0
	}, "every accepted request succeeded")
	t.Logf("requests by attempts: %v", attempts)
	require.Positive(t, attempts[2], "no request was interrupted by the kill; the test proved nothing")
}

// TestShutdownEndsLongPolls starts the example server on SQLite with all
// its processing slots busy and one more request waiting, opens a long
// poll on the waiting one, and sends SIGTERM: the poll answers at once
// instead of holding the shutdown for up to 30s, the running requests
// finish, the server exits cleanly within its budget, and after a restart
// every accepted request completes.
func TestShutdownEndsLongPolls(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server twice, waiting for requests of 8s (~25s)")
	}
	const (
		concurrency = 8               // the server's default -concurrency
		n           = concurrency + 1 // one more than the worker runs at once
		workTime    = 8 * time.Second
		// budget is what the server may take after SIGTERM: its HTTP
		// drain, ended early, and the wait for its running requests.
		budget = httpShutdownBudget + workerStopBudget
	)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildServer(t, ctx, dir)
	dbPath := filepath.Join(dir, "shutdown.db")

	srv := startServer(t, ctx, bin, dbPath, workTime)
	client := &http.Client{
		Timeout:       time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	bodies := map[string][]byte{}
	var last string
	for i := range n {
		body := fmt.Appendf(nil, "document %d\nof the shutdown test\n", i)
		id, err := submit(ctx, client, srv.url, fmt.Sprintf("shutdown-%d", i), body)
		require.NoError(t, err)
		bodies[id], last = body, id
	}
	// Every slot is busy once the first n-1 run; the last one waits.
	waitFor(t, ctx, 10*time.Second, func() bool {
		running := 0
		for id := range bodies {
			doc, _, err := status(ctx, client, srv.url, id)
			require.NoError(t, err)
			if doc.Status == asyncreq.StateRunning {
				running++
			}
		}
		return running == concurrency
	}, "the worker runs as many requests as it can")
	doc, _, err := status(ctx, client, srv.url, last)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StatePending, doc.Status)

	// A long poll on the waiting request: it would last until the request
	// changes, after the running ones finish.
	type answer struct {
		code int
		doc  asyncreq.StatusDocument
		at   time.Time
		err  error
	}
	polled := make(chan answer, 1)
	sent := make(chan struct{})
	go func() {
		var a answer
		defer func() { a.at = time.Now(); polled <- a }()
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(sent) }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet,
			srv.url+"/jobs/"+last+"/status", nil)
		if err != nil {
			a.err = err
			return
		}
		req.Header.Set("Prefer", "wait=30")
		resp, err := client.Do(req)
		if err != nil {
			a.err = err
			return
		}
		defer resp.Body.Close()
		a.code = resp.StatusCode
		a.err = json.NewDecoder(resp.Body).Decode(&a.doc)
	}()
	select {
	case <-sent:
	case a := <-polled:
		t.Fatalf("the long poll ended before the shutdown: %+v", a)
	}
	// Let the server read it and start waiting. (A poll read after the
	// shutdown began is ended at once too, so this only makes the test
	// show what it means to.)
	time.Sleep(200 * time.Millisecond)

	termAt := time.Now()
	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	a := <-polled
	require.NoError(t, a.err)
	require.Less(t, a.at.Sub(termAt), 2*time.Second, "the long poll held the shutdown")
	require.Equal(t, http.StatusOK, a.code)
	require.Equal(t, asyncreq.StatePending, a.doc.Status)
	<-srv.done
	require.NoError(t, srv.cmd.Wait(), "server log:\n%s", srv.output())
	took := time.Since(termAt)
	require.Less(t, took, budget, "the shutdown took longer than its budget")
	t.Logf("long poll answered %v and the server exited %v after SIGTERM",
		a.at.Sub(termAt).Round(time.Millisecond), took.Round(time.Millisecond))

	// Nothing accepted is lost: the running requests finished before the
	// exit, and the waiting one runs after a restart.
	srv = startServer(t, ctx, bin, dbPath, workTime)
	defer srv.stop(t)
	waitFor(t, ctx, 30*time.Second, func() bool {
		for id, body := range bodies {
			doc, _, err := status(ctx, client, srv.url, id)
			require.NoError(t, err)
			if doc.Status != asyncreq.StateSucceeded {
				require.Equal(t, last, id, "request %s was not finished at shutdown: %+v", id, doc)
				return false
			}
			require.Equal(t, 1, doc.Attempts, "request %s", id)
			checkReport(t, ctx, client, srv.url, id, body)
			delete(bodies, id)
		}
		return true
	}, "every accepted request succeeded")
}

// buildServer builds the server into dir and returns the binary's path.
func buildServer(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "server")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// server is one run of the example server binary.
type server struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{} // closed when its log has been read to the end
	mu   sync.Mutex
	log  bytes.Buffer
}

var listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startServer runs the server on an ephemeral port and waits until it
// listens.
func startServer(t *testing.T, ctx context.Context, bin, dbPath string, workTime time.Duration) *server {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin,
		"-addr", "127.0.0.1:0", "-backend", "sqlite", "-sqlite-path", dbPath, "-work-time", workTime.String())
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	s := &server{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		s.url = "http://" + a
	case <-s.done:
		_ = cmd.Wait()
		t.Fatalf("the server exited before listening:\n%s", s.output())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-s.done
		_ = cmd.Wait()
		t.Fatalf("the server did not listen within 30s:\n%s", s.output())
	}
	return s
}

func (s *server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// kill ends the server with SIGKILL: no shutdown code runs.
func (s *server) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGKILL))
	<-s.done
	_ = s.cmd.Wait()
}

// stop ends the server with SIGTERM and checks that it shut down cleanly.
func (s *server) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	<-s.done
	require.NoError(t, s.cmd.Wait(), "server log:\n%s", s.output())
}

// submit posts body to /jobs with an Idempotency-Key and returns the id of
// the accepted request.
func submit(ctx context.Context, c *http.Client, base, key string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/jobs", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var doc asyncreq.StatusDocument
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return "", fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("status %d, want 202", resp.StatusCode)
	}
	if loc := resp.Header.Get("Location"); loc != "/jobs/"+doc.ID+"/status" {
		return "", fmt.Errorf("Location %q does not name request %s", loc, doc.ID)
	}
	return doc.ID, nil
}

// status fetches the status document of id.
func status(ctx context.Context, c *http.Client, base, id string) (*asyncreq.StatusDocument, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/jobs/"+id+"/status", nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var doc asyncreq.StatusDocument
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return nil, resp.StatusCode, fmt.Errorf("status of %s: %d: %w", id, resp.StatusCode, err)
	}
	return &doc, resp.StatusCode, nil
}

// checkReport fetches the result of id and checks that it is the report of
// body.
func checkReport(t *testing.T, ctx context.Context, c *http.Client, base, id string, body []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/jobs/"+id, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var rep report
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rep))
	sum := sha256.Sum256(body)
	require.Equal(t, hex.EncodeToString(sum[:]), rep.SHA256, "request %s has another request's report", id)
	require.Equal(t, len(body), rep.Bytes)
}

// waitFor calls cond every 200ms until it holds, failing t after timeout.
func waitFor(t *testing.T, ctx context.Context, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%v while waiting: %s", ctx.Err(), what)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
