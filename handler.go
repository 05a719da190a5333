package asyncreq

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// This file is the Handler's face: its options, NewHandler, and the
// routing of ServeHTTP. Each route lives in the file named after it:
// submit.go, status.go, result.go and cancel.go; what they share is in
// access.go (who asks, which record), document.go (the status document),
// header.go (the headers read and written) and problem.go (errors).

// HandlerOptions configures a Handler. A nil *HandlerOptions means all
// defaults; a zero field means that field's default.
type HandlerOptions struct {
	// BasePath, if set, is stripped from r.URL.Path before routing, for
	// routers that do not strip the mount prefix (chi's Mount, for
	// example). A request whose path does not start with BasePath gets 404
	// with a problem that says so, and the first such path is logged at
	// Warn: it usually means the handler is mounted where BasePath does not
	// say (behind http.StripPrefix, say, which needs no BasePath). The
	// default is "": the handler routes on r.URL.Path as it is, so mount
	// it with http.StripPrefix.
	BasePath string

	// MaxBodyBytes is the largest request body accepted on submit; a larger
	// one gets 413 Content Too Large. The default is 1 MiB.
	MaxBodyBytes int64

	// RetryAfter is the Retry-After sent with answers about requests that
	// are not finished and with 503 answers. It is sent in whole seconds,
	// rounded up, at least 1. The default is 1s.
	RetryAfter time.Duration

	// MaxWait caps the wait a client asks for with "Prefer: wait=N" on
	// submit and on status. The default is 30s.
	MaxWait time.Duration

	// Retention is how long a final record and its result are kept before
	// they are purged; it is copied into Record.Retention. The default is
	// 24h.
	Retention time.Duration

	// TombstoneTTL is how long a purged or deleted record's id answers
	// 410 Gone instead of 404; it is copied into Record.TombstoneTTL. The
	// default is 7 days.
	TombstoneTTL time.Duration

	// KeepHeaders names the request headers recorded with a submitted
	// request and handed to the Processor in Request.Header (the
	// Content-Type is always kept, in Request.ContentType). Names are
	// case-insensitive. The entry "*" keeps every end-to-end header except
	// credentials (Authorization, Proxy-Authorization, Cookie), the
	// headers this handler interprets itself (Prefer, Idempotency-Key) and
	// those describing the transfer (Content-Length, Expect, hop-by-hop
	// headers); a header excluded by "*" is still kept when it is also
	// listed by name. Kept headers are stored with the request, so list
	// credentials only when the Store may hold them. They are part of what
	// an Idempotency-Key repeat must match, except the headers that change
	// with every attempt (Date, tracing headers such as Traceparent and
	// X-Request-Id, and those proxies add, such as X-Forwarded-For and
	// Via). The default is none (NewAsync's default is "*").
	KeepHeaders []string

	// Validate, if set, checks a submitted request before anything is
	// stored. An error rejects the request: a *Problem is sent as it is
	// (normally with a 4xx Status; one outside 400-599 is sent as 422), any other
	// error is sent as 422 Unprocessable Content with the error's text as
	// the detail, so it must be fit for the client to read. The default is
	// nil: every request is accepted.
	Validate func(r *http.Request, body []byte) error

	// Owner, if set, maps a request to its owner (a user, a tenant). A
	// record is visible only to requests with the same owner; to any
	// other it does not exist (404), and idempotency keys are scoped to
	// the owner. An error answers 401 Unauthorized (a *Problem is sent as
	// it is). The default is nil: every request has the owner "".
	Owner func(r *http.Request) (string, error)

	// Challenge is the WWW-Authenticate challenge sent with every 401
	// answer to a request that Owner refused (RFC 9110 requires one), for
	// example `Bearer realm="reports"`. The default is "Bearer".
	Challenge string

	// ReplaySetCookie makes a result replay the Set-Cookie headers its
	// Processor set (a handler wrapped by HandlerProcessor or NewAsync,
	// for example). A result is served to whoever fetches it as its owner,
	// possibly long after and from another client than the submit, and a
	// Set-Cookie there would hand that client the cookie a synchronous
	// call would have given the caller; and a shared cache must not keep
	// one. The default is false: Set-Cookie is not replayed, and NewAsync's
	// wrapped handler does not even store it (HandlerProcessor never
	// does).
	ReplaySetCookie bool

	// AcceptedWhilePending is the mode for generic pollers that take any
	// answer but 202 for the operation's own (the Azure SDK's Location
	// poller, Logic Apps; see docs/azure.md). The status URL answers a
	// request that is not finished with 202 Accepted and a Location
	// pointing at the same status URL; a succeeded one with its result
	// (as the result URL serves it, with Content-Location naming that
	// URL); a failed or canceled one with its problem document and the
	// problem's own status. Such pollers need absolute URLs: set
	// PublicURL too. The default is false: such answers are 200 OK, 303
	// to the result, and 200 with the status document, as the pattern
	// prescribes.
	AcceptedWhilePending bool

	// PublicURL, if set, is the absolute URL clients reach the server at,
	// such as "https://api.example.com" (a path, as in
	// "https://example.com/api", is kept and comes before the path the
	// request reached the Handler at). Every URL the Handler writes
	// (Location, Content-Location, status_url, result_url) is then
	// absolute on it, as generic pollers such as the Azure SDK's require.
	// It must be an http or https URL with a host and no user information,
	// query or fragment. The default is "": the URLs are relative (an
	// absolute path, built from the path the request reached).
	PublicURL string

	// Callbacks, if set, lets a submit name a URL in the Callback-URL
	// header that the Worker tells, with a signed webhook, when the
	// request reaches a final state (see WorkerOptions.Webhooks), for
	// clients that cannot poll. Polling keeps working either way. The
	// default is nil: a submit with Callback-URL is refused with 400, so
	// that no client waits for a call that never comes.
	Callbacks *CallbackPolicy

	// Logger receives the errors that are kept from clients: backend
	// failures and rollbacks. The default discards them.
	Logger *slog.Logger

	// Hooks, if set, are told about accepted and rejected submits and
	// served answers (see Hooks). The default is none.
	Hooks *Hooks
}

// The defaults of HandlerOptions.
const (
	defaultMaxBodyBytes = 1 << 20
	defaultChallenge    = "Bearer"
	defaultRetryAfter   = time.Second
	defaultMaxWait      = 30 * time.Second
	defaultRetention    = 24 * time.Hour
	defaultTombstoneTTL = 7 * 24 * time.Hour

	// firstBodyBuffer is the first buffer a submitted body is read into;
	// it doubles as the bytes arrive.
	firstBodyBuffer = 4 << 10
	// maxIdempotencyKeyLen bounds the Idempotency-Key header.
	maxIdempotencyKeyLen = 255
	// pollMin and pollMax bound the interval between Store reads of a long
	// poll, with or without a Watcher (see Handler.await).
	pollMin = 20 * time.Millisecond
	pollMax = 500 * time.Millisecond
)

// withDefaults returns a copy of o with defaults applied, or an error naming
// the first invalid field.
func (o *HandlerOptions) withDefaults() (HandlerOptions, error) {
	var c HandlerOptions
	if o != nil {
		c = *o
	}
	if c.Challenge == "" {
		c.Challenge = defaultChallenge
	}
	c.BasePath = strings.TrimRight(c.BasePath, "/")
	if c.BasePath != "" && c.BasePath[0] != '/' {
		return c, fmt.Errorf("asyncreq: HandlerOptions.BasePath must start with /, got %q", o.BasePath)
	}
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"RetryAfter", &c.RetryAfter, defaultRetryAfter},
		{"MaxWait", &c.MaxWait, defaultMaxWait},
		{"Retention", &c.Retention, defaultRetention},
		{"TombstoneTTL", &c.TombstoneTTL, defaultTombstoneTTL},
	}
	for _, f := range durations {
		switch {
		case *f.d < 0:
			return c, fmt.Errorf("asyncreq: HandlerOptions.%s must not be negative, got %s", f.name, *f.d)
		case *f.d == 0:
			*f.d = f.def
		}
	}
	switch {
	case c.MaxBodyBytes < 0:
		return c, fmt.Errorf("asyncreq: HandlerOptions.MaxBodyBytes must not be negative, got %d", c.MaxBodyBytes)
	case c.MaxBodyBytes == 0:
		c.MaxBodyBytes = defaultMaxBodyBytes
	}
	for _, name := range c.KeepHeaders {
		if name != "*" && !validToken(name) {
			return c, fmt.Errorf("asyncreq: HandlerOptions.KeepHeaders: %q is not a header name", name)
		}
	}
	c.KeepHeaders = append([]string(nil), c.KeepHeaders...)
	origin, err := publicOrigin(c.PublicURL)
	if err != nil {
		return c, err
	}
	c.PublicURL = origin
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Handler serves the asynchronous request-reply HTTP contract over a
// Backend: submit with POST, poll the status URL, fetch the result,
// cancel or forget with DELETE. Relative to where it is mounted, it serves
//
//	POST   /             submit a request: 202 Accepted + Location
//	GET    /{id}/status  the status document (HEAD too)
//	GET    /{id}         the result (HEAD too)
//	DELETE /{id}         cancel a request, or delete a finished one
//
// Every URL it writes into a header or a body is built from the path the
// request reached it at, so it is right behind http.StripPrefix or a
// router's mount prefix (see HandlerOptions.BasePath). Every error answer
// is an RFC 9457 problem document (application/problem+json); the errors
// behind it go to the Logger, never to the client.
//
// A Handler is safe for concurrent use. It starts no goroutines of its own;
// a Worker processes what it accepts.
type Handler struct {
	store Store // the Backend's records
	// put records and enqueues a new request: the Backend's Accepter, or
	// acceptInTwo; it has Accepter.Accept's results.
	put     func(ctx context.Context, rec *Record) (*Record, error)
	watcher Watcher // the Backend's watch capability, or nil
	opts    HandlerOptions
	log     *slog.Logger

	keeper     headerKeeper // picks the headers KeepHeaders names
	retryAfter string       // RetryAfter in whole seconds
	now        func() time.Time

	// outsideLogged is set once a path outside BasePath was logged.
	outsideLogged atomic.Bool
}

// NewHandler returns a Handler serving the HTTP contract over b. When b
// implements Accepter (and is not made by Pair), a request is recorded and
// enqueued in one step; otherwise in two (see Pair). A nil opts means all
// defaults. NewHandler returns an error naming the field when an option
// is invalid, and one naming what is missing when b, or a part of a Pair,
// is nil.
func NewHandler(b Backend, opts *HandlerOptions) (*Handler, error) {
	if err := checkBackend("NewHandler", b); err != nil {
		return nil, err
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &Handler{
		store:      b,
		opts:       o,
		log:        o.Logger,
		keeper:     newHeaderKeeper(o.KeepHeaders),
		retryAfter: seconds(o.RetryAfter),
		now:        time.Now,
	}
	store, queue, isPair := split(b)
	if a, ok := b.(Accepter); ok && !isPair {
		h.put = func(ctx context.Context, rec *Record) (*Record, error) {
			rec.Enqueued = true
			return a.Accept(ctx, rec)
		}
	} else {
		h.put = func(ctx context.Context, rec *Record) (*Record, error) {
			return acceptInTwo(ctx, store, queue, rec, func(msg string, err error) { h.logBackend(ctx, msg, rec.ID, err) })
		}
	}
	h.watcher, _ = b.(Watcher)

	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if h.opts.BasePath != "" {
		rest, ok := strings.CutPrefix(p, h.opts.BasePath)
		if !ok || rest != "" && rest[0] != '/' {
			h.outsideBasePath(w, r, p)
			return
		}
		p = rest
	}
	suffix := p
	if p == "" {
		p = "/"
	}
	if !routable(p) {
		sendError(w, r, http.StatusNotFound, "no such resource")
		return
	}
	// The routes get the request as it came, with the caller's pattern
	// and path values, and what the path says in st.
	id, sub, _ := strings.Cut(p[1:], "/")
	st := &reqState{orig: r, base: h.opts.PublicURL + h.basePath(r, suffix), id: id}
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case id == "":
		if r.Method != http.MethodPost {
			h.methodNotAllowed(w, r, "POST")
			return
		}
		h.serveSubmit(w, r, st)
	case sub != "": // "status", as routable lets through no other
		if !get {
			h.methodNotAllowed(w, r, "GET, HEAD")
			return
		}
		h.serveStatus(w, r, st)
	case get:
		h.serveResult(w, r, st)
	case r.Method == http.MethodDelete:
		h.serveDelete(w, r, st)
	default:
		h.methodNotAllowed(w, r, "GET, HEAD, DELETE")
	}
}

// maxPathInDetail bounds the path a problem's detail repeats.
const maxPathInDetail = 256

// outsideBasePath answers 404 for a request whose path p is not under
// BasePath, and logs the first such path at Warn: a handler mounted where
// its BasePath does not say sees nothing but such paths.
func (h *Handler) outsideBasePath(w http.ResponseWriter, r *http.Request, p string) {
	if h.outsideLogged.CompareAndSwap(false, true) {
		h.log.LogAttrs(r.Context(), slog.LevelWarn,
			"asyncreq: a request's path is not under HandlerOptions.BasePath; is the handler mounted where BasePath says? "+
				"(behind http.StripPrefix it needs no BasePath) Logged once.",
			slog.String("path", p), slog.String("base_path", h.opts.BasePath))
	}
	if len(p) > maxPathInDetail {
		p = p[:maxPathInDetail] + "..."
	}
	sendError(w, r, http.StatusNotFound, "the path "+p+" is not under the handler's BasePath "+h.opts.BasePath)
}

// routable reports whether p has one of the shapes the routes serve: "/",
// "/{id}" or "/{id}/status", with a segment that is not "." or "..".
func routable(p string) bool {
	if p == "/" {
		return true
	}
	if p == "" || p[0] != '/' {
		return false
	}
	seg, rest, found := strings.Cut(p[1:], "/")
	if seg == "" || seg == "." || seg == ".." {
		return false
	}
	return !found || rest == "status"
}

// basePath returns the path the handler is mounted at, as the client sees
// it: the path of the request line minus the routed suffix.
func (h *Handler) basePath(r *http.Request, suffix string) string {
	reqPath := r.URL.EscapedPath()
	if ru := r.RequestURI; ru != "" {
		if ru[0] == '/' {
			reqPath, _, _ = strings.Cut(ru, "?")
		} else if u, err := url.ParseRequestURI(ru); err == nil && strings.HasPrefix(u.EscapedPath(), "/") {
			reqPath = u.EscapedPath()
		}
	}
	base, ok := strings.CutSuffix(reqPath, suffix)
	if !ok {
		return h.opts.BasePath
	}
	base = strings.TrimRight(base, "/")
	// A request line such as "GET //evil.example/jobs/{id}/status" that a
	// path-cleaning router or middleware let through would otherwise make
	// every URL written from it (Location included) name another host:
	// "//" starts a network-path reference, and browsers read "/\" alike.
	if len(base) >= 2 && base[0] == '/' && (base[1] == '/' || base[1] == '\\') {
		return h.opts.BasePath
	}
	return base
}

// methodNotAllowed answers 405 with the given Allow.
func (h *Handler) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	sendError(w, r, http.StatusMethodNotAllowed, "the method "+strconv.Quote(r.Method)+" is not allowed here; allowed: "+allow)
}
