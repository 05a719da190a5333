package client

import (
	"context"

	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDurableFunctionsDialect: the status URL answers 202 + Location while
// running (with a body that is not asyncreq's status document) and 200 with
// the final document when done.
func TestDurableFunctionsDialect(t *testing.T) {
	var polls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orchestrators/resize", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/runtime/instances/abc123")
		writeJSON(w, http.StatusAccepted, `{"id":"abc123","statusQueryGetUri":"/runtime/instances/abc123"}`)
	})
	mux.HandleFunc("GET /runtime/instances/abc123", func(w http.ResponseWriter, r *http.Request) {
		if polls.Add(1) < 3 {
			w.Header().Set("Location", "/runtime/instances/abc123")
			w.Header().Set("Retry-After", "10")
			writeJSON(w, http.StatusAccepted, `{"name":"resize","runtimeStatus":"Running"}`)
			return
		}
		writeJSON(w, http.StatusOK, `{"name":"resize","runtimeStatus":"Completed","output":"done"}`)
	})
	srv := newServer(t, mux)
	c := newTestClient(t, &Options{PollMax: time.Minute})
	sleeps := recordSleeps(c)

	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/orchestrators/resize", []byte(`{}`), &SubmitOptions{ContentType: "application/json"})
	require.NoError(t, err)
	assert.Equal(t, "abc123", op.ID())
	assert.Equal(t, srv.URL+"/runtime/instances/abc123", op.StatusURL())
	res, err := op.Wait(t.Context(), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.JSONEq(t, `{"name":"resize","runtimeStatus":"Completed","output":"done"}`, string(res.Body))
	assert.Equal(t, "application/json", res.ContentType)
	assert.EqualValues(t, 3, polls.Load())
	assert.Equal(t, []time.Duration{10 * time.Second, 10 * time.Second}, sleeps.all(), "Retry-After honoured")
}

// TestInlineResult: a server that finishes on submit with 200.
func TestInlineResult(t *testing.T) {
	var calls atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo", "yes")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(append([]byte("echo: "), body...))
	}))
	c := newTestClient(t, nil)
	op, err := c.Submit(t.Context(), "", srv.URL, []byte("hi"), nil)
	require.NoError(t, err)
	require.True(t, op.Done())
	res, err := op.Wait(t.Context(), nil)
	require.NoError(t, err)
	assert.Equal(t, "echo: hi", string(res.Body))
	assert.Equal(t, "text/plain", res.ContentType)
	assert.Equal(t, "yes", res.Header.Get("X-Echo"))
	assert.EqualValues(t, 1, calls.Load(), "no further request")
	_, err = op.ResumeToken()
	require.ErrorIs(t, err, ErrNotResumable)

	// The result returned is the caller's to change.
	res.Body[0] = 'X'
	again, err := op.Result(t.Context())
	require.NoError(t, err)
	assert.Equal(t, "echo: hi", string(again.Body))
}

// TestSubmitSeeOther: a server that answers the submit with 303 to the
// result.
func TestSubmitSeeOther(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /jobs", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/results/7", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /results/7", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "seven")
	})
	srv := newServer(t, mux)
	c := newTestClient(t, nil)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/jobs", nil, nil)
	require.NoError(t, err)
	require.True(t, op.Done())
	tok, err := op.ResumeToken()
	require.NoError(t, err)
	res, err := op.Wait(t.Context(), nil)
	require.NoError(t, err)
	assert.Equal(t, "seven", string(res.Body))

	// The token of a finished operation resumes to its result.
	op2, err := c.Resume(tok)
	require.NoError(t, err)
	require.True(t, op2.Done())
	res, err = op2.Wait(t.Context(), nil)
	require.NoError(t, err)
	assert.Equal(t, "seven", string(res.Body))
}

// TestSubmitPreferWaitFailureDialects: a submit with Prefer: wait whose
// request failed in time, as asyncreq servers answer it: 303 to the status
// URL with the status document, 303 to the status URL without a body, and
// (servers before the 303) the failure's own status with
// Content-Location and Preference-Applied. Each is a finished operation
// whose Wait returns the failure, never a failed submit or a "result".
func TestSubmitPreferWaitFailureDialects(t *testing.T) {
	const id = "0J7Q4ZK2XHD8Q6M5R3W1T9YV0C"
	failedDoc := `{"id":"` + id + `","status":"failed","created_at":"2026-11-26T10:00:00Z",` +
		`"updated_at":"2026-11-26T10:00:01Z","attempts":1,"status_url":"/jobs/` + id + `/status",` +
		`"error":{"type":"about:blank","title":"Unprocessable Content","status":422,"detail":"not UTF-8"}}`
	for name, submit := range map[string]http.HandlerFunc{
		"303 with the status document": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "/jobs/"+id+"/status")
			w.Header().Set("Preference-Applied", "wait=5")
			writeJSON(w, http.StatusSeeOther, failedDoc)
		},
		"303 without a body": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "/jobs/"+id+"/status")
			w.WriteHeader(http.StatusSeeOther)
		},
		"the failure's own status": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Location", "/jobs/"+id)
			w.Header().Set("Preference-Applied", "wait=5")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(w, `{"type":"about:blank","title":"Unprocessable Content","status":422,"detail":"not UTF-8"}`)
		},
	} {
		t.Run(name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.HandleFunc("POST /jobs", submit)
			mux.HandleFunc("GET /jobs/"+id+"/status", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, failedDoc)
			})
			mux.HandleFunc("GET /jobs/"+id, func(w http.ResponseWriter, r *http.Request) {
				t.Errorf("the result URL of a failed request was fetched")
				http.Error(w, "not here", http.StatusNotFound)
			})
			srv := newServer(t, mux)
			c := newTestClient(t, nil)
			op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/jobs", []byte("x"), &SubmitOptions{Wait: 5 * time.Second})
			require.NoError(t, err, "a request that failed in time is not a failed submit")
			assert.Equal(t, id, op.ID())
			assert.Equal(t, srv.URL+"/jobs/"+id+"/status", op.StatusURL())
			_, err = op.Wait(t.Context(), nil)
			var oe *OperationError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, asyncreq.StateFailed, oe.State)
			assert.Equal(t, http.StatusUnprocessableEntity, oe.Problem.Status)
			assert.Equal(t, "not UTF-8", oe.Problem.Detail)
			assert.True(t, op.Done())
		})
	}
}

// TestSubmitWithoutLocation: a 202 that names no status URL is a protocol
// error.
func TestSubmitWithoutLocation(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	c := newTestClient(t, nil)
	_, err := c.Submit(t.Context(), http.MethodPost, srv.URL, nil, &SubmitOptions{IdempotencyKey: "k"})
	require.ErrorIs(t, err, ErrProtocol)
}

// submitFlaky answers 503 (with Retry-After) to the first `fail` submits and
// 202 after, recording the Idempotency-Key of each.
type submitFlaky struct {
	fail int
	mu   sync.Mutex
	keys []string
}

func (s *submitFlaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
	n := len(s.keys)
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusOK, `{"id":"x","status":"pending"}`)
		return
	}
	if n <= s.fail {
		w.Header().Set("Retry-After", "2")
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"title":"Service Unavailable","status":503,"detail":"backend down"}`)
		return
	}
	w.Header().Set("Location", "/s")
	writeJSON(w, http.StatusAccepted, `{"id":"x","status":"pending","status_url":"/s"}`)
}

func (s *submitFlaky) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

func TestSubmitRetriedOnlyWithKey(t *testing.T) {
	t.Run("with key", func(t *testing.T) {
		h := &submitFlaky{fail: 1}
		srv := newServer(t, h)
		c := newTestClient(t, &Options{PollMax: time.Minute})
		sleeps := recordSleeps(c)
		op, err := c.Submit(t.Context(), http.MethodPost, srv.URL, []byte("x"), &SubmitOptions{IdempotencyKey: "key-1"})
		require.NoError(t, err)
		assert.Equal(t, "x", op.ID())
		assert.Equal(t, []string{"key-1", "key-1"}, h.seen())
		assert.Equal(t, []time.Duration{2 * time.Second}, sleeps.all(), "Retry-After of the 503 honoured")
	})
	t.Run("generated key", func(t *testing.T) {
		h := &submitFlaky{fail: 2}
		srv := newServer(t, h)
		c := newTestClient(t, nil)
		recordSleeps(c)
		op, err := c.Submit(t.Context(), http.MethodPost, srv.URL, nil, &SubmitOptions{GenerateIdempotencyKey: true})
		require.NoError(t, err)
		keys := h.seen()
		require.Len(t, keys, 3)
		assert.NotEmpty(t, keys[0])
		assert.Equal(t, keys[0], keys[1])
		assert.Equal(t, keys[0], keys[2])
		assert.Equal(t, keys[0], op.IdempotencyKey())
	})
	t.Run("key in header", func(t *testing.T) {
		h := &submitFlaky{fail: 1}
		srv := newServer(t, h)
		c := newTestClient(t, nil)
		recordSleeps(c)
		op, err := c.Submit(t.Context(), http.MethodPost, srv.URL, nil, &SubmitOptions{Header: http.Header{"Idempotency-Key": {"hk"}}})
		require.NoError(t, err)
		assert.Equal(t, []string{"hk", "hk"}, h.seen())
		assert.Equal(t, "hk", op.IdempotencyKey())
	})
	t.Run("without key", func(t *testing.T) {
		h := &submitFlaky{fail: 1}
		srv := newServer(t, h)
		c := newTestClient(t, nil)
		sleeps := recordSleeps(c)
		_, err := c.Submit(t.Context(), http.MethodPost, srv.URL, []byte("x"), nil)
		var re *ResponseError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, http.StatusServiceUnavailable, re.StatusCode)
		require.NotNil(t, re.Problem)
		assert.Equal(t, "backend down", re.Problem.Detail)
		var p *asyncreq.Problem
		require.ErrorAs(t, err, &p)
		assert.Equal(t, []string{""}, h.seen(), "exactly one submit")
		assert.Empty(t, sleeps.all())
	})
	t.Run("attempts run out", func(t *testing.T) {
		h := &submitFlaky{fail: 100}
		srv := newServer(t, h)
		c := newTestClient(t, &Options{MaxSubmitAttempts: 3})
		recordSleeps(c)
		_, err := c.Submit(t.Context(), http.MethodPost, srv.URL, nil, &SubmitOptions{IdempotencyKey: "k"})
		var re *ResponseError
		require.ErrorAs(t, err, &re)
		assert.Len(t, h.seen(), 3)
	})
	t.Run("client error not retried", func(t *testing.T) {
		var n atomic.Int32
		srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			http.Error(w, "no", http.StatusUnprocessableEntity)
		}))
		c := newTestClient(t, nil)
		recordSleeps(c)
		_, err := c.Submit(t.Context(), http.MethodPost, srv.URL, nil, &SubmitOptions{IdempotencyKey: "k"})
		var re *ResponseError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, http.StatusUnprocessableEntity, re.StatusCode)
		assert.EqualValues(t, 1, n.Load())
	})
}

// TestSubmitNetworkErrorRetriedWithKey: the first submit's connection is
// dropped without an answer.
func TestSubmitNetworkErrorRetriedWithKey(t *testing.T) {
	var n atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		w.Header().Set("Location", "/s")
		w.WriteHeader(http.StatusAccepted)
	}))
	c := newTestClient(t, nil)
	recordSleeps(c)
	_, err := c.Submit(t.Context(), http.MethodPost, srv.URL, []byte("x"), nil)
	require.Error(t, err, "no key: the network error is returned")
	assert.EqualValues(t, 1, n.Load())

	n.Store(0)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL, []byte("x"), &SubmitOptions{IdempotencyKey: "k"})
	require.NoError(t, err)
	assert.Equal(t, srv.URL+"/s", op.StatusURL())
	assert.EqualValues(t, 2, n.Load())
}

// TestStatusFlaps: the status URL answers 500 and 200 in turn; Wait rides
// through the errors.
func TestStatusFlaps(t *testing.T) {
	var polls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("POST /jobs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/jobs/1/status")
		writeJSON(w, http.StatusAccepted, `{"id":"1","status":"pending"}`)
	})
	mux.HandleFunc("GET /jobs/1/status", func(w http.ResponseWriter, r *http.Request) {
		n := polls.Add(1)
		switch {
		case n%2 == 1 && n < 7:
			http.Error(w, "oops", http.StatusInternalServerError)
		case n < 7:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusOK, fmt.Sprintf(`{"id":"1","status":"running","progress":{"percent":%d}}`, n*10))
		default:
			w.Header().Set("Location", "/jobs/1")
			writeJSON(w, http.StatusSeeOther, `{"id":"1","status":"succeeded","result_url":"/jobs/1"}`)
		}
	})
	mux.HandleFunc("GET /jobs/1", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "result")
	})
	srv := newServer(t, mux)
	c := newTestClient(t, &Options{PollMax: time.Minute, PollInitial: 50 * time.Millisecond})
	sleeps := recordSleeps(c)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/jobs", nil, nil)
	require.NoError(t, err)
	var progress []int
	res, err := op.Wait(t.Context(), &WaitOptions{OnProgress: func(d *asyncreq.StatusDocument) {
		if d.Progress != nil {
			progress = append(progress, d.Progress.Percent)
		}
	}})
	require.NoError(t, err)
	assert.Equal(t, "result", string(res.Body))
	assert.Equal(t, []int{20, 40, 60}, progress)
	assert.EqualValues(t, 7, polls.Load())
	// Errors back off from PollInitial, starting over after each success;
	// successes wait their Retry-After.
	assert.Equal(t, []time.Duration{
		50 * time.Millisecond, time.Second,
		50 * time.Millisecond, time.Second,
		50 * time.Millisecond, time.Second,
	}, sleeps.all())
}

// TestPollErrorsRunOut: Wait gives up after MaxPollErrors transient errors
// in a row, and at once on a client error.
func TestPollErrorsRunOut(t *testing.T) {
	var polls atomic.Int32
	code := atomic.Int32{}
	code.Store(http.StatusBadGateway)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/st")
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /st", func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1)
		w.WriteHeader(int(code.Load()))
	})
	srv := newServer(t, mux)
	c := newTestClient(t, &Options{MaxPollErrors: 3})
	recordSleeps(c)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/", nil, nil)
	require.NoError(t, err)
	_, err = op.Wait(t.Context(), nil)
	var re *ResponseError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, http.StatusBadGateway, re.StatusCode)
	assert.EqualValues(t, 4, polls.Load())

	polls.Store(0)
	code.Store(http.StatusForbidden)
	_, err = op.Wait(t.Context(), nil)
	require.ErrorAs(t, err, &re)
	assert.Equal(t, http.StatusForbidden, re.StatusCode)
	assert.EqualValues(t, 1, polls.Load())

	code.Store(http.StatusNotFound)
	_, err = op.Wait(t.Context(), nil)
	require.ErrorIs(t, err, asyncreq.ErrNotFound)
	code.Store(http.StatusGone)
	_, err = op.Wait(t.Context(), nil)
	require.ErrorIs(t, err, asyncreq.ErrGone)
}

// TestSlowStatus: a status URL that does not answer; Wait returns ctx.Err()
// unwrapped when the context ends.
func TestSlowStatus(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/st")
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /st", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	srv := newServer(t, mux)
	defer close(release)
	c := newTestClient(t, nil)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/", nil, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = op.Wait(ctx, nil)
	require.Equal(t, context.DeadlineExceeded, err)
}

// TestRetryAfterPastAndHuge: a Retry-After date in the past waits the floor;
// a huge one is capped at the ceiling.
func TestRetryAfterPastAndHuge(t *testing.T) {
	var polls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/st")
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /st", func(w http.ResponseWriter, r *http.Request) {
		switch polls.Add(1) {
		case 1:
			w.Header().Set("Retry-After", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat))
			writeJSON(w, http.StatusOK, `{"id":"a","status":"running"}`)
		case 2:
			w.Header().Set("Retry-After", "31536000")
			writeJSON(w, http.StatusOK, `{"id":"a","status":"running"}`)
		case 3:
			w.Header().Set("Retry-After", "soon") // malformed: backoff
			writeJSON(w, http.StatusOK, `{"id":"a","status":"running"}`)
		default:
			writeJSON(w, http.StatusOK, `{"id":"a","status":"failed","error":{"title":"Unprocessable","status":422,"detail":"bad input"}}`)
		}
	})
	srv := newServer(t, mux)
	c := newTestClient(t, &Options{PollMin: 250 * time.Millisecond, PollMax: 30 * time.Second, PollInitial: time.Second})
	sleeps := recordSleeps(c)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/", nil, nil)
	require.NoError(t, err)
	_, err = op.Wait(t.Context(), nil)
	var oe *OperationError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, asyncreq.StateFailed, oe.State)
	assert.Equal(t, "a", oe.ID)
	var p *asyncreq.Problem
	require.ErrorAs(t, err, &p)
	assert.Equal(t, 422, p.Status)
	assert.Equal(t, "bad input", p.Detail)
	assert.NotErrorIs(t, err, asyncreq.ErrCanceled)
	assert.Equal(t, []time.Duration{250 * time.Millisecond, 30 * time.Second, time.Second}, sleeps.all())
}

// TestLongPoll: with LongPoll set, status requests carry Prefer: wait=N, and
// an answer that applied it is followed by a poll after only the floor.
func TestLongPoll(t *testing.T) {
	var polls atomic.Int32
	var prefer atomic.Value
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/st")
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /st", func(w http.ResponseWriter, r *http.Request) {
		prefer.Store(r.Header.Get("Prefer"))
		w.Header().Set("Retry-After", "5")
		switch polls.Add(1) {
		case 1:
			w.Header().Set("Preference-Applied", "wait=3")
			writeJSON(w, http.StatusOK, `{"id":"a","status":"running"}`)
		case 2:
			writeJSON(w, http.StatusOK, `{"id":"a","status":"running"}`) // not applied
		default:
			writeJSON(w, http.StatusOK, `{"id":"a","status":"canceled"}`)
		}
	})
	srv := newServer(t, mux)
	c := newTestClient(t, &Options{LongPoll: 2500 * time.Millisecond, PollMin: 10 * time.Millisecond, PollMax: time.Minute})
	sleeps := recordSleeps(c)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/", nil, nil)
	require.NoError(t, err)
	_, err = op.Wait(t.Context(), nil)
	require.ErrorIs(t, err, asyncreq.ErrCanceled)
	assert.Equal(t, "wait=3", prefer.Load())
	assert.Equal(t, []time.Duration{10 * time.Millisecond, 5 * time.Second}, sleeps.all())
}

// TestCrossOriginCredentials: the caller's headers go to the origin the
// request was submitted to, and to another origin only when trusted.
func TestCrossOriginCredentials(t *testing.T) {
	type seen struct {
		auth, custom string
	}
	var mu sync.Mutex
	var statusSeen, resultSeen []seen
	other := newServer(t, http.NewServeMux())
	otherMux := http.NewServeMux()
	otherMux.HandleFunc("GET /status/1", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		statusSeen = append(statusSeen, seen{r.Header.Get("Authorization"), r.Header.Get("X-Custom")})
		mu.Unlock()
		w.Header().Set("Location", "/result/1")
		writeJSON(w, http.StatusSeeOther, `{"id":"1","status":"succeeded"}`)
	})
	otherMux.HandleFunc("GET /result/1", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		resultSeen = append(resultSeen, seen{r.Header.Get("Authorization"), r.Header.Get("X-Custom")})
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	})
	other.Config.Handler = otherMux
	home := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer secret" || r.Header.Get("X-Custom") != "c" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Location", other.URL+"/status/1")
		w.WriteHeader(http.StatusAccepted)
	}))

	run := func(t *testing.T, trusted []string) {
		c := newTestClient(t, &Options{Header: http.Header{"Authorization": {"Bearer secret"}}, TrustedOrigins: trusted})
		recordSleeps(c)
		op, err := c.Submit(t.Context(), http.MethodPost, home.URL, nil, &SubmitOptions{Header: http.Header{"X-Custom": {"c"}}})
		require.NoError(t, err)
		res, err := op.Wait(t.Context(), nil)
		require.NoError(t, err)
		assert.Equal(t, "ok", string(res.Body))
	}
	t.Run("not trusted", func(t *testing.T) {
		run(t, nil)
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []seen{{}}, statusSeen)
		assert.Equal(t, []seen{{}}, resultSeen)
		statusSeen, resultSeen = nil, nil
	})
	t.Run("trusted", func(t *testing.T) {
		run(t, []string{other.URL})
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []seen{{"Bearer secret", "c"}}, statusSeen)
		assert.Equal(t, []seen{{"Bearer secret", "c"}}, resultSeen)
		statusSeen, resultSeen = nil, nil
	})
	t.Run("trust all", func(t *testing.T) {
		run(t, []string{"*"})
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []seen{{"Bearer secret", "c"}}, statusSeen)
		statusSeen, resultSeen = nil, nil
	})
}

// TestResultRedirectDropsCredentials: a result URL on the home origin that
// redirects to another origin (a storage bucket) does not carry the
// credentials there, and a same-origin hop does.
func TestResultRedirectDropsCredentials(t *testing.T) {
	var bucketAuth atomic.Value
	bucket := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bucketAuth.Store(r.Header.Get("Authorization"))
		_, _ = io.WriteString(w, "blob")
	}))
	var homeAuth []string
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/st")
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /st", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/res")
		w.WriteHeader(http.StatusSeeOther)
	})
	mux.HandleFunc("GET /res", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		homeAuth = append(homeAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		http.Redirect(w, r, bucket.URL+"/blob", http.StatusTemporaryRedirect)
	})
	home := newServer(t, mux)
	c := newTestClient(t, &Options{Header: http.Header{"Authorization": {"Bearer s"}}})
	recordSleeps(c)
	op, err := c.Submit(t.Context(), http.MethodPost, home.URL+"/", nil, nil)
	require.NoError(t, err)
	res, err := op.Wait(t.Context(), nil)
	require.NoError(t, err)
	assert.Equal(t, "blob", string(res.Body))
	assert.Equal(t, bucket.URL+"/blob", res.URL)
	assert.Equal(t, "", bucketAuth.Load())
	assert.Equal(t, []string{"Bearer s"}, homeAuth)
}

// TestRedirectLoop: a status URL that redirects to itself forever ends in a
// protocol error, not a hang.
func TestRedirectLoop(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/st")
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /st", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/st", http.StatusTemporaryRedirect)
	})
	srv := newServer(t, mux)
	c := newTestClient(t, nil)
	recordSleeps(c)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/", nil, nil)
	require.NoError(t, err)
	_, err = op.Wait(t.Context(), nil)
	require.ErrorIs(t, err, ErrProtocol)
}

// TestResultNotFound: a result URL that answers 404 says so.
func TestResultNotFound(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/st")
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /st", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/gone")
		w.WriteHeader(http.StatusSeeOther)
	})
	mux.HandleFunc("GET /gone", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusGone)
		_, _ = io.WriteString(w, `{"title":"Gone","status":410,"detail":"purged"}`)
	})
	srv := newServer(t, mux)
	c := newTestClient(t, nil)
	recordSleeps(c)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/", nil, nil)
	require.NoError(t, err)
	_, err = op.Wait(t.Context(), nil)
	require.ErrorIs(t, err, asyncreq.ErrGone)
	var re *ResponseError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, srv.URL+"/gone", re.URL)
	assert.Contains(t, err.Error(), "purged")
}

// TestResultNotDone: Result before the request finished.
func TestResultNotDone(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/st")
		w.WriteHeader(http.StatusAccepted)
	}))
	c := newTestClient(t, nil)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL, nil, nil)
	require.NoError(t, err)
	_, err = op.Result(t.Context())
	require.ErrorIs(t, err, ErrNotDone)
}

// TestCancelHandMade: Cancel sends DELETE to the resource next to the
// status URL and takes in the document it answers with.
func TestCancelHandMade(t *testing.T) {
	var deleted atomic.Value
	mux := http.NewServeMux()
	mux.HandleFunc("POST /jobs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/jobs/9/status")
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("DELETE /jobs/9", func(w http.ResponseWriter, r *http.Request) {
		deleted.Store(r.Header.Get("Authorization"))
		writeJSON(w, http.StatusAccepted, `{"id":"9","status":"canceled","error":{"title":"Canceled","status":409}}`)
	})
	srv := newServer(t, mux)
	c := newTestClient(t, &Options{Header: http.Header{"Authorization": {"a"}}})
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/jobs", nil, nil)
	require.NoError(t, err)
	require.NoError(t, op.Cancel(t.Context()))
	assert.Equal(t, "a", deleted.Load())
	require.True(t, op.Done())
	_, err = op.Wait(t.Context(), nil)
	require.ErrorIs(t, err, asyncreq.ErrCanceled)
	var oe *OperationError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, asyncreq.StateCanceled, oe.State)

	// A cancel the server refuses.
	op2, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/jobs", nil, nil)
	require.NoError(t, err)
	op2.statusURL.Path = "/other/status"
	err = op2.Cancel(t.Context())
	require.ErrorIs(t, err, asyncreq.ErrNotFound)
}

// TestSubmitBadURL: a URL that is not absolute http(s).
func TestSubmitBadURL(t *testing.T) {
	c := newTestClient(t, nil)
	for _, u := range []string{"", "/relative", "ftp://x/y", "http://[::1"} {
		_, err := c.Submit(t.Context(), http.MethodPost, u, nil, nil)
		require.Error(t, err, u)
	}
}

// TestSubmitHeaders: the submit carries the method, body, content type,
// caller headers and protocol headers.
func TestSubmitHeaders(t *testing.T) {
	type got struct {
		method, ctype, prefer, key, custom string
		body                               string
	}
	ch := make(chan got, 1)
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- got{r.Method, r.Header.Get("Content-Type"), r.Header.Get("Prefer"), r.Header.Get("Idempotency-Key"), r.Header.Get("X-Custom"), string(b)}
		w.Header().Set("Location", "/st")
		w.WriteHeader(http.StatusAccepted)
	}))
	c := newTestClient(t, nil)
	_, err := c.Submit(t.Context(), http.MethodPut, srv.URL, []byte("payload"), &SubmitOptions{
		Header:         http.Header{"X-Custom": {"v"}, "Content-Type": {"text/csv"}},
		IdempotencyKey: "abc",
		Wait:           1500 * time.Millisecond,
	})
	require.NoError(t, err)
	assert.Equal(t, got{http.MethodPut, "text/csv", "wait=2", "abc", "v", "payload"}, <-ch)

	_, err = c.Submit(t.Context(), http.MethodPost, srv.URL, nil, &SubmitOptions{ContentType: "application/json"})
	require.NoError(t, err)
	g := <-ch
	assert.Equal(t, "respond-async", g.prefer)
	assert.Equal(t, "application/json", g.ctype)
	assert.Equal(t, "", g.key)
	assert.Equal(t, strconv.Quote(""), strconv.Quote(g.body))
}

// TestForeignStatusDocument: another server's status document whose members
// do not fit asyncreq's types is still read for its status.
func TestForeignStatusDocument(t *testing.T) {
	var polls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/operations/op1")
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /operations/op1", func(w http.ResponseWriter, r *http.Request) {
		if polls.Add(1) < 3 {
			writeJSON(w, http.StatusOK, `{"id":"op1","status":"Running","error":"none yet","percentComplete":40}`)
			return
		}
		writeJSON(w, http.StatusOK, `{"id":"op1","status":"Succeeded","resourceLocation":"/things/1"}`)
	})
	srv := newServer(t, mux)
	c := newTestClient(t, nil)
	recordSleeps(c)
	op, err := c.Submit(t.Context(), http.MethodPost, srv.URL+"/", nil, nil)
	require.NoError(t, err)
	res, err := op.Wait(t.Context(), nil)
	require.NoError(t, err)
	assert.EqualValues(t, 3, polls.Load())
	assert.Contains(t, string(res.Body), "resourceLocation")
	assert.Equal(t, "op1", op.ID())
}
