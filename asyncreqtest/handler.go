package asyncreqtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// TestHandler checks the HTTP contract end to end over the backends
// newBackend makes: an asyncreq.Handler and an asyncreq.Worker on a fresh
// Backend per case (a backend's own, or asyncreq.Pair of a Store and a
// Queue), behind an httptest.Server that mounts the
// handler under /jobs with http.StripPrefix, driven by a test processor.
//
// The Worker's LeaseDuration is Options.LeaseTTL; the case about a worker
// that dies mid-request waits for its lease to run out, and is skipped
// when Options.NoLeaseExpiry is set.
func TestHandler(t *testing.T, newBackend func(t *testing.T) asyncreq.Backend, opts *Options) {
	t.Helper()
	k := &handlerKit{cfg: newConfig(t, opts), newInstances: func(t *testing.T) (asyncreq.Backend, asyncreq.Backend) {
		b := newBackend(t)
		return b, b
	}}
	runGroups(t, k.cfg, []group{
		{"Submit", []testCase{
			{"AcceptedThenRunningThenSeeOtherThenResult", k.lifecycle},
			{"PermanentFailureIsFinalProblem", k.permanentFailure},
			{"LargeBodyReachesProcessorAndResultComesBack", k.largeBody},
			{"PreferWaitAnswersWithResult", k.preferWait},
			{"PreferWaitFailureIsSeeOtherToStatus", k.preferWaitFailure},
			{"PreferWaitTimesOutWithAccepted", k.preferWaitTimeout},
			{"PreferRespondAsyncAnswersAtOnce", k.preferRespondAsync},
		}},
		{"Status", []testCase{
			{"LongPollReturnsOnChange", k.longPoll},
			{"UnknownIDIsNotFoundProblem", k.unknownID},
			{"OtherMethodIsNotAllowed", k.methodNotAllowed},
			{"OtherOwnerSeesNothing", k.ownerIsolation},
		}},
		{"Idempotency", []testCase{
			{"SameKeySameBodyIsSameRequest", k.idempotentRepeat},
			{"SameKeyOtherBodyIsUnprocessable", k.idempotentOtherBody},
			{"ConcurrentSubmitsMakeOneRequest", k.idempotentConcurrent},
		}},
		{"Delete", []testCase{
			{"PendingIsCanceledAndNeverRuns", k.deletePending},
			{"RunningCancelsProcessorContext", k.deleteRunning},
			{"FinalIsDeletedThenGone", k.deleteFinal},
			{"GoneIsNotFoundToOtherOwners", k.goneToOwnerOnly},
		}},
		{"Worker", []testCase{
			{"DeadWorkersRequestIsRedeliveredAndItsOutcomeFenced", k.workerDies},
		}},
	})
}

type handlerKit struct {
	cfg config
	// newInstances returns the instance of the handler and that of the
	// workers: the same one in TestHandler, two on the same data in
	// TestTwoInstances.
	newInstances func(t *testing.T) (one, two asyncreq.Backend)
}

const (
	// mount is where the handler is mounted in the test server.
	mount = "/jobs"
	// ownerHeader carries the owner in the test server's Owner function.
	ownerHeader = "X-Asyncreqtest-Owner"
	// retryAfter is the handler's Retry-After.
	retryAfter = time.Second
)

// env is one case's server: a handler over a fresh backend, with a worker.
// The handler runs on instance one and the workers on instance two, which
// are one instance in TestHandler.
type env struct {
	k      *handlerKit
	one    asyncreq.Backend // the handler's
	two    asyncreq.Backend // the workers'
	srv    *httptest.Server
	client *http.Client
	log    *slog.Logger
}

// newEnv starts a test server with a handler over a fresh backend. The
// server and every worker started with startWorker stop when t ends.
func (k *handlerKit) newEnv(t *testing.T) *env {
	t.Helper()
	one, two := k.newInstances(t)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	e := &env{k: k, one: one, two: two, log: log}
	e.srv = e.serve(t, one)
	client := *e.srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	e.client = &client
	return e
}

// serve starts a test server with a handler on in, mounted under mount,
// and closes it when t ends.
func (e *env) serve(t *testing.T, in asyncreq.Backend) *httptest.Server {
	t.Helper()
	h, err := asyncreq.NewHandler(in, &asyncreq.HandlerOptions{
		RetryAfter: retryAfter,
		MaxWait:    10 * time.Second,
		Owner: func(r *http.Request) (string, error) {
			return r.Header.Get(ownerHeader), nil
		},
		Logger: e.log,
	})
	require.NoError(t, err, "NewHandler")
	mux := http.NewServeMux()
	mux.Handle(mount+"/", http.StripPrefix(mount, h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// workerOptions returns the options of the kit's workers: short leases and
// backoffs, no purging.
func (e *env) workerOptions() *asyncreq.WorkerOptions {
	return &asyncreq.WorkerOptions{
		Concurrency:   4,
		LeaseDuration: e.k.cfg.leaseTTL,
		MaxAttempts:   3,
		BackoffMin:    10 * time.Millisecond,
		BackoffMax:    100 * time.Millisecond,
		PurgeInterval: -1,
		Logger:        e.log,
	}
}

// startWorker starts a worker running p on the env's worker instance, or
// on that instance paired with queue when queue is not nil, and stops it
// when t ends.
func (e *env) startWorker(t *testing.T, ctx context.Context, p asyncreq.ProcessorFunc, opts *asyncreq.WorkerOptions, queue asyncreq.Queue) *asyncreq.Worker {
	t.Helper()
	if opts == nil {
		opts = e.workerOptions()
	}
	b := e.two
	if queue != nil {
		b = asyncreq.Pair(e.two, queue)
	}
	w, err := asyncreq.NewWorker(b, p, opts)
	require.NoError(t, err, "NewWorker")
	require.NoError(t, w.Start(ctx), "Worker.Start")
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		assert.NoError(t, w.Stop(sctx), "Worker.Stop must return once running work finished")
	})
	return w
}

// response is an answer of the test server, with its body read.
type response struct {
	*http.Response
	body []byte
}

// do sends a request to target, a path under the mount ("/" for submit,
// "/{id}/status", ...) or an absolute URL, with header pairs.
func (e *env) do(t *testing.T, ctx context.Context, method, target string, body []byte, header ...string) response {
	t.Helper()
	u := target
	if !strings.HasPrefix(u, "http") {
		u = e.srv.URL + mount + target
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	require.NoError(t, err)
	require.Zero(t, len(header)%2, "header pairs")
	for i := 0; i < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := e.client.Do(req)
	require.NoError(t, err, "%s %s", method, u)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "reading the answer to %s %s", method, u)
	return response{resp, b}
}

// submit posts body as text/plain and returns the answer.
func (e *env) submit(t *testing.T, ctx context.Context, body []byte, header ...string) response {
	t.Helper()
	return e.do(t, ctx, http.MethodPost, "/", body, append([]string{"Content-Type", "text/plain; charset=utf-8"}, header...)...)
}

// accepted checks a 202 answer to a submit and returns the request's id.
func (e *env) accepted(t *testing.T, r response) string {
	t.Helper()
	require.Equal(t, http.StatusAccepted, r.StatusCode, "submit must answer 202 Accepted; body: %s", r.body)
	doc := statusDoc(t, r)
	require.True(t, asyncreq.ValidID(doc.ID), "the status document's id %q", doc.ID)
	loc := e.resolve(t, r, r.Header.Get("Location"))
	require.Equal(t, mount+"/"+doc.ID+"/status", loc.Path, "Location of a 202 is the status URL under the mount")
	requireRetryAfter(t, r)
	return doc.ID
}

// resolve resolves ref against the URL r answered.
func (e *env) resolve(t *testing.T, r response, ref string) *url.URL {
	t.Helper()
	require.NotEmpty(t, ref, "a URL header is missing")
	u, err := r.Request.URL.Parse(ref)
	require.NoError(t, err, "URL %q", ref)
	return u
}

// statusDoc decodes a status document answer.
func statusDoc(t *testing.T, r response) *asyncreq.StatusDocument {
	t.Helper()
	require.Equal(t, "application/json", mediaType(r.Header.Get("Content-Type")), "a status document is application/json; body: %s", r.body)
	var doc asyncreq.StatusDocument
	require.NoError(t, json.Unmarshal(r.body, &doc), "status document %s", r.body)
	require.True(t, doc.Status.Valid(), "status %q", doc.Status)
	require.False(t, doc.CreatedAt.IsZero(), "created_at")
	require.Equal(t, mount+"/"+doc.ID+"/status", doc.StatusURL, "status_url")
	return &doc
}

// problem checks an RFC 9457 answer with the given status.
func problem(t *testing.T, r response, status int) *asyncreq.Problem {
	t.Helper()
	require.Equal(t, status, r.StatusCode, "status code; body: %s", r.body)
	require.Equal(t, "application/problem+json", mediaType(r.Header.Get("Content-Type")), "an error answer is application/problem+json")
	var p asyncreq.Problem
	require.NoError(t, json.Unmarshal(r.body, &p), "problem document %s", r.body)
	assert.Equal(t, status, p.Status, "the problem's status")
	assert.NotEmpty(t, p.Title, "the problem's title")
	assert.NotEmpty(t, p.Type, "the problem's type")
	return &p
}

func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.TrimSpace(strings.ToLower(mt))
}

// requireRetryAfter checks that r carries Retry-After in whole seconds.
func requireRetryAfter(t *testing.T, r response) {
	t.Helper()
	ra := r.Header.Get("Retry-After")
	n, err := strconv.Atoi(ra)
	require.NoError(t, err, "Retry-After %q must be whole seconds", ra)
	require.Equal(t, int(retryAfter/time.Second), n, "Retry-After is the handler's RetryAfter")
}

// waitState polls the status URL of id until its document shows state,
// and returns that answer.
func (e *env) waitState(t *testing.T, ctx context.Context, id string, state asyncreq.State, timeout time.Duration, header ...string) response {
	t.Helper()
	var last response
	eventually(t, ctx, timeout, 25*time.Millisecond, func() bool {
		last = e.do(t, ctx, http.MethodGet, "/"+id+"/status", nil, header...)
		if last.StatusCode != http.StatusOK && last.StatusCode != http.StatusSeeOther {
			t.Fatalf("status of %s answered %d: %s", id, last.StatusCode, last.body)
		}
		return statusDoc(t, last).Status == state
	}, func() string {
		if last.Response == nil {
			return "the request " + id + " did not become " + string(state)
		}
		return "the request " + id + " did not become " + string(state) + "; last status answer " + strconv.Itoa(last.StatusCode) + ": " + string(last.body)
	})
	return last
}

// calls records the requests a processor saw.
type calls struct {
	mu   sync.Mutex
	reqs []*asyncreq.Request
}

func (c *calls) add(r *asyncreq.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, r)
}

// of returns how many times the processor ran for id, and in total.
func (c *calls) of(id string) (n, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.reqs {
		if r.ID == id {
			n++
		}
	}
	return n, len(c.reqs)
}

// report is what the kit's processors make of a request body.
func report(body []byte) []byte {
	return []byte(`{"bytes":` + strconv.Itoa(len(body)) + `,"hash":"` + bodyHash(body) + `"}`)
}

// echo is a processor that succeeds at once with the report of the body.
func echo(c *calls) asyncreq.ProcessorFunc {
	return func(_ context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		if c != nil {
			c.add(req)
		}
		return &asyncreq.Result{ContentType: "application/json", Body: report(req.Body)}, nil
	}
}

// gate is a processor that signals each start on started and waits to be
// released.
type gate struct {
	started chan *asyncreq.Request
	release chan struct{}
	once    sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{started: make(chan *asyncreq.Request, 16), release: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) process(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
	select {
	case g.started <- req:
	default:
	}
	select {
	case <-g.release:
		return &asyncreq.Result{
			ContentType: "application/json",
			Header:      http.Header{"X-Asyncreqtest": {"released"}},
			Body:        report(req.Body),
		}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// waitStarted waits for the gate's processor to start.
func (g *gate) waitStarted(t *testing.T, ctx context.Context) *asyncreq.Request {
	t.Helper()
	select {
	case req := <-g.started:
		return req
	case <-time.After(patience):
		t.Fatalf("the processor did not start within %v of the submit", patience)
	case <-ctx.Done():
		t.Fatalf("context ended: %v", context.Cause(ctx))
	}
	return nil
}

func (k *handlerKit) lifecycle(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	g := newGate(t)
	e.startWorker(t, ctx, g.process, nil, nil)

	body := []byte("the quick brown fox\njumps over the lazy dog\n")
	r := e.submit(t, ctx, body)
	id := e.accepted(t, r)
	assert.Contains(t, r.Header.Values("Vary"), "Prefer", "a submit answer depends on Prefer")
	doc := statusDoc(t, r)
	assert.Contains(t, []asyncreq.State{asyncreq.StatePending, asyncreq.StateRunning}, doc.Status)

	req := g.waitStarted(t, ctx)
	assert.Equal(t, id, req.ID, "Request.ID")
	assert.Equal(t, body, req.Body, "Request.Body")
	assert.Equal(t, "text/plain; charset=utf-8", req.ContentType, "Request.ContentType")
	assert.Equal(t, http.MethodPost, req.Method, "Request.Method")
	assert.Equal(t, 1, req.Attempt, "Request.Attempt")
	assert.False(t, req.CreatedAt.IsZero(), "Request.CreatedAt")

	r = e.do(t, ctx, http.MethodGet, "/"+id+"/status", nil)
	require.Equal(t, http.StatusOK, r.StatusCode, "status while running; body: %s", r.body)
	doc = statusDoc(t, r)
	assert.Equal(t, asyncreq.StateRunning, doc.Status)
	assert.Equal(t, 1, doc.Attempts, "attempts while running")
	requireRetryAfter(t, r)
	assert.Equal(t, "no-store", r.Header.Get("Cache-Control"), "a status answer while running is not cached")

	r = e.do(t, ctx, http.MethodHead, "/"+id+"/status", nil)
	assert.Equal(t, http.StatusOK, r.StatusCode, "HEAD of the status while running")
	assert.Empty(t, r.body, "HEAD has no body")

	r = e.do(t, ctx, http.MethodGet, "/"+id, nil)
	problem(t, r, http.StatusNotFound)

	g.open()
	r = e.waitState(t, ctx, id, asyncreq.StateSucceeded, patience)
	require.Equal(t, http.StatusSeeOther, r.StatusCode, "status of a succeeded request")
	loc := e.resolve(t, r, r.Header.Get("Location"))
	require.Equal(t, mount+"/"+id, loc.Path, "Location of the 303 is the result URL")
	doc = statusDoc(t, r)
	assert.Equal(t, mount+"/"+id, doc.ResultURL, "result_url")
	assert.Empty(t, r.Header.Get("Retry-After"), "a final status has no Retry-After")

	r = e.do(t, ctx, http.MethodGet, loc.String(), nil)
	require.Equal(t, http.StatusOK, r.StatusCode, "result; body: %s", r.body)
	assert.Equal(t, report(body), r.body, "the result body is the processor's")
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"), "the result's Content-Type is the processor's")
	assert.Equal(t, "released", r.Header.Get("X-Asyncreqtest"), "the result's headers are the processor's")
	etag := r.Header.Get("ETag")
	require.NotEmpty(t, etag, "the result carries an ETag")
	require.False(t, strings.HasPrefix(etag, "W/"), "the result's ETag is strong")
	require.True(t, len(etag) >= 2 && etag[0] == '"' && etag[len(etag)-1] == '"', "ETag %s is quoted", etag)

	r = e.do(t, ctx, http.MethodGet, loc.String(), nil, "If-None-Match", etag)
	assert.Equal(t, http.StatusNotModified, r.StatusCode, "If-None-Match with the result's ETag")
	assert.Empty(t, r.body)

	r = e.do(t, ctx, http.MethodHead, loc.String(), nil)
	assert.Equal(t, http.StatusOK, r.StatusCode, "HEAD of the result")
	assert.Equal(t, etag, r.Header.Get("ETag"))
	assert.Empty(t, r.body, "HEAD has no body")
}

func (k *handlerKit) permanentFailure(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	var c calls
	const detail = "the input is not a report"
	e.startWorker(t, ctx, func(_ context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		c.add(req)
		return nil, asyncreq.Permanent(errors.New(detail), http.StatusUnprocessableEntity)
	}, nil, nil)

	id := e.accepted(t, e.submit(t, ctx, []byte("not a report")))
	r := e.waitState(t, ctx, id, asyncreq.StateFailed, patience)
	assert.Equal(t, http.StatusOK, r.StatusCode, "status of a failed request")
	assert.Empty(t, r.Header.Get("Retry-After"), "a final status has no Retry-After")
	doc := statusDoc(t, r)
	require.NotNil(t, doc.Error, "a failed request's status document has its error")
	assert.Equal(t, http.StatusUnprocessableEntity, doc.Error.Status)
	assert.Equal(t, detail, doc.Error.Detail)
	assert.Empty(t, doc.ResultURL)

	p := problem(t, e.do(t, ctx, http.MethodGet, "/"+id, nil), http.StatusUnprocessableEntity)
	assert.Equal(t, detail, p.Detail)
	n, _ := c.of(id)
	assert.Equal(t, 1, n, "a permanent failure is not retried")
}

func (k *handlerKit) largeBody(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	body := randomBytes(1 << 20) // the handler's default limit
	e.startWorker(t, ctx, func(_ context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		if !bytes.Equal(req.Body, body) {
			return nil, asyncreq.Permanent(errors.New("the body the processor got differs from the one submitted"), http.StatusUnprocessableEntity)
		}
		out := bytes.Clone(req.Body)
		for i := range out {
			out[i] ^= 0x5a
		}
		return &asyncreq.Result{ContentType: "application/octet-stream", Body: out}, nil
	}, nil, nil)

	r := e.do(t, ctx, http.MethodPost, "/", body, "Content-Type", "application/octet-stream")
	id := e.accepted(t, r)
	e.waitState(t, ctx, id, asyncreq.StateSucceeded, patience)
	r = e.do(t, ctx, http.MethodGet, "/"+id, nil)
	require.Equal(t, http.StatusOK, r.StatusCode, "result of a 1 MiB request")
	require.Len(t, r.body, len(body))
	for i := range r.body {
		if r.body[i] != body[i]^0x5a {
			t.Fatalf("the 1 MiB result differs from the processor's at byte %d", i)
		}
	}
}

func (k *handlerKit) preferWait(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	// The processor takes a moment, so that the handler waits for a
	// change it has not seen at its first read.
	e.startWorker(t, ctx, func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		sleep(ctx, 250*time.Millisecond)
		return echo(nil)(ctx, req)
	}, nil, nil)
	body := []byte("wait for me")
	start := time.Now()
	r := e.submit(t, ctx, body, "Prefer", "wait=10")
	assert.Less(t, time.Since(start), 250*time.Millisecond+patience, "a submit with Prefer: wait answers soon after the request finished")
	require.Equal(t, http.StatusOK, r.StatusCode, "a submit with Prefer: wait that finishes in time answers with the result; body: %s", r.body)
	assert.Equal(t, report(body), r.body)
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	assert.Equal(t, "wait=10", r.Header.Get("Preference-Applied"))
	assert.Contains(t, r.Header.Values("Vary"), "Prefer")
	loc := e.resolve(t, r, r.Header.Get("Content-Location"))
	id := strings.TrimPrefix(loc.Path, mount+"/")
	require.True(t, asyncreq.ValidID(id), "Content-Location %s is the result URL under the mount", loc)
	r = e.do(t, ctx, http.MethodGet, loc.String(), nil)
	require.Equal(t, http.StatusOK, r.StatusCode)
	assert.Equal(t, report(body), r.body)
}

func (k *handlerKit) preferWaitFailure(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	const detail = "the input is not a report"
	e.startWorker(t, ctx, func(_ context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return nil, asyncreq.Permanent(errors.New(detail), http.StatusUnprocessableEntity)
	}, nil, nil)
	r := e.submit(t, ctx, []byte("not a report"), "Prefer", "wait=10")
	require.Equal(t, http.StatusSeeOther, r.StatusCode,
		"a submit with Prefer: wait whose request failed in time answers 303, never the failure's own status; body: %s", r.body)
	assert.Equal(t, "wait=10", r.Header.Get("Preference-Applied"))
	doc := statusDoc(t, r)
	assert.Equal(t, asyncreq.StateFailed, doc.Status)
	require.NotNil(t, doc.Error)
	assert.Equal(t, http.StatusUnprocessableEntity, doc.Error.Status)
	loc := e.resolve(t, r, r.Header.Get("Location"))
	assert.Equal(t, mount+"/"+doc.ID+"/status", loc.Path, "Location is the status URL")
	r = e.do(t, ctx, http.MethodGet, loc.String(), nil)
	require.Equal(t, http.StatusOK, r.StatusCode)
	assert.Equal(t, detail, statusDoc(t, r).Error.Detail)
}

func (k *handlerKit) preferWaitTimeout(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	g := newGate(t)
	e.startWorker(t, ctx, g.process, nil, nil)
	start := time.Now()
	r := e.submit(t, ctx, []byte("slow"), "Prefer", "wait=1")
	elapsed := time.Since(start)
	id := e.accepted(t, r)
	assert.GreaterOrEqual(t, elapsed, 900*time.Millisecond, "a submit with Prefer: wait=1 waits about a second for the outcome")
	assert.Less(t, elapsed, 1*time.Second+patience, "a submit with Prefer: wait=1 answers 202 once the second passed")
	g.open()
	e.waitState(t, ctx, id, asyncreq.StateSucceeded, patience)
}

func (k *handlerKit) preferRespondAsync(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	g := newGate(t)
	e.startWorker(t, ctx, g.process, nil, nil)
	start := time.Now()
	r := e.submit(t, ctx, []byte("async"), "Prefer", "respond-async")
	id := e.accepted(t, r)
	assert.Less(t, time.Since(start), patience, "Prefer: respond-async answers at once")
	g.waitStarted(t, ctx)
	g.open()
	e.waitState(t, ctx, id, asyncreq.StateSucceeded, patience)
}

func (k *handlerKit) longPoll(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	g := newGate(t)
	e.startWorker(t, ctx, g.process, nil, nil)
	id := e.accepted(t, e.submit(t, ctx, []byte("poll me")))
	g.waitStarted(t, ctx)
	e.waitState(t, ctx, id, asyncreq.StateRunning, patience)

	type answer struct {
		code int
		at   time.Time
		err  error
	}
	out := make(chan answer, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel() // before wg.Wait: deferred calls run last first
	wg.Go(func() {
		req, err := http.NewRequestWithContext(pctx, http.MethodGet, e.srv.URL+mount+"/"+id+"/status", nil)
		if err != nil {
			out <- answer{err: err}
			return
		}
		req.Header.Set("Prefer", "wait=10")
		resp, err := e.client.Do(req)
		if err != nil {
			out <- answer{err: err}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		out <- answer{code: resp.StatusCode, at: time.Now()}
	})
	select {
	case a := <-out:
		t.Fatalf("a long poll of a running request with Prefer: wait=10 answered at once: %d %v", a.code, a.err)
	case <-time.After(300 * time.Millisecond):
	}
	g.open()
	released := time.Now()
	select {
	case a := <-out:
		require.NoError(t, a.err)
		assert.Equal(t, http.StatusSeeOther, a.code, "a long poll answers with the new state")
		assert.Less(t, a.at.Sub(released), 3*time.Second, "a long poll answers soon after the state changes")
	case <-time.After(10*time.Second + patience):
		t.Fatal("the long poll did not answer")
	}
}

func (k *handlerKit) unknownID(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	unknown := asyncreq.NewID()
	problem(t, e.do(t, ctx, http.MethodGet, "/"+unknown+"/status", nil), http.StatusNotFound)
	problem(t, e.do(t, ctx, http.MethodGet, "/"+unknown, nil), http.StatusNotFound)
	problem(t, e.do(t, ctx, http.MethodDelete, "/"+unknown, nil), http.StatusNotFound)
	problem(t, e.do(t, ctx, http.MethodGet, "/not-an-id/status", nil), http.StatusNotFound)
	problem(t, e.do(t, ctx, http.MethodGet, "/not-an-id", nil), http.StatusNotFound)
	problem(t, e.do(t, ctx, http.MethodGet, "/"+unknown+"/other", nil), http.StatusNotFound)
	r := e.do(t, ctx, http.MethodHead, "/"+unknown+"/status", nil)
	assert.Equal(t, http.StatusNotFound, r.StatusCode, "HEAD of an unknown status")
	assert.Empty(t, r.body)
}

func (k *handlerKit) methodNotAllowed(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	id := asyncreq.NewID()
	for _, c := range []struct{ method, target string }{
		{http.MethodPut, "/"},
		{http.MethodGet, "/"},
		{http.MethodPost, "/" + id},
		{http.MethodPatch, "/" + id},
		{http.MethodPost, "/" + id + "/status"},
		{http.MethodDelete, "/" + id + "/status"},
	} {
		r := e.do(t, ctx, c.method, c.target, nil)
		problem(t, r, http.StatusMethodNotAllowed)
		assert.NotEmpty(t, r.Header.Get("Allow"), "405 for %s %s carries Allow", c.method, c.target)
	}
}

func (k *handlerKit) ownerIsolation(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	var c calls
	e.startWorker(t, ctx, echo(&c), nil, nil)
	body := []byte("mine")
	alice := e.accepted(t, e.submit(t, ctx, body, ownerHeader, "alice", "Idempotency-Key", "k1"))
	bob := e.accepted(t, e.submit(t, ctx, body, ownerHeader, "bob", "Idempotency-Key", "k1"))
	require.NotEqual(t, alice, bob, "the same idempotency key from another owner makes another request")
	e.waitState(t, ctx, alice, asyncreq.StateSucceeded, patience, ownerHeader, "alice")
	e.waitState(t, ctx, bob, asyncreq.StateSucceeded, patience, ownerHeader, "bob")

	problem(t, e.do(t, ctx, http.MethodGet, "/"+alice+"/status", nil, ownerHeader, "bob"), http.StatusNotFound)
	problem(t, e.do(t, ctx, http.MethodGet, "/"+alice, nil, ownerHeader, "bob"), http.StatusNotFound)
	problem(t, e.do(t, ctx, http.MethodDelete, "/"+alice, nil, ownerHeader, "bob"), http.StatusNotFound)
	problem(t, e.do(t, ctx, http.MethodGet, "/"+alice+"/status", nil), http.StatusNotFound)
	r := e.do(t, ctx, http.MethodGet, "/"+alice, nil, ownerHeader, "alice")
	assert.Equal(t, http.StatusOK, r.StatusCode, "the owner still sees the result after another owner's DELETE")
}

func (k *handlerKit) idempotentRepeat(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	var c calls
	e.startWorker(t, ctx, echo(&c), nil, nil)
	body := []byte("once only")
	first := e.submit(t, ctx, body, "Idempotency-Key", "order-1")
	id := e.accepted(t, first)
	again := e.submit(t, ctx, body, "Idempotency-Key", "order-1")
	assert.Equal(t, id, e.accepted(t, again), "a repeat with the same key and body is the same request")
	assert.Equal(t, first.Header.Get("Location"), again.Header.Get("Location"))

	e.waitState(t, ctx, id, asyncreq.StateSucceeded, patience)
	late := e.submit(t, ctx, body, "Idempotency-Key", "order-1")
	assert.Equal(t, id, e.accepted(t, late), "a repeat after the request finished is still the same request")
	other := e.accepted(t, e.submit(t, ctx, body, "Idempotency-Key", "order-2"))
	assert.NotEqual(t, id, other, "another key makes another request")
	e.waitState(t, ctx, other, asyncreq.StateSucceeded, patience)
	n, total := c.of(id)
	assert.Equal(t, 1, n, "the request with a repeated key is processed once")
	assert.Equal(t, 2, total, "two keys, two requests processed")
}

func (k *handlerKit) idempotentOtherBody(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	var c calls
	e.startWorker(t, ctx, echo(&c), nil, nil)
	id := e.accepted(t, e.submit(t, ctx, []byte("first body"), "Idempotency-Key", "k"))
	problem(t, e.submit(t, ctx, []byte("second body"), "Idempotency-Key", "k"), http.StatusUnprocessableEntity)
	e.waitState(t, ctx, id, asyncreq.StateSucceeded, patience)
	_, total := c.of(id)
	assert.Equal(t, 1, total, "a repeat with another body creates nothing")
}

func (k *handlerKit) idempotentConcurrent(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	var c calls
	e.startWorker(t, ctx, echo(&c), nil, nil)
	const n = 10
	body := []byte("raced")
	type answer struct {
		code int
		loc  string
		err  error
	}
	answers := make([]answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+mount+"/", bytes.NewReader(body))
			if err != nil {
				answers[i].err = err
				return
			}
			req.Header.Set("Content-Type", "text/plain")
			req.Header.Set("Idempotency-Key", "raced-key")
			resp, err := e.client.Do(req)
			if err != nil {
				answers[i].err = err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			answers[i] = answer{code: resp.StatusCode, loc: resp.Header.Get("Location")}
		})
	}
	close(start)
	wg.Wait()

	var loc string
	for i, a := range answers {
		require.NoError(t, a.err, "submit %d", i)
		switch a.code {
		case http.StatusAccepted:
			if loc == "" {
				loc = a.loc
			}
			require.Equal(t, loc, a.loc, "every 202 to concurrent submits with one key names the same request")
		case http.StatusConflict:
			// The first submit was still being accepted.
		default:
			t.Fatalf("concurrent submits with one key answer 202 or 409; submit %d got %d", i, a.code)
		}
	}
	require.NotEmpty(t, loc, "at least one concurrent submit must be accepted")
	id := strings.TrimSuffix(strings.TrimPrefix(loc, mount+"/"), "/status")
	e.waitState(t, ctx, id, asyncreq.StateSucceeded, patience)
	// Another request, to let any stray duplicate reach the worker first.
	other := e.accepted(t, e.submit(t, ctx, []byte("after")))
	e.waitState(t, ctx, other, asyncreq.StateSucceeded, patience)
	got, total := c.of(id)
	assert.Equal(t, 1, got, "concurrent submits with one key are processed once")
	assert.Equal(t, 2, total, "concurrent submits with one key make one request")
}

func (k *handlerKit) deletePending(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	// No worker yet: the request stays pending.
	id := e.accepted(t, e.submit(t, ctx, []byte("never run")))
	r := e.do(t, ctx, http.MethodDelete, "/"+id, nil)
	require.Equal(t, http.StatusAccepted, r.StatusCode, "DELETE of a pending request; body: %s", r.body)
	assert.Equal(t, asyncreq.StateCanceled, statusDoc(t, r).Status, "a pending request is canceled at once")

	var c calls
	e.startWorker(t, ctx, echo(&c), nil, nil)
	marker := e.accepted(t, e.submit(t, ctx, []byte("marker")))
	e.waitState(t, ctx, marker, asyncreq.StateSucceeded, patience)

	r = e.do(t, ctx, http.MethodGet, "/"+id+"/status", nil)
	require.Equal(t, http.StatusOK, r.StatusCode, "status of a canceled request")
	doc := statusDoc(t, r)
	assert.Equal(t, asyncreq.StateCanceled, doc.Status, "a canceled request stays canceled")
	assert.NotNil(t, doc.Error, "a canceled request's status document has its error")
	assert.Empty(t, r.Header.Get("Retry-After"), "a final status has no Retry-After")
	r = e.do(t, ctx, http.MethodGet, "/"+id, nil)
	require.GreaterOrEqual(t, r.StatusCode, 400, "the result of a canceled request is a problem")
	problem(t, r, r.StatusCode)
	n, _ := c.of(id)
	assert.Zero(t, n, "a request canceled while pending never runs")
}

func (k *handlerKit) deleteRunning(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	started := make(chan struct{}, 1)
	causes := make(chan error, 1)
	e.startWorker(t, ctx, func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		select {
		case causes <- context.Cause(ctx):
		default:
		}
		return nil, ctx.Err()
	}, nil, nil)

	id := e.accepted(t, e.submit(t, ctx, []byte("cancel me")))
	select {
	case <-started:
	case <-time.After(patience):
		t.Fatalf("the processor did not start within %v", patience)
	}
	// The worker reads the record as it starts the processor; let that
	// read pass, so that only a watch or a later read can show it the
	// DELETE.
	sleep(ctx, 250*time.Millisecond)
	r := e.do(t, ctx, http.MethodDelete, "/"+id, nil)
	require.Equal(t, http.StatusAccepted, r.StatusCode, "DELETE of a running request; body: %s", r.body)
	statusDoc(t, r)

	select {
	case cause := <-causes:
		assert.ErrorIs(t, cause, asyncreq.ErrCanceled, "the processor's context is canceled with cause ErrCanceled")
	case <-time.After(k.cfg.leaseTTL + patience):
		t.Fatalf("the processor's context was not canceled within %v of the DELETE", k.cfg.leaseTTL+patience)
	}
	r = e.waitState(t, ctx, id, asyncreq.StateCanceled, patience)
	assert.NotNil(t, statusDoc(t, r).Error)
}

func (k *handlerKit) deleteFinal(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	e.startWorker(t, ctx, echo(nil), nil, nil)
	id := e.accepted(t, e.submit(t, ctx, []byte("delete me"), "Idempotency-Key", "del"))
	e.waitState(t, ctx, id, asyncreq.StateSucceeded, patience)
	r := e.do(t, ctx, http.MethodDelete, "/"+id, nil)
	require.Equal(t, http.StatusNoContent, r.StatusCode, "DELETE of a finished request; body: %s", r.body)
	assert.Empty(t, r.body)
	problem(t, e.do(t, ctx, http.MethodGet, "/"+id+"/status", nil), http.StatusGone)
	problem(t, e.do(t, ctx, http.MethodGet, "/"+id, nil), http.StatusGone)
	again := e.accepted(t, e.submit(t, ctx, []byte("delete me"), "Idempotency-Key", "del"))
	assert.NotEqual(t, id, again, "the key of a deleted request makes a new request")
}

func (k *handlerKit) goneToOwnerOnly(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	e.startWorker(t, ctx, echo(nil), nil, nil)
	id := e.accepted(t, e.submit(t, ctx, []byte("alice's"), ownerHeader, "alice"))
	e.waitState(t, ctx, id, asyncreq.StateSucceeded, patience, ownerHeader, "alice")
	r := e.do(t, ctx, http.MethodDelete, "/"+id, nil, ownerHeader, "alice")
	require.Equal(t, http.StatusNoContent, r.StatusCode, "DELETE of a finished request; body: %s", r.body)
	problem(t, e.do(t, ctx, http.MethodGet, "/"+id+"/status", nil, ownerHeader, "alice"), http.StatusGone)
	for _, owner := range []string{"mallory", ""} {
		for _, req := range []struct{ method, target string }{
			{http.MethodGet, "/" + id + "/status"}, {http.MethodGet, "/" + id}, {http.MethodDelete, "/" + id},
		} {
			problem(t, e.do(t, ctx, req.method, req.target, nil, ownerHeader, owner), http.StatusNotFound)
		}
	}
}

// partitioned wraps a Queue and cuts a worker off from it, as if the
// worker's process died: once cut, nothing reaches the Queue any more.
type partitioned struct {
	q   asyncreq.Queue
	cut chan struct{}
}

var errPartitioned = errors.New("asyncreqtest: worker cut off from the queue")

func (p *partitioned) isCut() bool {
	select {
	case <-p.cut:
		return true
	default:
		return false
	}
}

func (p *partitioned) Enqueue(ctx context.Context, id string, delay time.Duration) error {
	if p.isCut() {
		return errPartitioned
	}
	return p.q.Enqueue(ctx, id, delay)
}

func (p *partitioned) Dequeue(ctx context.Context, ttl time.Duration) (*asyncreq.Lease, error) {
	if !p.isCut() {
		l, err := p.q.Dequeue(ctx, ttl)
		if err != nil || !p.isCut() {
			return l, err
		}
		// Cut while waiting: the lease is lost with the worker.
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (p *partitioned) Extend(ctx context.Context, l *asyncreq.Lease, ttl time.Duration) error {
	if p.isCut() {
		return errPartitioned
	}
	return p.q.Extend(ctx, l, ttl)
}

func (p *partitioned) Ack(ctx context.Context, l *asyncreq.Lease) error {
	if p.isCut() {
		return errPartitioned
	}
	return p.q.Ack(ctx, l)
}

func (p *partitioned) Nack(ctx context.Context, l *asyncreq.Lease, delay time.Duration) error {
	if p.isCut() {
		return errPartitioned
	}
	return p.q.Nack(ctx, l, delay)
}

// workerDies runs a request on a worker that is then cut off from the
// Queue with the processor still running, so that its lease runs out. A
// second worker must get the request and finish it as attempt 2, and the
// first worker's late outcome must not overwrite that one.
func (k *handlerKit) workerDies(t *testing.T, ctx context.Context) {
	k.cfg.skipWithoutLeaseExpiry(t)
	e := k.newEnv(t)

	// The first worker's processor ignores its context, as a stuck one
	// would, and answers only when released.
	startedA := make(chan *asyncreq.Request, 1)
	releaseA := make(chan struct{})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(releaseA) }) }
	t.Cleanup(release)
	pq := &partitioned{q: e.two, cut: make(chan struct{})}
	optsA := e.workerOptions()
	optsA.Concurrency = 1
	workerA := e.startWorker(t, ctx, func(_ context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		select {
		case startedA <- req:
		default:
		}
		<-releaseA
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte("stale outcome of attempt 1")}, nil
	}, optsA, pq)

	id := e.accepted(t, e.submit(t, ctx, []byte("survive a crash")))
	select {
	case req := <-startedA:
		require.Equal(t, 1, req.Attempt)
	case <-time.After(patience):
		t.Fatalf("the first worker did not start the request within %v", patience)
	}
	close(pq.cut)
	cutAt := time.Now()

	var (
		mu       sync.Mutex
		attemptB int
		startedB time.Time
	)
	e.startWorker(t, ctx, func(_ context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		mu.Lock()
		attemptB, startedB = req.Attempt, time.Now()
		mu.Unlock()
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte("outcome of attempt 2")}, nil
	}, nil, nil)

	r := e.waitState(t, ctx, id, asyncreq.StateSucceeded, 2*k.cfg.leaseTTL+patience)
	doc := statusDoc(t, r)
	assert.Equal(t, 2, doc.Attempts, "the redelivered request runs as attempt 2")
	mu.Lock()
	assert.Equal(t, 2, attemptB, "Request.Attempt of the redelivered request")
	// The lease was last extended at most a third of it before the cut.
	assert.GreaterOrEqual(t, startedB.Sub(cutAt), k.cfg.leaseTTL/2, "the request was delivered again before its lease could have run out")
	mu.Unlock()

	// Let the first worker finish late, then stop it: its outcome must be
	// fenced off by the lease token.
	release()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	assert.NoError(t, workerA.Stop(sctx), "stopping the cut-off worker")
	r = e.do(t, ctx, http.MethodGet, "/"+id, nil)
	require.Equal(t, http.StatusOK, r.StatusCode)
	assert.Equal(t, "outcome of attempt 2", string(r.body), "a stale attempt's outcome must not replace the current one")
	r = e.do(t, ctx, http.MethodGet, "/"+id+"/status", nil)
	assert.Equal(t, 2, statusDoc(t, r).Attempts)
}
