package asyncreq_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// newMemory returns a memory backend closed when the test ends.
func newMemory(t testing.TB) *memory.Backend {
	t.Helper()
	b := memory.New(nil)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// newTestHandler returns a handler over b with opts.
func newTestHandler(t testing.TB, b asyncreq.Backend, opts *asyncreq.HandlerOptions) *asyncreq.Handler {
	t.Helper()
	h, err := asyncreq.NewHandler(b, opts)
	require.NoError(t, err)
	return h
}

// serveReq sends one request to h and returns the recorded answer.
// hdr holds header name/value pairs.
func serveReq(t testing.TB, h http.Handler, method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	require.Zero(t, len(hdr)%2, "header pairs")
	for i := 0; i < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, r)
	return rr
}

// postJob submits body and requires 202; it returns the id.
func postJob(t testing.TB, h http.Handler, body string, hdr ...string) string {
	t.Helper()
	rr := serveReq(t, h, http.MethodPost, "/", body, hdr...)
	require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
	doc := readDoc(t, rr)
	require.True(t, asyncreq.ValidID(doc.ID), doc.ID)
	return doc.ID
}

// readDoc decodes a status document answer.
func readDoc(t testing.TB, rr *httptest.ResponseRecorder) asyncreq.StatusDocument {
	t.Helper()
	require.Equal(t, "application/json", rr.Header().Get("Content-Type"))
	var doc asyncreq.StatusDocument
	require.NoError(t, json.Unmarshal(rr.Body.Bytes(), &doc), rr.Body.String())
	return doc
}

// problemDoc is a problem document with the pending problem's extension.
type problemDoc struct {
	asyncreq.Problem
	StatusURL string `json:"status_url"`
}

// checkProblem requires a problem+json answer with status code and
// returns it.
func checkProblem(t testing.TB, rr *httptest.ResponseRecorder, code int) problemDoc {
	t.Helper()
	require.Equal(t, code, rr.Code, rr.Body.String())
	require.Equal(t, "application/problem+json", rr.Header().Get("Content-Type"))
	var p problemDoc
	require.NoError(t, json.Unmarshal(rr.Body.Bytes(), &p), rr.Body.String())
	require.Equal(t, code, p.Status)
	require.NotEmpty(t, p.Type)
	require.Equal(t, reasonPhrase(code), p.Title)
	require.NotEmpty(t, p.Detail)
	return p
}

// reasonPhrase is the title a problem with status code must carry: the
// RFC 9110 reason phrase.
func reasonPhrase(code int) string {
	switch code {
	case http.StatusRequestEntityTooLarge:
		return "Content Too Large"
	case http.StatusUnprocessableEntity:
		return "Unprocessable Content"
	}
	return http.StatusText(code)
}

// setRecord changes a stored record as a worker would.
func setRecord(t testing.TB, s asyncreq.Store, id string, fn func(*asyncreq.Record)) {
	t.Helper()
	_, err := s.Update(context.Background(), id, func(r *asyncreq.Record) error {
		fn(r)
		r.UpdatedAt = time.Now()
		return nil
	})
	require.NoError(t, err)
}

func succeed(res *asyncreq.Result) func(*asyncreq.Record) {
	return func(r *asyncreq.Record) {
		r.State = asyncreq.StateSucceeded
		r.Result = res
		r.ExpiresAt = time.Now().Add(time.Hour)
	}
}

// storeOnly hides every method of a backend but the Store's, so that the
// handler neither accepts in one step nor watches.
type storeOnly struct{ asyncreq.Store }

// queueOnly hides every method of a backend but the Queue's.
type queueOnly struct{ asyncreq.Queue }

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestNewHandlerValidation(t *testing.T) {
	b := newMemory(t)
	_, err := asyncreq.NewHandler(asyncreq.Pair(nil, b), nil)
	require.ErrorContains(t, err, "Store")
	_, err = asyncreq.NewHandler(asyncreq.Pair(b, nil), nil)
	require.ErrorContains(t, err, "Queue")
	for name, o := range map[string]asyncreq.HandlerOptions{
		"BasePath":     {BasePath: "jobs"},
		"MaxBodyBytes": {MaxBodyBytes: -1},
		"RetryAfter":   {RetryAfter: -time.Second},
		"MaxWait":      {MaxWait: -time.Second},
		"Retention":    {Retention: -time.Second},
		"TombstoneTTL": {TombstoneTTL: -time.Second},
		"KeepHeaders":  {KeepHeaders: []string{"Bad Header"}},
	} {
		_, err := asyncreq.NewHandler(b, &o)
		require.ErrorContains(t, err, "HandlerOptions."+name, name)
	}

	// Constructing handlers registers nothing on the default mux.
	newTestHandler(t, b, nil)
	for _, target := range []string{"/", "/x", "/x/status"} {
		_, pattern := http.DefaultServeMux.Handler(httptest.NewRequest(http.MethodGet, target, nil))
		require.Empty(t, pattern, target)
	}
}

func TestSubmitAccepted(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{KeepHeaders: []string{"x-trace"}})
	before := time.Now()
	rr := serveReq(t, h, http.MethodPost, "/?lang=en", "hello", "Content-Type", "text/plain", "X-Trace", "t1", "Authorization", "secret")
	require.Equal(t, http.StatusAccepted, rr.Code)
	doc := readDoc(t, rr)
	require.True(t, asyncreq.ValidID(doc.ID))
	assert.Equal(t, "/"+doc.ID+"/status", rr.Header().Get("Location"))
	assert.Equal(t, "1", rr.Header().Get("Retry-After"))
	assert.Equal(t, "Prefer", rr.Header().Get("Vary"))
	assert.Equal(t, asyncreq.StatePending, doc.Status)
	assert.Equal(t, "/"+doc.ID+"/status", doc.StatusURL)
	assert.Empty(t, doc.ResultURL)
	assert.Nil(t, doc.Error)
	assert.Equal(t, time.UTC, doc.CreatedAt.Location())
	assert.WithinRange(t, doc.CreatedAt, before.Add(-time.Second), time.Now().Add(time.Second))
	assert.Contains(t, rr.Body.String(), `"status":"pending"`)

	rec, err := b.Get(t.Context(), doc.ID)
	require.NoError(t, err)
	assert.Equal(t, []byte("hello"), rec.Body)
	assert.Equal(t, "text/plain", rec.ContentType)
	assert.Equal(t, http.MethodPost, rec.Method)
	assert.Equal(t, "/?lang=en", rec.URL)
	assert.Equal(t, http.Header{"X-Trace": {"t1"}}, rec.Header)
	assert.True(t, rec.Enqueued)
	assert.Equal(t, 24*time.Hour, rec.Retention)
	assert.Equal(t, 7*24*time.Hour, rec.TombstoneTTL)
	assert.Empty(t, rec.BodyHash, "without an Idempotency-Key, nothing compares a fingerprint: none is taken")

	l, err := b.Dequeue(t.Context(), time.Minute)
	require.NoError(t, err)
	assert.Equal(t, doc.ID, l.ID, "the queue holds the request")
}

func TestSubmitSeparateStoreAndQueue(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, asyncreq.Pair(storeOnly{b}, queueOnly{b}), nil)
	id := postJob(t, h, "x")
	rec, err := b.Get(t.Context(), id)
	require.NoError(t, err)
	assert.True(t, rec.Enqueued, "marked enqueued after Enqueue")
	records, entries := b.Len()
	assert.Equal(t, 1, records)
	assert.Equal(t, 1, entries)
}

func TestSubmitRetryAfterWholeSecondsRoundedUp(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{RetryAfter: 1500 * time.Millisecond})
	rr := serveReq(t, h, http.MethodPost, "/", "x")
	require.Equal(t, http.StatusAccepted, rr.Code)
	assert.Equal(t, "2", rr.Header().Get("Retry-After"))
}

func TestSubmitBodyTooLarge(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{MaxBodyBytes: 10})
	checkProblem(t, serveReq(t, h, http.MethodPost, "/", "01234567890"), http.StatusRequestEntityTooLarge)

	// Without a Content-Length the limit holds while reading.
	r := httptest.NewRequest(http.MethodPost, "/", io.MultiReader(strings.NewReader("012345"), strings.NewReader("67890")))
	r.ContentLength = -1
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, r)
	checkProblem(t, rr, http.StatusRequestEntityTooLarge)

	records, entries := b.Len()
	assert.Zero(t, records)
	assert.Zero(t, entries)

	// Exactly the limit is fine, as is an empty body.
	postJob(t, h, "0123456789")
	postJob(t, h, "")
}

// trickleBody is a request body that sends a few bytes, whatever the
// Content-Length said, and notes the largest buffer it was handed.
type trickleBody struct {
	data   []byte
	maxCap int
}

func (b *trickleBody) Read(p []byte) (int, error) {
	b.maxCap = max(b.maxCap, cap(p))
	if len(b.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func (b *trickleBody) Close() error { return nil }

// A peer's Content-Length is a claim, not bytes: the handler's buffer
// grows with what arrives, so connections that announce the largest body
// and send a byte cost a byte each, not MaxBodyBytes.
func TestSubmitBodyGrowsWithArrivingBytes(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, nil) // MaxBodyBytes 1 MiB
	const announced = 1 << 20
	submit := func() *trickleBody {
		body := &trickleBody{data: []byte("x")}
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Body, r.ContentLength = body, announced
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, r)
		require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
		return body
	}
	assert.LessOrEqual(t, submit().maxCap, 4<<10, "the read buffer is sized by the Content-Length, not by the bytes")

	const n = 50
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		submit()
	}
	runtime.ReadMemStats(&after)
	perRequest := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("%d bytes allocated per request announcing %d bytes and sending 1", perRequest, announced)
	assert.Less(t, perRequest, uint64(64<<10), "bytes allocated per request that announced %d bytes and sent 1", announced)

	// The limit still holds against the Content-Length and the bytes.
	checkProblem(t, serveReq(t, h, http.MethodPost, "/", strings.Repeat("x", announced+1)), http.StatusRequestEntityTooLarge)
	postJob(t, h, strings.Repeat("x", announced))
}

func TestSubmitValidator(t *testing.T) {
	b := newMemory(t)
	var seen []byte
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{
		Validate: func(r *http.Request, body []byte) error {
			seen = body
			switch string(body) {
			case "bad":
				return &asyncreq.Problem{Status: http.StatusBadRequest, Detail: "the body is bad"}
			case "weird":
				return &asyncreq.Problem{Status: http.StatusOK, Detail: "not an error status"}
			case "ugly":
				return io.ErrUnexpectedEOF
			}
			return nil
		},
	})
	p := checkProblem(t, serveReq(t, h, http.MethodPost, "/", "bad"), http.StatusBadRequest)
	assert.Equal(t, "the body is bad", p.Detail)
	assert.Equal(t, []byte("bad"), seen)
	checkProblem(t, serveReq(t, h, http.MethodPost, "/", "weird"), http.StatusUnprocessableEntity)
	p = checkProblem(t, serveReq(t, h, http.MethodPost, "/", "ugly"), http.StatusUnprocessableEntity)
	assert.Equal(t, io.ErrUnexpectedEOF.Error(), p.Detail)
	records, _ := b.Len()
	assert.Zero(t, records, "nothing stored for rejected requests")
	postJob(t, h, "good")
}

func TestIdempotencyKey(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{
		Owner: func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil },
	})
	first := serveReq(t, h, http.MethodPost, "/", "body", "Idempotency-Key", "k1", "X-User", "ann")
	require.Equal(t, http.StatusAccepted, first.Code)
	id := readDoc(t, first).ID
	rec, err := b.Get(t.Context(), id)
	require.NoError(t, err)
	assert.Len(t, rec.BodyHash, 64, "a request with a key keeps the fingerprint its repeats must match")

	// Same key, same body: the same answer, nothing new.
	again := serveReq(t, h, http.MethodPost, "/", "body", "Idempotency-Key", `"k1"`, "X-User", "ann")
	require.Equal(t, http.StatusAccepted, again.Code)
	assert.Equal(t, id, readDoc(t, again).ID)
	assert.Equal(t, first.Header().Get("Location"), again.Header().Get("Location"))
	records, entries := b.Len()
	assert.Equal(t, 1, records)
	assert.Equal(t, 1, entries)

	// Same key, different body.
	checkProblem(t, serveReq(t, h, http.MethodPost, "/", "other", "Idempotency-Key", "k1", "X-User", "ann"), http.StatusUnprocessableEntity)

	// Keys are scoped to the owner.
	other := postJob(t, h, "body", "Idempotency-Key", "k1", "X-User", "bob")
	assert.NotEqual(t, id, other)

	// Malformed keys.
	checkProblem(t, serveReq(t, h, http.MethodPost, "/", "body", "Idempotency-Key", strings.Repeat("k", 256)), http.StatusBadRequest)
	checkProblem(t, serveReq(t, h, http.MethodPost, "/", "body", "Idempotency-Key", "a", "Idempotency-Key", "b"), http.StatusBadRequest)
	checkProblem(t, serveReq(t, h, http.MethodPost, "/", "body", "Idempotency-Key", `""`), http.StatusBadRequest)

	// A repeat after the request finished still answers as the first did.
	setRecord(t, b, id, succeed(&asyncreq.Result{Body: []byte("done")}))
	again = serveReq(t, h, http.MethodPost, "/", "body", "Idempotency-Key", "k1", "X-User", "ann")
	require.Equal(t, http.StatusAccepted, again.Code)
	assert.Equal(t, id, readDoc(t, again).ID)
}

// A repeat of an Idempotency-Key is the same request only if everything
// the processor sees is the same: method, path and query, Content-Type,
// kept headers and body. Headers that change with every attempt (tracing,
// request ids, forwarding) are no part of it, or retries through a proxy
// or an instrumented client would all be refused.
func TestIdempotencyKeyComparesTheWholeRequest(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{KeepHeaders: []string{"*"}})
	post := func(target, body string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		for i := 0; i < len(hdr); i += 2 {
			r.Header.Add(hdr[i], hdr[i+1])
		}
		r.Header.Set("Idempotency-Key", "report-1")
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, r)
		return rr
	}
	first := post("/?format=pdf", "q3", "Content-Type", "text/plain", "Accept-Language", "en", "Traceparent", "00-a-1-01")
	require.Equal(t, http.StatusAccepted, first.Code, first.Body.String())
	id := readDoc(t, first).ID

	again := post("/?format=pdf", "q3", "Content-Type", "text/plain", "Accept-Language", "en",
		"Traceparent", "00-b-2-01", "X-Request-Id", "r2", "X-Forwarded-For", "10.0.0.2")
	require.Equal(t, http.StatusAccepted, again.Code, "a retry with new tracing headers: %s", again.Body.String())
	assert.Equal(t, id, readDoc(t, again).ID)

	for name, rr := range map[string]*httptest.ResponseRecorder{
		"another query":        post("/?format=csv", "q3", "Content-Type", "text/plain", "Accept-Language", "en"),
		"no query":             post("/", "q3", "Content-Type", "text/plain", "Accept-Language", "en"),
		"another Content-Type": post("/?format=pdf", "q3", "Content-Type", "application/json", "Accept-Language", "en"),
		"no Content-Type":      post("/?format=pdf", "q3", "Accept-Language", "en"),
		"another kept header":  post("/?format=pdf", "q3", "Content-Type", "text/plain", "Accept-Language", "fr"),
		"a kept header more":   post("/?format=pdf", "q3", "Content-Type", "text/plain", "Accept-Language", "en", "X-Region", "eu"),
		"another body":         post("/?format=pdf", "q4", "Content-Type", "text/plain", "Accept-Language", "en"),
		// Fields must not run together: "/?format=pdf" + "q3" is not
		// "/?format=pdfq" + "3".
		"fields shifted": post("/?format=pdfq", "3", "Content-Type", "text/plain", "Accept-Language", "en"),
	} {
		p := checkProblem(t, rr, http.StatusUnprocessableEntity)
		assert.NotEmpty(t, p.Detail, name)
	}
	records, entries := b.Len()
	assert.Equal(t, 1, records, "no request was made by a mismatched repeat")
	assert.Equal(t, 1, entries)

	// A record written when the key compared the body alone (its BodyHash
	// the hash of the body) still answers a repeat with that body.
	legacy := postJob(t, h, "old", "Idempotency-Key", "legacy")
	sum := sha256.Sum256([]byte("old"))
	setRecord(t, b, legacy, func(r *asyncreq.Record) { r.BodyHash = hex.EncodeToString(sum[:]) })
	rr := serveReq(t, h, http.MethodPost, "/", "old", "Idempotency-Key", "legacy")
	require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
	assert.Equal(t, legacy, readDoc(t, rr).ID)
	checkProblem(t, serveReq(t, h, http.MethodPost, "/", "new", "Idempotency-Key", "legacy"), http.StatusUnprocessableEntity)
}

func TestIdempotencyRace(t *testing.T) {
	const n = 32
	for name, split := range map[string]bool{"accepter": false, "separate store and queue": true} {
		t.Run(name, func(t *testing.T) {
			b := newMemory(t)
			var h *asyncreq.Handler
			if split {
				h = newTestHandler(t, asyncreq.Pair(storeOnly{b}, queueOnly{b}), nil)
			} else {
				h = newTestHandler(t, b, nil)
			}
			codes := make([]int, n)
			ids := make([]string, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("same"))
					r.Header.Set("Idempotency-Key", "race")
					rr := httptest.NewRecorder()
					h.ServeHTTP(rr, r)
					codes[i] = rr.Code
					var doc asyncreq.StatusDocument
					if rr.Code == http.StatusAccepted && json.Unmarshal(rr.Body.Bytes(), &doc) == nil {
						ids[i] = doc.ID
					}
				})
			}
			close(start)
			wg.Wait()

			records, entries := b.Len()
			require.Equal(t, 1, records, "exactly one record")
			require.Equal(t, 1, entries, "enqueued once")
			var id string
			for i := range n {
				switch codes[i] {
				case http.StatusAccepted:
					if id == "" {
						id = ids[i]
					}
					require.Equal(t, id, ids[i], "every 202 names the same request")
				case http.StatusConflict:
					require.True(t, split, "409 only while a separate queue is being filled")
				default:
					require.Failf(t, "unexpected status", "%d", codes[i])
				}
			}
			require.NotEmpty(t, id, "the first submit is accepted")
		})
	}
}

func TestOwnerIsolation(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{
		Owner: func(r *http.Request) (string, error) {
			u := r.Header.Get("X-User")
			if u == "" {
				return "", io.EOF
			}
			return u, nil
		},
	})
	rr := serveReq(t, h, http.MethodPost, "/", "x")
	p := checkProblem(t, rr, http.StatusUnauthorized)
	assert.NotContains(t, p.Detail, io.EOF.Error())
	assert.Equal(t, "Bearer", rr.Header().Get("WWW-Authenticate"), "a 401 carries a challenge (RFC 9110)")

	id := postJob(t, h, "x", "X-User", "ann")
	rec, err := b.Get(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, "ann", rec.Owner)

	require.Equal(t, http.StatusOK, serveReq(t, h, http.MethodGet, "/"+id+"/status", "", "X-User", "ann").Code)
	checkProblem(t, serveReq(t, h, http.MethodGet, "/"+id+"/status", "", "X-User", "bob"), http.StatusNotFound)
	checkProblem(t, serveReq(t, h, http.MethodGet, "/"+id, "", "X-User", "bob"), http.StatusNotFound)
	checkProblem(t, serveReq(t, h, http.MethodDelete, "/"+id, "", "X-User", "bob"), http.StatusNotFound)
	checkProblem(t, serveReq(t, h, http.MethodGet, "/"+id+"/status", ""), http.StatusUnauthorized)

	rec, err = b.Get(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StatePending, rec.State, "another owner's DELETE changed nothing")

	// A *Problem from the owner function is sent as it is.
	h = newTestHandler(t, b, &asyncreq.HandlerOptions{
		Owner: func(*http.Request) (string, error) {
			return "", &asyncreq.Problem{Status: http.StatusForbidden, Detail: "tenant suspended"}
		},
	})
	rr = serveReq(t, h, http.MethodPost, "/", "x")
	p = checkProblem(t, rr, http.StatusForbidden)
	assert.Equal(t, "tenant suspended", p.Detail)
	assert.Empty(t, rr.Header().Get("WWW-Authenticate"), "a 403 carries no challenge")

	// A *Problem without a status is a 401, with the configured challenge.
	h = newTestHandler(t, b, &asyncreq.HandlerOptions{
		Challenge: `Bearer realm="jobs"`,
		Owner: func(*http.Request) (string, error) {
			return "", &asyncreq.Problem{Detail: "token expired"}
		},
	})
	rr = serveReq(t, h, http.MethodGet, "/"+id+"/status", "")
	p = checkProblem(t, rr, http.StatusUnauthorized)
	assert.Equal(t, "token expired", p.Detail)
	assert.Equal(t, `Bearer realm="jobs"`, rr.Header().Get("WWW-Authenticate"))
}

func TestStatusStates(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, nil)
	id := postJob(t, h, "x")
	statusURL := "/" + id + "/status"

	rr := serveReq(t, h, http.MethodGet, statusURL, "")
	require.Equal(t, http.StatusOK, rr.Code)
	assert.Equal(t, "1", rr.Header().Get("Retry-After"))
	assert.Equal(t, "no-store", rr.Header().Get("Cache-Control"))
	assert.Empty(t, rr.Header().Get("Location"))
	assert.Equal(t, asyncreq.StatePending, readDoc(t, rr).Status)

	setRecord(t, b, id, func(r *asyncreq.Record) {
		r.State = asyncreq.StateRunning
		r.Attempts = 1
		r.Progress = &asyncreq.Progress{Percent: 40, Message: "resizing"}
	})
	rr = serveReq(t, h, http.MethodGet, statusURL, "")
	require.Equal(t, http.StatusOK, rr.Code)
	assert.Equal(t, "1", rr.Header().Get("Retry-After"))
	doc := readDoc(t, rr)
	assert.Equal(t, asyncreq.StateRunning, doc.Status)
	assert.Equal(t, 1, doc.Attempts)
	assert.Equal(t, &asyncreq.Progress{Percent: 40, Message: "resizing"}, doc.Progress)

	setRecord(t, b, id, succeed(&asyncreq.Result{ContentType: "text/plain", Body: []byte("done")}))
	rr = serveReq(t, h, http.MethodGet, statusURL, "")
	require.Equal(t, http.StatusSeeOther, rr.Code)
	assert.Equal(t, "/"+id, rr.Header().Get("Location"))
	assert.Empty(t, rr.Header().Get("Retry-After"))
	doc = readDoc(t, rr)
	assert.Equal(t, asyncreq.StateSucceeded, doc.Status)
	assert.Equal(t, "/"+id, doc.ResultURL)
	assert.Equal(t, time.UTC, doc.ExpiresAt.Location())
	assert.False(t, doc.ExpiresAt.IsZero())

	// HEAD answers like GET without a body.
	rr = serveReq(t, h, http.MethodHead, statusURL, "")
	require.Equal(t, http.StatusSeeOther, rr.Code)
	assert.Equal(t, "/"+id, rr.Header().Get("Location"))
	assert.Equal(t, "application/json", rr.Header().Get("Content-Type"))
	assert.Zero(t, rr.Body.Len())

	for _, tc := range []struct {
		state  asyncreq.State
		err    *asyncreq.Problem
		status int
	}{
		{asyncreq.StateFailed, &asyncreq.Problem{Status: 422, Title: "Unprocessable Content", Detail: "not UTF-8"}, 422},
		{asyncreq.StateFailed, nil, 500},
		{asyncreq.StateCanceled, nil, 409},
	} {
		id := postJob(t, h, "x")
		setRecord(t, b, id, func(r *asyncreq.Record) {
			r.State = tc.state
			r.Error = tc.err
			r.ExpiresAt = time.Now().Add(time.Hour)
		})
		rr := serveReq(t, h, http.MethodGet, "/"+id+"/status", "")
		require.Equal(t, http.StatusOK, rr.Code)
		assert.Empty(t, rr.Header().Get("Retry-After"), "final: no Retry-After")
		doc := readDoc(t, rr)
		assert.Equal(t, tc.state, doc.Status)
		require.NotNil(t, doc.Error)
		assert.Equal(t, tc.status, doc.Error.Status)
		assert.NotEmpty(t, doc.Error.Title)
		assert.Empty(t, doc.ResultURL)
	}
}

func TestStatusAcceptedWhilePending(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{AcceptedWhilePending: true})
	id := postJob(t, h, "x")
	statusURL := "/" + id + "/status"
	rr := serveReq(t, h, http.MethodGet, statusURL, "")
	require.Equal(t, http.StatusAccepted, rr.Code)
	assert.Equal(t, statusURL, rr.Header().Get("Location"))
	assert.Equal(t, "1", rr.Header().Get("Retry-After"))
	assert.Equal(t, asyncreq.StatePending, readDoc(t, rr).Status)

	setRecord(t, b, id, succeed(&asyncreq.Result{Body: []byte("ok")}))
	rr = serveReq(t, h, http.MethodGet, statusURL, "")
	require.Equal(t, http.StatusOK, rr.Code, "the result itself (poller_test.go)")
	assert.Equal(t, "/"+id, rr.Header().Get("Content-Location"))
	assert.Equal(t, "ok", rr.Body.String())
}

func TestNotFoundAndGone(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, nil)
	unknown := asyncreq.NewID()
	for _, target := range []string{"/" + unknown, "/" + unknown + "/status", "/not-an-id", "/not-an-id/status", "/" + strings.ToLower(unknown)} {
		checkProblem(t, serveReq(t, h, http.MethodGet, target, ""), http.StatusNotFound)
	}
	checkProblem(t, serveReq(t, h, http.MethodDelete, "/"+unknown, ""), http.StatusNotFound)

	id := postJob(t, h, "x")
	setRecord(t, b, id, succeed(&asyncreq.Result{}))
	require.NoError(t, b.Delete(t.Context(), id, true))
	checkProblem(t, serveReq(t, h, http.MethodGet, "/"+id+"/status", ""), http.StatusGone)
	checkProblem(t, serveReq(t, h, http.MethodGet, "/"+id, ""), http.StatusGone)
	checkProblem(t, serveReq(t, h, http.MethodDelete, "/"+id, ""), http.StatusGone)
}

// A tombstone says a record existed: only its owner may learn that. To
// anyone else a deleted or purged record answers as an id never used.
func TestGoneOnlyToItsOwner(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{
		Owner: func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil },
	})
	unknown := asyncreq.NewID()
	deleted := postJob(t, h, "x", "X-User", "alice")
	setRecord(t, b, deleted, succeed(&asyncreq.Result{}))
	require.Equal(t, http.StatusNoContent, serveReq(t, h, http.MethodDelete, "/"+deleted, "", "X-User", "alice").Code)

	for _, target := range []string{"/" + deleted + "/status", "/" + deleted} {
		checkProblem(t, serveReq(t, h, http.MethodGet, target, "", "X-User", "alice"), http.StatusGone)
		for _, user := range []string{"mallory", ""} {
			got := serveReq(t, h, http.MethodGet, target, "", "X-User", user)
			checkProblem(t, got, http.StatusNotFound)
			want := serveReq(t, h, http.MethodGet, strings.Replace(target, deleted, unknown, 1), "", "X-User", user)
			assert.Equal(t, want.Body.String(), got.Body.String(), "%s to %q answers as an unknown id", target, user)
			assert.Equal(t, want.Header(), got.Header(), "%s to %q answers as an unknown id", target, user)
		}
	}
	checkProblem(t, serveReq(t, h, http.MethodDelete, "/"+deleted, "", "X-User", "mallory"), http.StatusNotFound)
	checkProblem(t, serveReq(t, h, http.MethodDelete, "/"+deleted, "", "X-User", "alice"), http.StatusGone)

	// A Store that cannot tell a tombstone's owner (a plain ErrGone) gets
	// 404 when there are owners, and 410 when there are none.
	plain := plainGone{b}
	checkProblem(t, serveReq(t, newTestHandler(t, asyncreq.Pair(plain, b), &asyncreq.HandlerOptions{
		Owner: func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil },
	}), http.MethodGet, "/"+deleted+"/status", "", "X-User", "alice"), http.StatusNotFound)
	checkProblem(t, serveReq(t, newTestHandler(t, asyncreq.Pair(plain, b), nil), http.MethodGet, "/"+deleted+"/status", ""), http.StatusGone)
}

// plainGone is a Store that answers a tombstone with ErrGone alone.
type plainGone struct{ asyncreq.Store }

func (s plainGone) Get(ctx context.Context, id string) (*asyncreq.Record, error) {
	rec, err := s.Store.Get(ctx, id)
	if errors.Is(err, asyncreq.ErrGone) {
		return nil, asyncreq.ErrGone
	}
	return rec, err
}

func TestUnknownPathsAndMethods(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, nil)
	id := asyncreq.NewID()
	for _, tc := range []struct{ method, target, allow string }{
		{http.MethodGet, "/", "POST"},
		{http.MethodPut, "/", "POST"},
		{http.MethodPost, "/" + id, "GET, HEAD, DELETE"},
		{http.MethodPatch, "/" + id, "GET, HEAD, DELETE"},
		{http.MethodOptions, "/" + id, "GET, HEAD, DELETE"},
		{http.MethodPost, "/" + id + "/status", "GET, HEAD"},
		{http.MethodDelete, "/" + id + "/status", "GET, HEAD"},
	} {
		rr := serveReq(t, h, tc.method, tc.target, "")
		checkProblem(t, rr, http.StatusMethodNotAllowed)
		assert.Equal(t, tc.allow, rr.Header().Get("Allow"), tc.method+" "+tc.target)
	}
	for _, target := range []string{"/a/b/c", "/" + id + "/", "/" + id + "/statusx", "//", "/./status", "/../x", "/" + id + "/status/"} {
		rr := serveReq(t, h, http.MethodGet, target, "")
		checkProblem(t, rr, http.StatusNotFound)
		assert.Empty(t, rr.Header().Get("Location"), "no redirect for %s", target)
	}
}

func TestResult(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, nil)
	id := postJob(t, h, "x")

	// Before completion: 404 pointing at the status URL.
	rr := serveReq(t, h, http.MethodGet, "/"+id, "")
	p := checkProblem(t, rr, http.StatusNotFound)
	assert.Equal(t, "/"+id+"/status", p.StatusURL)
	assert.Contains(t, p.Detail, "/"+id+"/status")
	assert.Equal(t, "no-store", rr.Header().Get("Cache-Control"))

	setRecord(t, b, id, succeed(&asyncreq.Result{
		StatusCode:  http.StatusCreated,
		ContentType: "application/json",
		Header: http.Header{
			"X-Custom":          {"a", "b"},
			"Connection":        {"X-Hop"},
			"X-Hop":             {"secret"},
			"Transfer-Encoding": {"chunked"},
			"Etag":              {`"theirs"`},
			"Content-Length":    {"999"},
		},
		Body: []byte(`{"ok":true}`),
	}))
	rr = serveReq(t, h, http.MethodGet, "/"+id, "")
	require.Equal(t, http.StatusCreated, rr.Code)
	assert.Equal(t, `{"ok":true}`, rr.Body.String())
	assert.Equal(t, "application/json", rr.Header().Get("Content-Type"))
	assert.Equal(t, []string{"a", "b"}, rr.Header()["X-Custom"])
	assert.Equal(t, "11", rr.Header().Get("Content-Length"))
	for _, k := range []string{"Connection", "X-Hop", "Transfer-Encoding"} {
		assert.Empty(t, rr.Header().Get(k), k)
	}
	etag := rr.Header().Get("ETag")
	require.Regexp(t, `^"[0-9a-f]{32}"$`, etag, "a strong ETag")

	// The same result gives the same tag.
	assert.Equal(t, etag, serveReq(t, h, http.MethodGet, "/"+id, "").Header().Get("ETag"))

	for _, inm := range []string{etag, "W/" + etag, `"nope", ` + etag, "*"} {
		rr = serveReq(t, h, http.MethodGet, "/"+id, "", "If-None-Match", inm)
		require.Equal(t, http.StatusNotModified, rr.Code, inm)
		assert.Zero(t, rr.Body.Len())
		assert.Equal(t, etag, rr.Header().Get("ETag"))
	}
	rr = serveReq(t, h, http.MethodGet, "/"+id, "", "If-None-Match", `"nope"`)
	require.Equal(t, http.StatusCreated, rr.Code)

	rr = serveReq(t, h, http.MethodHead, "/"+id, "")
	require.Equal(t, http.StatusCreated, rr.Code)
	assert.Zero(t, rr.Body.Len())
	assert.Equal(t, "11", rr.Header().Get("Content-Length"))
	assert.Equal(t, etag, rr.Header().Get("ETag"))

	// Another body gives another tag; a missing content type is sniffed.
	id2 := postJob(t, h, "y")
	setRecord(t, b, id2, succeed(&asyncreq.Result{Body: []byte("<html><body>hi</body></html>")}))
	rr = serveReq(t, h, http.MethodGet, "/"+id2, "")
	require.Equal(t, http.StatusOK, rr.Code)
	assert.Equal(t, "text/html; charset=utf-8", rr.Header().Get("Content-Type"))
	assert.NotEqual(t, etag, rr.Header().Get("ETag"))

	// A result that asks for no Content-Type gets none.
	idNT := postJob(t, h, "nt")
	setRecord(t, b, idNT, succeed(&asyncreq.Result{Header: http.Header{"Content-Type": nil}, Body: []byte("<html>")}))
	rr = serveReq(t, h, http.MethodGet, "/"+idNT, "")
	require.Equal(t, http.StatusOK, rr.Code)
	assert.Empty(t, rr.Header().Get("Content-Type"))

	// A result with a status that allows no body.
	id3 := postJob(t, h, "z")
	setRecord(t, b, id3, succeed(&asyncreq.Result{StatusCode: http.StatusNoContent}))
	rr = serveReq(t, h, http.MethodGet, "/"+id3, "")
	require.Equal(t, http.StatusNoContent, rr.Code)
	assert.Zero(t, rr.Body.Len())

	// An invalid status is not served.
	id4 := postJob(t, h, "w")
	setRecord(t, b, id4, succeed(&asyncreq.Result{StatusCode: 42, Body: []byte("x")}))
	checkProblem(t, serveReq(t, h, http.MethodGet, "/"+id4, ""), http.StatusInternalServerError)
}

// A result replays the processor's headers but not its Set-Cookie, which
// would hand the cookie to whoever fetches the result, unless the user
// asks for it.
func TestResultDoesNotReplaySetCookie(t *testing.T) {
	res := &asyncreq.Result{
		ContentType: "text/plain",
		Header:      http.Header{"Set-Cookie": {"session=abc; HttpOnly"}, "X-Report": {"1"}},
		Body:        []byte("done"),
	}
	for _, replay := range []bool{false, true} {
		b := newMemory(t)
		h := newTestHandler(t, b, &asyncreq.HandlerOptions{ReplaySetCookie: replay})
		id := postJob(t, h, "x")
		setRecord(t, b, id, succeed(res))
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			rr := serveReq(t, h, method, "/"+id, "")
			require.Equal(t, http.StatusOK, rr.Code)
			assert.Equal(t, "1", rr.Header().Get("X-Report"))
			if replay {
				assert.Equal(t, []string{"session=abc; HttpOnly"}, rr.Header()["Set-Cookie"], "ReplaySetCookie replays it")
			} else {
				assert.Empty(t, rr.Header()["Set-Cookie"], "%s of the result replayed Set-Cookie", method)
			}
		}
	}

	// Nor on a submit answered with the result.
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		defer b.Close()
		h := newTestHandler(t, b, nil)
		done := finishAfter(b, time.Second, succeed(res))
		rr := serveReq(t, h, http.MethodPost, "/", "x", "Prefer", "wait=5")
		<-done
		require.Equal(t, http.StatusOK, rr.Code)
		assert.Empty(t, rr.Header()["Set-Cookie"])
	})
}

// What one owner's requests answer must not be stored by a shared cache
// and served to another: status answers are no-store, results and
// failures of owned records private, whatever the result's own
// Cache-Control allowed.
func TestOwnedAnswersAreNotSharedByCaches(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{
		Owner: func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil },
	})
	status := func(id string) *httptest.ResponseRecorder {
		return serveReq(t, h, http.MethodGet, "/"+id+"/status", "", "X-User", "ann")
	}
	result := func(id string) *httptest.ResponseRecorder {
		return serveReq(t, h, http.MethodGet, "/"+id, "", "X-User", "ann")
	}

	pending := postJob(t, h, "x", "X-User", "ann")
	assert.Equal(t, "no-store", status(pending).Header().Get("Cache-Control"), "status of a pending request")
	assert.Equal(t, "no-store", result(pending).Header().Get("Cache-Control"), "result of a pending request")

	for _, tc := range []struct {
		own  []string // the result's own Cache-Control
		want string
	}{
		{nil, "private"},
		{[]string{"public, max-age=3600"}, "max-age=3600, private"},
		{[]string{"max-age=60, s-maxage=600", "Public"}, "max-age=60, private"},
		{[]string{`private="Set-Cookie", max-age=60`}, "max-age=60, private"},
		{[]string{"no-store"}, "no-store"},
		{[]string{"private, max-age=60"}, "private, max-age=60"},
	} {
		id := postJob(t, h, "x", "X-User", "ann")
		res := &asyncreq.Result{ContentType: "text/plain", Body: []byte("done")}
		if tc.own != nil {
			res.Header = http.Header{"Cache-Control": tc.own}
		}
		setRecord(t, b, id, succeed(res))
		rr := status(id)
		require.Equal(t, http.StatusSeeOther, rr.Code)
		assert.Equal(t, "no-store", rr.Header().Get("Cache-Control"), "status of a succeeded request")
		rr = result(id)
		require.Equal(t, http.StatusOK, rr.Code)
		assert.Equal(t, tc.want, strings.Join(rr.Header()["Cache-Control"], ", "), "result with Cache-Control %q", tc.own)
		rr = serveReq(t, h, http.MethodGet, "/"+id, "", "X-User", "ann", "If-None-Match", rr.Header().Get("ETag"))
		require.Equal(t, http.StatusNotModified, rr.Code)
		assert.Equal(t, tc.want, strings.Join(rr.Header()["Cache-Control"], ", "), "304 of a result with Cache-Control %q", tc.own)
	}

	failed := postJob(t, h, "x", "X-User", "ann")
	setRecord(t, b, failed, func(r *asyncreq.Record) {
		r.State = asyncreq.StateFailed
		r.Error = &asyncreq.Problem{Status: http.StatusUnprocessableEntity, Detail: "no"}
	})
	assert.Equal(t, "no-store", status(failed).Header().Get("Cache-Control"), "status of a failed request")
	rr := result(failed)
	checkProblem(t, rr, http.StatusUnprocessableEntity)
	assert.Equal(t, "private", rr.Header().Get("Cache-Control"), "failure of an owned request")

	// A record without an owner keeps the result's own Cache-Control.
	anon := postJob(t, h, "x")
	setRecord(t, b, anon, succeed(&asyncreq.Result{Header: http.Header{"Cache-Control": {"public, max-age=60"}}, Body: []byte("x")}))
	rr = serveReq(t, h, http.MethodGet, "/"+anon, "")
	require.Equal(t, http.StatusOK, rr.Code)
	assert.Equal(t, "public, max-age=60", rr.Header().Get("Cache-Control"))
}

func TestResultFailed(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, nil)
	for _, tc := range []struct {
		state  asyncreq.State
		err    *asyncreq.Problem
		status int
		detail string
	}{
		{asyncreq.StateFailed, &asyncreq.Problem{Status: 422, Detail: "body is not UTF-8"}, 422, "body is not UTF-8"},
		{asyncreq.StateFailed, &asyncreq.Problem{Detail: "no status named"}, 500, "no status named"},
		{asyncreq.StateFailed, nil, 500, ""},
		{asyncreq.StateCanceled, nil, 409, ""},
	} {
		id := postJob(t, h, "x")
		setRecord(t, b, id, func(r *asyncreq.Record) {
			r.State = tc.state
			r.Error = tc.err
		})
		p := checkProblem(t, serveReq(t, h, http.MethodGet, "/"+id, ""), tc.status)
		if tc.detail != "" {
			assert.Equal(t, tc.detail, p.Detail)
		}
	}
}

func TestDelete(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, nil)

	// Pending: canceled at once.
	id := postJob(t, h, "x")
	rr := serveReq(t, h, http.MethodDelete, "/"+id, "")
	require.Equal(t, http.StatusAccepted, rr.Code)
	doc := readDoc(t, rr)
	assert.Equal(t, asyncreq.StateCanceled, doc.Status)
	require.NotNil(t, doc.Error)
	rec, err := b.Get(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, asyncreq.StateCanceled, rec.State)
	assert.False(t, rec.ExpiresAt.IsZero(), "a canceled record expires")
	rr = serveReq(t, h, http.MethodGet, "/"+id+"/status", "")
	require.Equal(t, http.StatusOK, rr.Code)
	assert.Equal(t, asyncreq.StateCanceled, readDoc(t, rr).Status)

	// Running: cancel requested; the worker records the outcome.
	id = postJob(t, h, "x")
	setRecord(t, b, id, func(r *asyncreq.Record) { r.State = asyncreq.StateRunning; r.LeaseToken = "t" })
	rr = serveReq(t, h, http.MethodDelete, "/"+id, "")
	require.Equal(t, http.StatusAccepted, rr.Code)
	assert.Equal(t, asyncreq.StateRunning, readDoc(t, rr).Status)
	rec, err = b.Get(t.Context(), id)
	require.NoError(t, err)
	assert.True(t, rec.CancelRequested)
	assert.Equal(t, "t", rec.LeaseToken)

	// Final: deleted, and gone afterwards.
	id = postJob(t, h, "x")
	setRecord(t, b, id, succeed(&asyncreq.Result{Body: []byte("r")}))
	rr = serveReq(t, h, http.MethodDelete, "/"+id, "")
	require.Equal(t, http.StatusNoContent, rr.Code)
	assert.Zero(t, rr.Body.Len())
	_, err = b.Get(t.Context(), id)
	require.ErrorIs(t, err, asyncreq.ErrGone)
	checkProblem(t, serveReq(t, h, http.MethodGet, "/"+id, ""), http.StatusGone)

	checkProblem(t, serveReq(t, h, http.MethodDelete, "/not-an-id", ""), http.StatusNotFound)
}
