package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/asyncreq/asyncreq"
)

// api talks to the API processes. A call that meets a dead process (a
// network error or a 5xx) goes to the other one, again and again, until
// it gets an answer or its context ends.
type api struct {
	urls []string
	hc   *http.Client
}

func newAPI(urls []string, clients int) *api {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = clients
	return &api{urls: urls, hc: &http.Client{
		Transport: tr,
		Timeout:   10 * time.Second,
		// The status of a succeeded request is a 303: read it, not its target.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (a *api) close() { a.hc.CloseIdleConnections() }

// answer is an HTTP response, read whole.
type answer struct {
	code   int
	header http.Header
	body   []byte
}

// do sends one request to API i.
func (a *api) do(ctx context.Context, i int, method, path string, header http.Header, body []byte) (*answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.urls[i%len(a.urls)]+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	maps.Copy(req.Header, header)
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return &answer{code: resp.StatusCode, header: resp.Header, body: b}, nil
}

// retryable reports whether an answer says nothing about the request: the
// process died under it or was not up.
func retryable(ans *answer, err error) bool {
	return err != nil || ans.code >= 500
}

// pause waits d, or less if ctx ends first, and returns the next pause.
func pause(ctx context.Context, d time.Duration) time.Duration {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return min(2*d, 500*time.Millisecond)
}

// submitStats counts what the submits met.
type submitStats struct {
	submitted  int // requests a client set out to submit
	sent       int // POSTs sent, retries included
	accepted   int // requests answered 202
	netErrors  int // POSTs that got no answer
	serverErrs int // POSTs answered 5xx
	conflicts  int // POSTs answered 409 (the same key still being accepted)
	rejected   int // requests answered another 4xx: the client gives up
	unanswered int // requests given up without an answer when the retries ran out
}

func (s *submitStats) add(o submitStats) {
	s.submitted += o.submitted
	s.sent += o.sent
	s.accepted += o.accepted
	s.netErrors += o.netErrors
	s.serverErrs += o.serverErrs
	s.conflicts += o.conflicts
	s.rejected += o.rejected
	s.unanswered += o.unanswered
}

// request is one submitted request that was answered 202.
type request struct {
	id   string
	body []byte
	sum  string    // hex SHA-256 of body: the right result
	seen *sighting // the first look at it once it was final, or nil
}

// sumOf is the right result for body: its hex SHA-256.
func sumOf(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// sighting is what one look at a request found.
type sighting struct {
	state   asyncreq.State // or "" when the API knows no such request
	updated time.Time
	run     string // the Run-Id of the result, when succeeded
	result  string // the result body, when succeeded
}

// giveUp is how long a client tries to get one request answered.
const giveUp = 30 * time.Second

// submit posts body with an Idempotency-Key to API first, and after a
// network error, a 5xx or a 409 posts it again with the same key to the
// other API, until it is answered, giveUp has passed or ctx ends. It
// returns the id of the accepted request, or "" when it was not answered
// 202.
func (a *api) submit(ctx context.Context, key string, body []byte, first int, st *submitStats) string {
	ctx, cancel := context.WithTimeout(ctx, giveUp)
	defer cancel()
	h := http.Header{"Content-Type": {"text/plain"}, "Idempotency-Key": {key}}
	delay := 10 * time.Millisecond
	for try := first; ; try++ {
		st.sent++
		ans, err := a.do(ctx, try, http.MethodPost, "/", h, body)
		switch {
		case err == nil && ans.code == http.StatusAccepted:
			var doc asyncreq.StatusDocument
			if json.Unmarshal(ans.body, &doc) != nil || !asyncreq.ValidID(doc.ID) {
				st.rejected++
				return ""
			}
			st.accepted++
			return doc.ID
		case ctx.Err() != nil:
			st.unanswered++
			return ""
		case err != nil:
			st.netErrors++
		case ans.code >= 500:
			st.serverErrs++
		case ans.code == http.StatusConflict:
			st.conflicts++
		default:
			st.rejected++
			return ""
		}
		delay = pause(ctx, delay)
	}
}

// look reads the status of id and, when it succeeded, its result. wait > 0
// long-polls the status for up to that long. It fails only when ctx ends.
func (a *api) look(ctx context.Context, id string, wait time.Duration) (*sighting, error) {
	var h http.Header
	if wait > 0 {
		h = http.Header{"Prefer": {"wait=" + strconv.Itoa(int(wait.Seconds()))}}
	}
	ans, err := a.get(ctx, "/"+id+"/status", h)
	if err != nil {
		return nil, err
	}
	switch ans.code {
	case http.StatusNotFound, http.StatusGone:
		return &sighting{}, nil
	case http.StatusOK, http.StatusSeeOther:
	default:
		return nil, fmt.Errorf("status of %s: %d %s", id, ans.code, ans.body)
	}
	var doc asyncreq.StatusDocument
	if err := json.Unmarshal(ans.body, &doc); err != nil {
		return nil, fmt.Errorf("status of %s: %w", id, err)
	}
	s := &sighting{state: doc.Status, updated: doc.UpdatedAt}
	if doc.Status != asyncreq.StateSucceeded {
		return s, nil
	}
	res, err := a.get(ctx, "/"+id, nil)
	if err != nil {
		return nil, err
	}
	if res.code != http.StatusOK {
		return nil, fmt.Errorf("result of succeeded %s: %d %s", id, res.code, res.body)
	}
	s.run, s.result = res.header.Get("Run-Id"), string(res.body)
	return s, nil
}

// get reads path from either API, trying the other after a failure, until
// it gets an answer or ctx ends.
func (a *api) get(ctx context.Context, path string, h http.Header) (*answer, error) {
	delay := 10 * time.Millisecond
	for try := 0; ; try++ {
		ans, err := a.do(ctx, try, http.MethodGet, path, h, nil)
		if !retryable(ans, err) {
			return ans, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("GET %s: %w", path, ctx.Err())
		}
		delay = pause(ctx, delay)
	}
}

// client submits requests one after another through the APIs in turn
// until submitting ends; a request being retried then goes on until it is
// answered. It waits for its own requests as a client would, keeping at
// most window of them unfinished: once it has that many, it long-polls the
// oldest for up to a second before it goes on, taking note of what it
// finished with.
func (a *api) client(submitting, ctx context.Context, n, window int) ([]*request, submitStats) {
	var (
		st    submitStats
		reqs  []*request
		ahead []*request // submitted and not yet seen finished
	)
	var tag [8]byte
	_, _ = rand.Read(tag[:])
	for seq := 0; submitting.Err() == nil; seq++ {
		st.submitted++
		body := fmt.Appendf(nil, "chaos client %d request %d %x", n, seq, tag)
		key := fmt.Sprintf("%x-%d-%d", tag, n, seq)
		id := a.submit(ctx, key, body, n+seq, &st)
		if id == "" {
			continue
		}
		r := &request{id: id, body: body, sum: sumOf(body)}
		reqs = append(reqs, r)
		ahead = append(ahead, r)
		if len(ahead) < window {
			continue
		}
		r, ahead = ahead[0], ahead[1:]
		if s, err := a.look(submitting, r.id, time.Second); err == nil && s.state.Final() {
			r.seen = s
		}
	}
	return reqs, st
}
