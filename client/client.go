package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/asyncreq/asyncreq"
)

// Sentinel errors of the client.
var (
	// ErrProtocol means a server's answer broke the asynchronous
	// request-reply protocol (for example a 202 without a status URL).
	ErrProtocol = errors.New("client: protocol violation")
	// ErrNotDone is returned by Operation.Result while the request is not
	// finished.
	ErrNotDone = errors.New("client: operation not finished")
	// ErrNotResumable is returned by Operation.ResumeToken for an operation
	// that has neither a status URL nor a result URL to come back to.
	ErrNotResumable = errors.New("client: operation cannot be resumed")
)

// Options configures a Client. The zero value (or nil) means defaults.
type Options struct {
	// HTTPClient sends the requests. The Client uses a copy of it whose
	// CheckRedirect stops at the first answer, so that it can read 202,
	// 303 and Location itself. Default http.DefaultClient.
	HTTPClient *http.Client
	// Header is sent with every request: on the submit, and on status,
	// result and cancel requests to a trusted origin (see TrustedOrigins).
	// Put credentials here. Default none.
	Header http.Header
	// TrustedOrigins lists origins ("https://status.example.com") besides
	// the one a request was submitted to that may receive the caller's
	// headers. "*" trusts every origin. Default none.
	TrustedOrigins []string
	// PollMin is the shortest wait between polls, whatever Retry-After says
	// (a Retry-After in the past waits this long). Default 100ms, or
	// PollMax if that is shorter.
	PollMin time.Duration
	// PollMax is the longest wait between polls: a larger Retry-After is
	// capped to it, and so is the exponential backoff. Default 1m.
	PollMax time.Duration
	// PollInitial is the first wait when the server sends no Retry-After;
	// each further wait doubles it, up to PollMax. Default 1s.
	PollInitial time.Duration
	// Jitter is the largest fraction added at random to each wait, so that
	// many clients do not poll in step; it is never subtracted, so a
	// Retry-After is always honoured. 0 means the default, negative means
	// none. Default 0.2.
	Jitter float64
	// LongPoll, when positive, sends Prefer: wait=N (whole seconds, at
	// least 1) on status requests so that a server supporting long polls
	// holds its answer until the state changes. Set the HTTPClient's
	// Timeout above it. Default 0: no long polls.
	LongPoll time.Duration
	// MaxSubmitAttempts is how many times a submit that carries an
	// Idempotency-Key is tried in all before its error is returned.
	// Default 5.
	MaxSubmitAttempts int
	// MaxPollErrors is how many transient errors in a row (network errors,
	// 408, 429 and 5xx) Operation.Wait tolerates before returning the last
	// one. Negative means no limit. Default 10.
	MaxPollErrors int
	// TokenKey, when set, signs resume tokens with HMAC-SHA256; Resume then
	// accepts only tokens signed with the same key. Default none: tokens
	// are not signed and must be treated as trusted input.
	TokenKey []byte
	// MaxBodyBytes caps the size of a result or status body read into
	// memory. Default 64 MiB.
	MaxBodyBytes int64
}

// Client submits requests to asynchronous endpoints and follows them to
// their results. It is safe for concurrent use.
type Client struct {
	hc             *http.Client
	header         http.Header
	trusted        map[string]bool
	trustAll       bool
	pollMin        time.Duration
	pollMax        time.Duration
	pollInitial    time.Duration
	jitter         float64
	longPoll       time.Duration
	submitAttempts int
	maxPollErrors  int
	tokenKey       []byte
	maxBody        int64

	// Time hooks, replaced by tests.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
	rand  func() float64
}

// New returns a Client configured by opts (nil means defaults).
func New(opts *Options) (*Client, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	switch {
	case o.PollMin < 0:
		return nil, errors.New("client: Options.PollMin is negative")
	case o.PollMax < 0:
		return nil, errors.New("client: Options.PollMax is negative")
	case o.PollInitial < 0:
		return nil, errors.New("client: Options.PollInitial is negative")
	case o.LongPoll < 0:
		return nil, errors.New("client: Options.LongPoll is negative")
	case o.MaxSubmitAttempts < 0:
		return nil, errors.New("client: Options.MaxSubmitAttempts is negative")
	case o.MaxBodyBytes < 0:
		return nil, errors.New("client: Options.MaxBodyBytes is negative")
	case o.Jitter > 1:
		return nil, errors.New("client: Options.Jitter is above 1")
	}
	if o.PollMax == 0 {
		o.PollMax = time.Minute
	}
	if o.PollMin == 0 {
		o.PollMin = min(100*time.Millisecond, o.PollMax)
	}
	if o.PollMax < o.PollMin {
		return nil, fmt.Errorf("client: Options.PollMax (%s) is below Options.PollMin (%s)", o.PollMax, o.PollMin)
	}
	if o.PollInitial == 0 {
		o.PollInitial = time.Second
	}
	switch {
	case o.Jitter == 0:
		o.Jitter = 0.2
	case o.Jitter < 0:
		o.Jitter = 0
	}
	if o.MaxSubmitAttempts == 0 {
		o.MaxSubmitAttempts = 5
	}
	if o.MaxPollErrors == 0 {
		o.MaxPollErrors = 10
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 64 << 20
	}
	base := o.HTTPClient
	if base == nil {
		base = http.DefaultClient
	}
	hc := *base
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	c := &Client{
		hc:             &hc,
		header:         o.Header.Clone(),
		trusted:        make(map[string]bool),
		pollMin:        o.PollMin,
		pollMax:        o.PollMax,
		pollInitial:    o.PollInitial,
		jitter:         o.Jitter,
		longPoll:       o.LongPoll,
		submitAttempts: o.MaxSubmitAttempts,
		maxPollErrors:  o.MaxPollErrors,
		tokenKey:       bytes.Clone(o.TokenKey),
		maxBody:        o.MaxBodyBytes,
		now:            time.Now,
		sleep:          sleepCtx,
		rand:           rand.Float64,
	}
	for _, s := range o.TrustedOrigins {
		if s == "*" {
			c.trustAll = true
			continue
		}
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("client: Options.TrustedOrigins: %q is not an origin like https://host[:port]", s)
		}
		c.trusted[originOf(u)] = true
	}
	return c, nil
}

// sleepCtx waits for d or until ctx ends, whichever is first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// SubmitOptions configures one submit. Nil means defaults.
type SubmitOptions struct {
	// Header holds the request's headers. They are also sent on the
	// operation's status, result and cancel requests to trusted origins,
	// except those that describe the submitted body (Content-Type,
	// Content-Length, Content-Encoding) or the submit itself
	// (Idempotency-Key, Prefer). Default none.
	Header http.Header
	// ContentType is the body's Content-Type; it overrides Header's.
	// Default: Header's, or none.
	ContentType string
	// IdempotencyKey is sent as the Idempotency-Key header and makes the
	// submit safe to retry (an Idempotency-Key in Header does too).
	// Default none.
	IdempotencyKey string
	// GenerateIdempotencyKey generates a random Idempotency-Key when
	// IdempotencyKey is empty. Default false.
	GenerateIdempotencyKey bool
	// Wait, when positive, sends Prefer: wait=N (whole seconds, at least 1)
	// so that a server may answer with the final result if it is ready in
	// time. Otherwise Prefer: respond-async is sent. Default 0.
	Wait time.Duration
}

// headers that are not forwarded from the submit to later requests.
var submitOnlyHeaders = []string{
	"Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding",
	"Idempotency-Key", "Prefer", "Expect", "Host", "If-Match", "If-None-Match",
}

// Submit sends a request with the given method, URL and body (nil for
// none) to an asynchronous endpoint and returns the operation it started.
// The returned operation is finished at once if the server answered with
// the result (a 2xx other than 202, or a 303 to it), or with a 303 to the
// status URL and a status document that says the request failed or was
// canceled.
//
// An answer that is neither (4xx, 5xx) returns a *ResponseError. With an
// idempotency key, network errors and 409, 429, 502, 503 and 504 answers
// are retried with backoff, up to Options.MaxSubmitAttempts.
func (c *Client) Submit(ctx context.Context, method, rawURL string, body []byte, opts *SubmitOptions) (*Operation, error) {
	var o SubmitOptions
	if opts != nil {
		o = *opts
	}
	if method == "" {
		method = http.MethodPost
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("client: submit URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("client: submit URL %q is not an absolute http(s) URL", rawURL)
	}
	key := o.IdempotencyKey
	if key == "" && o.GenerateIdempotencyKey {
		key = asyncreq.NewID()
	}

	// caller holds the caller's headers, sent only to trusted origins;
	// proto holds those that describe the body and the submit itself,
	// sent wherever the submit goes.
	caller := c.header.Clone()
	if caller == nil {
		caller = make(http.Header)
	}
	for k, vs := range o.Header {
		caller[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	proto := make(http.Header)
	for _, k := range []string{"Content-Type", "Content-Encoding", "Idempotency-Key", "Prefer", "Accept"} {
		if vs := caller.Values(k); len(vs) > 0 {
			proto[k] = vs
			caller.Del(k)
		}
	}
	forward := caller.Clone()
	for _, k := range submitOnlyHeaders {
		forward.Del(k)
	}
	if o.ContentType != "" {
		proto.Set("Content-Type", o.ContentType)
	}
	if key != "" {
		proto.Set("Idempotency-Key", key)
	} else {
		key = proto.Get("Idempotency-Key") // set through Header
	}
	if o.Wait > 0 {
		proto.Set("Prefer", "wait="+strconv.FormatInt(ceilSeconds(o.Wait), 10))
	} else if proto.Get("Prefer") == "" {
		proto.Set("Prefer", "respond-async")
	}
	if proto.Get("Accept") == "" {
		proto.Set("Accept", "application/json, */*;q=0.5")
	}

	op := &Operation{
		c:       c,
		origin:  originOf(u),
		header:  forward,
		idemKey: key,
	}
	var bo backoff
	for attempt := 1; ; attempt++ {
		resp, err := op.do(ctx, method, u, body, proto, caller, false)
		if err == nil {
			err = op.handleSubmit(resp)
			if err == nil {
				return op, nil
			}
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		if key == "" || attempt >= c.submitAttempts || !retryableSubmit(err) {
			return nil, err
		}
		if err := c.sleep(ctx, c.retryDelay(err, &bo)); err != nil {
			return nil, err
		}
	}
}

// retryableSubmit reports whether a submit that failed with err may be
// repeated, given that it carries an idempotency key.
func retryableSubmit(err error) bool {
	var re *ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusConflict, http.StatusTooManyRequests, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return isNetworkError(err)
}

// transient reports whether a poll that failed with err is worth repeating.
func transient(err error) bool {
	var re *ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == http.StatusRequestTimeout, re.StatusCode == http.StatusTooManyRequests:
			return true
		case re.StatusCode >= 500:
			return true
		}
		return false
	}
	return isNetworkError(err)
}

// Resume returns the operation a token made by Operation.ResumeToken
// describes. The operation's status, result and cancel requests carry this
// Client's Options.Header (to trusted origins); headers given to the
// original Submit are not part of the token. A malformed, tampered or
// unsigned (when Options.TokenKey is set) token returns a *TokenError.
func (c *Client) Resume(token string) (*Operation, error) {
	t, err := c.decodeToken(token)
	if err != nil {
		return nil, err
	}
	op := &Operation{
		c:       c,
		id:      t.ID,
		origin:  t.Origin,
		header:  c.header.Clone(),
		idemKey: t.IdempotencyKey,
		done:    t.Done,
	}
	if t.StatusURL != "" {
		op.statusURL, _ = url.Parse(t.StatusURL) // validated by decodeToken
	}
	if t.ResultURL != "" {
		op.resultURL, _ = url.Parse(t.ResultURL)
	}
	return op, nil
}

// ResponseError is an HTTP answer the client could not take as a step of the
// protocol: a 4xx or 5xx on submit, status or cancel, or a 404 or 410 for a
// result. It wraps asyncreq.ErrNotFound for 404, asyncreq.ErrGone for 410,
// and the problem document when the server sent one.
type ResponseError struct {
	// Method and URL are the request's.
	Method string
	URL    string
	// StatusCode is the answer's status code.
	StatusCode int
	// Header is the answer's header.
	Header http.Header
	// Problem is the answer's problem document, or nil.
	Problem *asyncreq.Problem
	// Body is the start of the answer's body (at most 4 KiB).
	Body []byte
}

// Error implements error.
func (e *ResponseError) Error() string {
	msg := fmt.Sprintf("client: %s %s: %d %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Problem != nil {
		switch {
		case e.Problem.Detail != "":
			msg += ": " + e.Problem.Detail
		case e.Problem.Title != "":
			msg += ": " + e.Problem.Title
		}
	}
	return msg
}

// Unwrap returns asyncreq.ErrNotFound (404) or asyncreq.ErrGone (410), and
// the problem document, where there are.
func (e *ResponseError) Unwrap() []error {
	var errs []error
	switch e.StatusCode {
	case http.StatusNotFound:
		errs = append(errs, asyncreq.ErrNotFound)
	case http.StatusGone:
		errs = append(errs, asyncreq.ErrGone)
	}
	if e.Problem != nil {
		errs = append(errs, e.Problem)
	}
	return errs
}

// OperationError is returned for a request that the server reports as failed
// or canceled. It wraps the problem document, and asyncreq.ErrCanceled for a
// canceled request.
type OperationError struct {
	// ID is the request's id, if known.
	ID string
	// State is asyncreq.StateFailed or asyncreq.StateCanceled.
	State asyncreq.State
	// Problem describes the failure; never nil.
	Problem *asyncreq.Problem
}

// Error implements error.
func (e *OperationError) Error() string {
	msg := "client: request " + e.ID + " " + string(e.State)
	if e.ID == "" {
		msg = "client: request " + string(e.State)
	}
	switch {
	case e.Problem.Detail != "":
		msg += ": " + e.Problem.Detail
	case e.Problem.Title != "":
		msg += ": " + e.Problem.Title
	}
	return msg
}

// Unwrap returns the problem document, and asyncreq.ErrCanceled for a
// canceled request.
func (e *OperationError) Unwrap() []error {
	if e.State == asyncreq.StateCanceled {
		return []error{e.Problem, asyncreq.ErrCanceled}
	}
	return []error{e.Problem}
}

// tooManyRedirectsError ends a chain of redirects that does not end.
type tooManyRedirectsError struct{ url string }

func (e *tooManyRedirectsError) Error() string {
	return "client: too many redirects at " + e.url
}

// Unwrap makes the error an ErrProtocol.
func (e *tooManyRedirectsError) Unwrap() error { return ErrProtocol }

// maxRedirects bounds the redirects followed within one step.
const maxRedirects = 10

// answer is a fully read HTTP answer.
type answer struct {
	method     string
	url        *url.URL // the URL that answered
	statusCode int
	header     http.Header
	body       []byte
}

// contentType returns the answer's media type, lowercased, without
// parameters.
func (r *answer) contentType() string {
	mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return strings.ToLower(mt)
}

// responseError turns the answer into a *ResponseError.
func (r *answer) responseError() *ResponseError {
	e := &ResponseError{
		Method:     r.method,
		URL:        r.url.Redacted(),
		StatusCode: r.statusCode,
		Header:     r.header,
		Body:       r.body[:min(len(r.body), 4<<10)],
	}
	if isJSON(r.contentType()) {
		var p asyncreq.Problem
		if json.Unmarshal(r.body, &p) == nil && (p.Title != "" || p.Detail != "" || p.Type != "" || p.Status != 0) {
			if p.Status == 0 {
				p.Status = r.statusCode
			}
			e.Problem = &p
		}
	}
	return e
}

// location resolves the answer's Location header against its URL.
func (r *answer) location() (*url.URL, error) {
	loc := r.header.Get("Location")
	if loc == "" {
		return nil, nil
	}
	u, err := r.url.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("%w: %d answer with a bad Location %q: %w", ErrProtocol, r.statusCode, loc, err)
	}
	return u, nil
}

// isJSON reports whether a media type is JSON (application/json or a +json
// suffix type such as application/problem+json).
func isJSON(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// originOf returns the origin of u: scheme://host:port, lowercased, with
// the default port made explicit.
func originOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host + ":" + port
}

// readBody reads at most max bytes of b, and fails if there are more.
func readBody(b io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(b, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: answer body larger than %d bytes", ErrProtocol, max)
	}
	return data, nil
}

// ceilSeconds returns d in whole seconds, rounded up, at least 1.
func ceilSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
