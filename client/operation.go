package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
)

// Response is the HTTP response that gave a finished request's result: the
// answer of its result URL, or of the submit when the server answered
// inline, read whole. It is what the client received, so it carries the
// header the server sent and the URL that answered, where an
// asyncreq.Result is what a processor returned for the server to store
// and serve. A status code other than 2xx is not an error here: a server
// replaying a wrapped handler's response serves whatever that handler
// answered.
type Response struct {
	// StatusCode is the answer's status code.
	StatusCode int
	// Header is the answer's header.
	Header http.Header
	// ContentType is the answer's Content-Type.
	ContentType string
	// Body is the answer's body.
	Body []byte
	// URL is the URL that answered: the result URL, or the submit URL
	// when the server answered inline.
	URL string
}

func (r *Response) clone() *Response {
	c := *r
	c.Header = r.Header.Clone()
	c.Body = bytes.Clone(r.Body)
	return &c
}

func responseOf(r *answer) *Response {
	return &Response{
		StatusCode:  r.statusCode,
		Header:      r.header,
		ContentType: r.header.Get("Content-Type"),
		Body:        r.body,
		URL:         r.url.String(),
	}
}

// WaitOptions configures Operation.Wait. Nil means defaults.
type WaitOptions struct {
	// OnProgress, if set, is called with every status document the server
	// sends, including the last one; its Progress is what the processor
	// last reported (nil when none). It is called on Wait's goroutine;
	// doc is its own copy. Default none.
	OnProgress func(doc *asyncreq.StatusDocument)
}

// Operation is one submitted request. Its methods are safe for concurrent
// use.
type Operation struct {
	c       *Client
	origin  string      // the origin the request was submitted to
	header  http.Header // the caller's headers, sent to trusted origins
	idemKey string

	mu            sync.Mutex
	id            string
	statusURL     *url.URL
	resultURL     *url.URL
	doc           *asyncreq.StatusDocument
	lastHeader    http.Header // of the last status answer, for Retry-After
	preferApplied bool        // the last status answer applied Prefer: wait
	done          bool
	result        *Response
	err           error // the final outcome when it is a failure
	bo            backoff
	errBo         backoff
}

// ID returns the request's id, or "" if the server did not tell it.
func (op *Operation) ID() string {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.id
}

// StatusURL returns the URL the operation polls, or "" for an operation
// that finished on submit.
func (op *Operation) StatusURL() string {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.statusURL == nil {
		return ""
	}
	return op.statusURL.String()
}

// ResultURL returns the URL of the result once it is known, or "".
func (op *Operation) ResultURL() string {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.resultURL == nil {
		return ""
	}
	return op.resultURL.String()
}

// IdempotencyKey returns the Idempotency-Key the request was submitted
// with, or "".
func (op *Operation) IdempotencyKey() string { return op.idemKey }

// Status returns a copy of the last status document received, or nil.
func (op *Operation) Status() *asyncreq.StatusDocument {
	op.mu.Lock()
	defer op.mu.Unlock()
	return cloneDoc(op.doc)
}

// Done reports whether the request is finished (succeeded, failed or
// canceled) as far as the client has seen.
func (op *Operation) Done() bool {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.done
}

func cloneDoc(d *asyncreq.StatusDocument) *asyncreq.StatusDocument {
	if d == nil {
		return nil
	}
	c := *d
	if d.Progress != nil {
		p := *d.Progress
		c.Progress = &p
	}
	if d.Error != nil {
		e := *d.Error
		c.Error = &e
	}
	return &c
}

// trusts reports whether u may receive the caller's headers.
func (op *Operation) trusts(u *url.URL) bool {
	if op.c.trustAll {
		return true
	}
	o := originOf(u)
	return o == op.origin || op.c.trusted[o]
}

// do sends one request and reads its answer, following 307 and 308
// redirects (and 301, 302 and, if seeOther, 303 for GET and HEAD) itself.
// proto headers are always sent; caller headers only to trusted origins.
func (op *Operation) do(ctx context.Context, method string, u *url.URL, body []byte, proto, caller http.Header, seeOther bool) (*answer, error) {
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("client: %s %s: %w", method, u.Redacted(), err)
		}
		if body == nil {
			req.Body = http.NoBody
			req.GetBody = nil
			req.ContentLength = 0
		}
		if op.trusts(u) {
			for k, vs := range caller {
				req.Header[k] = append([]string(nil), vs...)
			}
		}
		for k, vs := range proto {
			req.Header[k] = append([]string(nil), vs...)
		}
		resp, err := op.c.hc.Do(req)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			return nil, fmt.Errorf("client: %w", err) // a *url.Error
		}
		data, err := readBody(resp.Body, op.c.maxBody)
		resp.Body.Close()
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			if errors.Is(err, ErrProtocol) {
				return nil, fmt.Errorf("client: %s %s: %w", method, u.Redacted(), err)
			}
			return nil, fmt.Errorf("client: reading the answer: %w", &url.Error{Op: method, URL: u.Redacted(), Err: err})
		}
		r := &answer{method: method, url: u, statusCode: resp.StatusCode, header: resp.Header, body: data}
		follow := false
		safe := method == http.MethodGet || method == http.MethodHead
		switch resp.StatusCode {
		case http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			follow = true
		case http.StatusMovedPermanently, http.StatusFound:
			follow = safe
		case http.StatusSeeOther:
			follow = safe && seeOther
		}
		if !follow {
			return r, nil
		}
		next, err := r.location()
		if err != nil {
			return nil, err
		}
		if next == nil {
			return r, nil // a redirect without Location is the answer itself
		}
		if hop >= maxRedirects {
			return nil, &tooManyRedirectsError{url: u.Redacted()}
		}
		u = next
	}
}

// parseDoc decodes a status document from a JSON answer. It returns nil if
// the answer is not one (not JSON, or no known status). The status is
// matched case-insensitively, so "Running" and "Succeeded" from other
// servers are understood.
func parseDoc(r *answer) *asyncreq.StatusDocument {
	if !isJSON(r.contentType()) || len(r.body) == 0 {
		return nil
	}
	var d asyncreq.StatusDocument
	if json.Unmarshal(r.body, &d) != nil {
		// Another server's document whose other members have other
		// types: its status still tells whether the request is done.
		var head struct {
			ID     any    `json:"id"`
			Status string `json:"status"`
		}
		if json.Unmarshal(r.body, &head) != nil {
			return nil
		}
		d = asyncreq.StatusDocument{Status: asyncreq.State(head.Status)}
		if id, ok := head.ID.(string); ok {
			d.ID = id
		}
	}
	d.Status = asyncreq.State(strings.ToLower(string(d.Status)))
	if !d.Status.Valid() {
		return nil
	}
	return &d
}

// handleSubmit takes in the answer to the submit.
func (op *Operation) handleSubmit(r *answer) error {
	op.mu.Lock()
	defer op.mu.Unlock()
	doc := parseDoc(r)
	if doc != nil {
		op.doc = doc
		op.id = doc.ID
	} else if r.statusCode == http.StatusAccepted && isJSON(r.contentType()) {
		// Other servers' acceptance documents often carry an "id" too.
		var v struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(r.body, &v) == nil {
			op.id = v.ID
		}
	}
	switch {
	case r.statusCode == http.StatusAccepted:
		loc, err := r.location()
		if err != nil {
			return err
		}
		if loc == nil && doc != nil && doc.StatusURL != "" {
			loc, err = r.url.Parse(doc.StatusURL)
			if err != nil {
				return fmt.Errorf("%w: bad status_url %q: %w", ErrProtocol, doc.StatusURL, err)
			}
		}
		if loc == nil {
			return fmt.Errorf("%w: 202 Accepted from %s without a Location", ErrProtocol, r.url.Redacted())
		}
		op.statusURL = loc
		op.lastHeader = r.header
		if doc != nil && doc.Status.Final() {
			return op.finishLocked(r, doc)
		}
		return nil
	case r.statusCode == http.StatusSeeOther, r.statusCode == http.StatusMovedPermanently, r.statusCode == http.StatusFound:
		loc, err := r.location()
		if err != nil {
			return err
		}
		if loc == nil {
			return fmt.Errorf("%w: %d from %s without a Location", ErrProtocol, r.statusCode, r.url.Redacted())
		}
		if op.seeOtherStatusLocked(r, doc, loc) {
			if doc != nil && doc.Status.Final() && (doc.Status != asyncreq.StateSucceeded || doc.ResultURL != "") {
				return op.finishLocked(r, doc)
			}
			return nil // the status URL tells the rest
		}
		op.resultURL = loc
		op.done = true
		op.idFromResultURL()
		return nil
	case r.statusCode >= 200 && r.statusCode < 300:
		op.done = true
		op.result = responseOf(r)
		if cl := r.header.Get("Content-Location"); cl != "" {
			if u, err := r.url.Parse(cl); err == nil {
				op.resultURL = u
				op.idFromResultURL()
			}
		}
		return nil
	}
	if r.statusCode >= 400 && op.finalOnSubmitLocked(r) {
		return nil
	}
	return r.responseError()
}

// seeOtherStatusLocked takes in a redirect answering the submit that
// points at the request's status rather than at its result, and reports
// whether it did. asyncreq answers a submit with Prefer: wait whose
// request ended in time in anything but a 2xx result (failed, canceled,
// or a result that is itself an error answer) with 303 to the status URL
// and the status document; the status URL, polled, tells the outcome.
// Such a redirect is one with a status document of a request that did not
// succeed, or one whose Location is the status URL (the document's
// status_url, or a path of asyncreq's status layout). Any other redirect
// leads to the result.
func (op *Operation) seeOtherStatusLocked(r *answer, doc *asyncreq.StatusDocument, loc *url.URL) bool {
	toStatus := isStatusLayout(loc)
	if doc != nil && doc.StatusURL != "" {
		if su, err := r.url.Parse(doc.StatusURL); err == nil && su.String() == loc.String() {
			toStatus = true
		}
	}
	if !toStatus && (doc == nil || doc.Status == asyncreq.StateSucceeded) {
		return false
	}
	op.statusURL = loc
	op.lastHeader = r.header
	if op.id == "" && isStatusLayout(loc) {
		op.id = path.Base(strings.TrimSuffix(loc.Path, "/status"))
	}
	return true
}

// isStatusLayout reports whether u looks like an asyncreq status URL: a
// path ending in /{id}/status.
func isStatusLayout(u *url.URL) bool {
	rest, ok := strings.CutSuffix(u.Path, "/status")
	return ok && asyncreq.ValidID(path.Base(rest))
}

// finalOnSubmitLocked takes in an error answer to a submit that the server
// says is the request's final answer (Prefer: wait applied, with a
// Content-Location): either a failure or a result that is itself an error
// answer. Where the Content-Location has asyncreq's layout, the operation
// polls the status URL next to tell the two apart; elsewhere the answer is
// the result. It reports false for an ordinary error answer.
func (op *Operation) finalOnSubmitLocked(r *answer) bool {
	cl := r.header.Get("Content-Location")
	if cl == "" || !strings.Contains(strings.ToLower(r.header.Get("Preference-Applied")), "wait") {
		return false
	}
	u, err := r.url.Parse(cl)
	if err != nil {
		return false
	}
	op.resultURL = u
	op.idFromResultURL()
	if last := path.Base(u.Path); asyncreq.ValidID(last) {
		su := *u
		su.Path = strings.TrimSuffix(u.Path, "/") + "/status"
		su.RawPath = ""
		su.RawQuery = ""
		op.statusURL = &su
		return true
	}
	op.done = true
	op.result = responseOf(r)
	return true
}

// idFromResultURL sets the id from the result URL's last segment when it
// is not known and that segment has the form of an asyncreq id.
func (op *Operation) idFromResultURL() {
	if op.id != "" || op.resultURL == nil {
		return
	}
	if last := path.Base(op.resultURL.Path); asyncreq.ValidID(last) {
		op.id = last
	}
}

// finishLocked records a final status document.
func (op *Operation) finishLocked(r *answer, doc *asyncreq.StatusDocument) error {
	op.done = true
	switch doc.Status {
	case asyncreq.StateSucceeded:
		if doc.ResultURL != "" {
			u, err := r.url.Parse(doc.ResultURL)
			if err != nil {
				return fmt.Errorf("%w: bad result_url %q: %w", ErrProtocol, doc.ResultURL, err)
			}
			op.resultURL = u
		} else {
			op.result = responseOf(r)
		}
	default:
		p := doc.Error
		if p == nil {
			p = &asyncreq.Problem{Title: "request " + string(doc.Status), Status: http.StatusInternalServerError}
		} else {
			c := *p
			p = &c
		}
		op.err = &OperationError{ID: doc.ID, State: doc.Status, Problem: p}
	}
	return nil
}

// Poll asks the status URL once and returns the status document it sent
// (nil if it sent none). Once the request is finished, Done reports true
// and Poll returns the last document without asking again.
//
// A network error or an error answer returns an error (a *ResponseError
// for an answer); errors for 404 and 410 wrap asyncreq.ErrNotFound and
// asyncreq.ErrGone.
func (op *Operation) Poll(ctx context.Context) (*asyncreq.StatusDocument, error) {
	op.mu.Lock()
	if op.done {
		doc := cloneDoc(op.doc)
		op.mu.Unlock()
		return doc, nil
	}
	statusURL := op.statusURL
	op.mu.Unlock()
	if statusURL == nil {
		return nil, fmt.Errorf("%w: operation has no status URL", ErrProtocol)
	}

	proto := http.Header{"Accept": {"application/json"}}
	if op.c.longPoll > 0 {
		proto.Set("Prefer", "wait="+strconv.FormatInt(ceilSeconds(op.c.longPoll), 10))
	}
	r, err := op.do(ctx, http.MethodGet, statusURL, nil, proto, op.header, false)
	if err != nil {
		return nil, err
	}

	op.mu.Lock()
	defer op.mu.Unlock()
	doc := parseDoc(r)
	if doc != nil {
		op.doc = doc
		if op.id == "" {
			op.id = doc.ID
		}
	}
	op.lastHeader = r.header
	op.preferApplied = strings.Contains(strings.ToLower(r.header.Get("Preference-Applied")), "wait")
	switch {
	case r.statusCode == http.StatusOK && doc != nil:
		if doc.Status.Final() {
			if err := op.finishLocked(r, doc); err != nil {
				return nil, err
			}
		}
	case r.statusCode == http.StatusAccepted:
		loc, err := r.location()
		if err != nil {
			return nil, err
		}
		if loc != nil {
			op.statusURL = loc
		}
		if doc != nil && doc.Status.Final() {
			if err := op.finishLocked(r, doc); err != nil {
				return nil, err
			}
		}
	case r.statusCode == http.StatusSeeOther, r.statusCode == http.StatusMovedPermanently, r.statusCode == http.StatusFound:
		loc, err := r.location()
		if err != nil {
			return nil, err
		}
		if loc == nil {
			return nil, fmt.Errorf("%w: %d from %s without a Location", ErrProtocol, r.statusCode, r.url.Redacted())
		}
		op.done = true
		op.resultURL = loc
		op.idFromResultURL()
	case r.statusCode >= 200 && r.statusCode < 300:
		// Any other 2xx: the request finished and this answer is the
		// result (Azure's Location poller, Durable Functions' 200).
		op.done = true
		op.result = responseOf(r)
	default:
		return nil, r.responseError()
	}
	return cloneDoc(doc), nil
}

// nextDelay returns how long to wait before the next poll.
func (op *Operation) nextDelay() time.Duration {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.errBo.reset()
	if op.preferApplied {
		// The server held the poll until something changed.
		return op.c.pollMin
	}
	return op.c.delay(op.lastHeader, &op.bo)
}

// errorDelay returns how long to wait after a transient error.
func (op *Operation) errorDelay(err error) time.Duration {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.c.retryDelay(err, &op.errBo)
}

// Result returns the outcome of a finished request: its *Response, or an
// *OperationError for a failed or canceled one. It fetches the result from
// the result URL the first time (following redirects; the caller's headers
// go only to trusted origins) and keeps it. A result URL answering 404 or
// 410 returns a *ResponseError wrapping asyncreq.ErrNotFound or
// asyncreq.ErrGone. Before the request is finished it returns ErrNotDone.
func (op *Operation) Result(ctx context.Context) (*Response, error) {
	op.mu.Lock()
	done, res, ferr, resultURL := op.done, op.result, op.err, op.resultURL
	op.mu.Unlock()
	switch {
	case !done:
		return nil, ErrNotDone
	case ferr != nil:
		return nil, ferr
	case res != nil:
		return res.clone(), nil
	case resultURL == nil:
		return nil, fmt.Errorf("%w: finished operation without a result URL", ErrProtocol)
	}
	r, err := op.do(ctx, http.MethodGet, resultURL, nil, http.Header{"Accept": {"*/*"}}, op.header, true)
	if err != nil {
		return nil, err
	}
	if r.statusCode == http.StatusNotFound || r.statusCode == http.StatusGone {
		return nil, r.responseError()
	}
	res = responseOf(r)
	op.mu.Lock()
	op.result = res
	op.mu.Unlock()
	return res.clone(), nil
}

// Wait polls until the request is finished and returns its result, as
// Result does. Between polls it waits as the server's Retry-After says
// (held between Options.PollMin and Options.PollMax, with jitter), or backs
// off exponentially without one. Transient errors (network errors, 408,
// 429, 5xx) are retried up to Options.MaxPollErrors in a row; other errors
// end the wait. When ctx ends, Wait returns ctx.Err().
func (op *Operation) Wait(ctx context.Context, opts *WaitOptions) (*Response, error) {
	var o WaitOptions
	if opts != nil {
		o = *opts
	}
	errs := 0
	for {
		var err error
		if op.Done() {
			var res *Response
			res, err = op.Result(ctx)
			if err == nil || !isNetworkError(err) {
				return res, err
			}
		} else {
			var doc *asyncreq.StatusDocument
			doc, err = op.Poll(ctx)
			if err == nil {
				errs = 0
				if doc != nil && o.OnProgress != nil {
					o.OnProgress(doc)
				}
				if op.Done() {
					continue
				}
				if err := op.c.sleep(ctx, op.nextDelay()); err != nil {
					return nil, err
				}
				continue
			}
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		if !transient(err) {
			return nil, err
		}
		errs++
		if op.c.maxPollErrors >= 0 && errs > op.c.maxPollErrors {
			return nil, err
		}
		if err := op.c.sleep(ctx, op.errorDelay(err)); err != nil {
			return nil, err
		}
	}
}

// isNetworkError reports whether err is a failure to exchange a request,
// as opposed to an answer.
func isNetworkError(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue)
}

// cancelURL returns the URL a DELETE goes to: the result URL when known,
// else the status URL without a trailing "/status" segment (asyncreq's
// layout), else the status URL itself.
func (op *Operation) cancelURL() *url.URL {
	if op.resultURL != nil {
		return op.resultURL
	}
	if op.statusURL == nil {
		return nil
	}
	u := *op.statusURL
	if strings.HasSuffix(u.Path, "/status") {
		u.Path = strings.TrimSuffix(u.Path, "/status")
		u.RawPath = ""
		return &u
	}
	return op.statusURL
}

// Cancel asks the server to stop the request (DELETE on its resource). A
// pending request will never run; a running one is stopped unless it
// finishes first; a finished one is forgotten by the server together with
// its result. Cancel updates the operation from the status document the
// server answers with. An error answer returns a *ResponseError.
func (op *Operation) Cancel(ctx context.Context) error {
	op.mu.Lock()
	u := op.cancelURL()
	op.mu.Unlock()
	if u == nil {
		return fmt.Errorf("%w: operation has no URL to cancel", ErrProtocol)
	}
	r, err := op.do(ctx, http.MethodDelete, u, nil, http.Header{"Accept": {"application/json"}}, op.header, false)
	if err != nil {
		return err
	}
	if r.statusCode < 200 || r.statusCode >= 300 {
		return r.responseError()
	}
	if doc := parseDoc(r); doc != nil {
		op.mu.Lock()
		defer op.mu.Unlock()
		if !op.done {
			op.doc = doc
			if doc.Status.Final() {
				return op.finishLocked(r, doc)
			}
		}
	}
	return nil
}
