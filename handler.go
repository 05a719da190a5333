package asyncreq

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// HandlerOptions configures a Handler. A nil *HandlerOptions means all
// defaults; a zero field means that field's default.
type HandlerOptions struct {
	// BasePath, if set, is stripped from r.URL.Path before routing, for
	// routers that do not strip the mount prefix (chi's Mount, for
	// example). A request whose path does not start with BasePath gets 404.
	// The default is "": the handler routes on r.URL.Path as it is, so
	// mount it with http.StripPrefix.
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

	// AcceptedWhilePending makes the status URL answer a request that is
	// not finished with 202 Accepted and a Location pointing at the same
	// status URL, for generic pollers that treat any other 2xx as done.
	// The default is false: such answers are 200 OK, as the pattern
	// prescribes.
	AcceptedWhilePending bool

	// Logger receives the errors that are kept from clients: backend
	// failures and rollbacks. The default discards them.
	Logger *slog.Logger
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
	// cleanupTimeout bounds the writes that finish an accept (the mark
	// that the Queue holds the request, or the rollback after the Queue
	// refused it), which run even when the client has gone.
	cleanupTimeout = 10 * time.Second
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Handler serves the asynchronous request-reply HTTP contract over a Store
// and a Queue: submit with POST, poll the status URL, fetch the result,
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
	store    Store
	queue    Queue
	accepter Accepter // set when store and queue are one value that accepts in one step
	watcher  Watcher  // the store's watch capability, or nil
	opts     HandlerOptions
	log      *slog.Logger

	keepAll    bool                // KeepHeaders holds "*"
	keep       map[string]struct{} // canonical names listed in KeepHeaders
	retryAfter string              // RetryAfter in whole seconds
	mux        *http.ServeMux
	now        func() time.Time
}

// NewHandler returns a Handler serving the HTTP contract over store and
// queue, which may be one value. When they are the same value and it
// implements Accepter, a request is recorded and enqueued in one step.
// A nil opts means all defaults. NewHandler returns an error naming the
// field when an option is invalid.
func NewHandler(store Store, queue Queue, opts *HandlerOptions) (*Handler, error) {
	switch {
	case store == nil:
		return nil, errors.New("asyncreq: NewHandler: nil Store")
	case queue == nil:
		return nil, errors.New("asyncreq: NewHandler: nil Queue")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &Handler{
		store:      store,
		queue:      queue,
		opts:       o,
		log:        o.Logger,
		keep:       make(map[string]struct{}, len(o.KeepHeaders)),
		retryAfter: seconds(o.RetryAfter),
		now:        time.Now,
	}
	if a, ok := store.(Accepter); ok && sameValue(store, queue) {
		h.accepter = a
	}
	h.watcher, _ = store.(Watcher)
	for _, name := range o.KeepHeaders {
		if name == "*" {
			h.keepAll = true
			continue
		}
		h.keep[http.CanonicalHeaderKey(name)] = struct{}{}
	}

	// The patterns with a method serve the contract; those without answer
	// every other method with 405. ServeHTTP lets only paths of these
	// three shapes through, so the mux never answers on its own.
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{$}", h.serveSubmit)
	mux.HandleFunc("/{$}", h.methodNotAllowed("POST"))
	mux.HandleFunc("GET /{id}/status", h.serveStatus)
	mux.HandleFunc("/{id}/status", h.methodNotAllowed("GET, HEAD"))
	mux.HandleFunc("GET /{id}", h.serveResult)
	mux.HandleFunc("DELETE /{id}", h.serveDelete)
	mux.HandleFunc("/{id}", h.methodNotAllowed("GET, HEAD, DELETE"))
	h.mux = mux
	return h, nil
}

// sameValue reports whether a and b are the same value, without panicking
// on values of types that are not comparable.
func sameValue(a, b any) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// reqState is what ServeHTTP hands to the routes: the request as it
// arrived (with the caller's path values, for Owner and Validate) and the
// base path that URLs are built from.
type reqState struct {
	orig  *http.Request
	base  string
	owner string // the caller's owner, once Owner has run
}

type reqStateKey struct{}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if h.opts.BasePath != "" {
		rest, ok := strings.CutPrefix(p, h.opts.BasePath)
		if !ok || rest != "" && rest[0] != '/' {
			sendError(w, r, http.StatusNotFound, "no such resource")
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
	st := &reqState{orig: r, base: h.basePath(r, suffix)}
	// Route a shallow copy, as http.StripPrefix does: the mux sets the
	// pattern and path values on the request it serves, and the caller's
	// must stay as they are.
	r2 := r.WithContext(context.WithValue(r.Context(), reqStateKey{}, st))
	u := *r.URL
	u.Path, u.RawPath = p, ""
	r2.URL = &u
	h.mux.ServeHTTP(w, r2)
}

// routable reports whether p has one of the shapes the mux serves: "/",
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

func state(r *http.Request) *reqState {
	if st, ok := r.Context().Value(reqStateKey{}).(*reqState); ok {
		return st
	}
	return &reqState{orig: r}
}

func (st *reqState) statusURL(id string) string { return st.base + "/" + id + "/status" }
func (st *reqState) resultURL(id string) string { return st.base + "/" + id }

// methodNotAllowed returns a handler answering 405 with the given Allow.
func (h *Handler) methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		sendError(w, r, http.StatusMethodNotAllowed, "the method "+strconv.Quote(r.Method)+" is not allowed here; allowed: "+allow)
	}
}

// owner runs the Owner function and notes its answer in st. When it
// fails, owner has answered and returns false.
func (h *Handler) owner(w http.ResponseWriter, r *http.Request, st *reqState) (string, bool) {
	if h.opts.Owner == nil {
		return "", true
	}
	o, err := h.opts.Owner(st.orig)
	st.owner = o
	if err != nil {
		// Only a 401 carries it; a *Problem with another status does not.
		challenge := func(status int) {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", h.opts.Challenge)
			}
		}
		var p *Problem
		if errors.As(err, &p) && p != nil {
			np := servedProblem(p, http.StatusUnauthorized)
			challenge(np.Status)
			writeProblem(w, r, np)
			return "", false
		}
		h.log.LogAttrs(r.Context(), slog.LevelDebug, "asyncreq: owner rejected request", slog.Any("err", err))
		challenge(http.StatusUnauthorized)
		sendError(w, r, http.StatusUnauthorized, "the request is not authenticated")
		return "", false
	}
	return o, true
}

// serveSubmit serves POST /: record and enqueue a request.
func (h *Handler) serveSubmit(w http.ResponseWriter, r *http.Request) {
	st := state(r)
	w.Header().Add("Vary", "Prefer")
	owner, ok := h.owner(w, r, st)
	if !ok {
		return
	}
	key, ok := idempotencyKey(r.Header)
	if !ok {
		sendError(w, r, http.StatusBadRequest, "the Idempotency-Key header must be one non-empty key of at most 255 printable characters")
		return
	}
	body, status := h.readBody(w, r)
	if status != 0 {
		if status == http.StatusRequestEntityTooLarge {
			sendError(w, r, status, "the request body is larger than "+strconv.FormatInt(h.opts.MaxBodyBytes, 10)+" bytes")
		} else {
			sendError(w, r, status, "the request body could not be read")
		}
		return
	}
	if h.opts.Validate != nil {
		if err := h.opts.Validate(st.orig, body); err != nil {
			var p *Problem
			if errors.As(err, &p) && p != nil {
				sendProblem(w, r, p, http.StatusUnprocessableEntity)
			} else {
				sendError(w, r, http.StatusUnprocessableEntity, err.Error())
			}
			return
		}
	}

	now := h.now().UTC()
	rec := &Record{
		ID:             NewID(),
		Owner:          owner,
		IdempotencyKey: key,
		State:          StatePending,
		Method:         r.Method,
		URL:            st.orig.URL.RequestURI(),
		Header:         h.keptHeader(r.Header),
		ContentType:    r.Header.Get("Content-Type"),
		Body:           body,
		CreatedAt:      now,
		UpdatedAt:      now,
		Retention:      h.opts.Retention,
		TombstoneTTL:   h.opts.TombstoneTTL,
	}
	rec.BodyHash = fingerprint(rec)
	prefs := parsePrefer(r.Header)
	rec, ok = h.accept(w, r, rec)
	if !ok {
		return
	}

	wait := h.capWait(prefs.wait)
	if wait > 0 && !rec.State.Final() {
		cur, err := h.await(r.Context(), rec, wait, func(c *Record) bool { return c.State.Final() })
		switch {
		case err == nil:
			rec = cur
		case !isMissing(err):
			h.logBackend(r.Context(), "asyncreq: waiting for a submitted request", rec.ID, err)
		}
	}
	if wait > 0 && rec.State.Final() {
		w.Header().Set("Preference-Applied", "wait="+seconds(wait))
		if successful(rec) {
			w.Header().Set("Content-Location", st.resultURL(rec.ID))
			h.writeResult(w, r, rec)
			return
		}
		// A failure's own 4xx or 5xx would read as a submit that was not
		// accepted, and be sent again: the answer points at the status.
		w.Header().Set("Location", st.statusURL(rec.ID))
		h.writeDocument(w, r, http.StatusSeeOther, h.statusDocument(rec, st))
		return
	}
	if prefs.respondAsync {
		w.Header().Set("Preference-Applied", "respond-async")
	}
	w.Header().Set("Location", st.statusURL(rec.ID))
	w.Header().Set("Retry-After", h.retryAfter)
	h.writeDocument(w, r, http.StatusAccepted, h.statusDocument(rec, st))
}

// successful reports whether rec succeeded with a 2xx result, the only
// final outcome a submit answers with inline (Prefer: wait); a failure, a
// cancel and a result that is itself an error answer (a wrapped handler's
// 503) are answered 303 to the status URL.
func successful(rec *Record) bool {
	if rec.State != StateSucceeded {
		return false
	}
	code := http.StatusOK
	if rec.Result != nil && rec.Result.StatusCode != 0 {
		code = rec.Result.StatusCode
	}
	return code >= 200 && code <= 299
}

// readBody reads the request body up to MaxBodyBytes. It returns a
// non-zero status when the body is too large or cannot be read.
//
// The buffer grows with the bytes that arrive, never ahead of them: a
// Content-Length is the peer's claim, and sizing memory by it would let
// connections that announce MaxBodyBytes and send one byte hold
// MaxBodyBytes each. Only a small announced body (at most
// firstBodyBuffer) is read into a buffer of its exact size.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int) {
	limit := h.opts.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, 0
	}
	rd := http.MaxBytesReader(w, r.Body, limit)
	size := int64(firstBodyBuffer)
	if r.ContentLength >= 0 && r.ContentLength < firstBodyBuffer {
		// The announced length plus one byte to see EOF in one read.
		size = r.ContentLength + 1
	}
	body := make([]byte, 0, min(size, limit+1))
	for {
		n, err := rd.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				return nil, http.StatusRequestEntityTooLarge
			}
			return nil, http.StatusBadRequest
		}
		if len(body) == cap(body) {
			// Double what has arrived, up to the limit plus the byte that
			// tells the limit was passed (the reader stops there).
			body = slices.Grow(body, int(min(int64(len(body)), limit+1-int64(len(body)))))
		}
	}
	if len(body) == 0 {
		return nil, 0
	}
	return body, 0
}

// accept records and enqueues rec, or finds the request an earlier submit
// with the same idempotency key made. It returns the record to answer
// with, or false when it has answered already.
func (h *Handler) accept(w http.ResponseWriter, r *http.Request, rec *Record) (*Record, bool) {
	ctx := r.Context()
	var existing *Record
	var err error
	if h.accepter != nil {
		rec.Enqueued = true
		existing, err = h.accepter.Accept(ctx, rec)
	} else {
		existing, err = h.store.Create(ctx, rec)
		if err == nil {
			if err = h.queue.Enqueue(ctx, rec.ID, 0); err != nil {
				h.logBackend(ctx, "asyncreq: enqueue of a new request; rolling back", rec.ID, err)
				h.rollback(ctx, rec.ID)
				h.unavailable(w, r)
				return nil, false
			}
			rec.Enqueued = true
			// The request is durable and queued: a failure to mark it only
			// makes the worker's sweep enqueue it once more, harmlessly. The
			// mark is made even when the client has gone, but a hung Store
			// must not hold the answer forever.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			_, uerr := h.store.Update(uctx, rec.ID, (*Record).MarkEnqueued)
			cancel()
			if uerr != nil && !isMissing(uerr) {
				h.logBackend(ctx, "asyncreq: marking a request enqueued", rec.ID, uerr)
			}
		}
	}
	switch {
	case err == nil:
		return rec, true
	case errors.Is(err, ErrDuplicate) && existing != nil:
		switch {
		case !sameRequest(existing, rec):
			sendError(w, r, http.StatusUnprocessableEntity, "the Idempotency-Key was already used with a different request "+
				"(method, path and query, Content-Type, headers or body)")
			return nil, false
		case existing.needsEnqueue():
			// Not known to be queued yet: the first submit is still
			// between Store and Queue (or was interrupted there, and the
			// worker's sweep will enqueue it).
			w.Header().Set("Retry-After", h.retryAfter)
			sendError(w, r, http.StatusConflict, "a request with this Idempotency-Key is still being accepted; retry later")
			return nil, false
		}
		return existing, true
	default:
		h.logBackend(ctx, "asyncreq: accepting a request", rec.ID, err)
		h.unavailable(w, r)
		return nil, false
	}
}

// fingerprint returns what Record.BodyHash holds: the hex SHA-256 of what
// makes a submitted request the one it is, for Idempotency-Key repeats. It
// covers the method, the path and query, the Content-Type, the kept
// headers (but not those that change with every attempt; see
// attemptHeaders) and the body, each field prefixed with its length, so
// that two different requests never hash the same bytes by running
// together ("/?a=b" + "c" is not "/?a=bc" + "").
func fingerprint(rec *Record) string {
	s := sha256.New()
	var n [8]byte
	length := func(l int) {
		binary.BigEndian.PutUint64(n[:], uint64(l))
		_, _ = s.Write(n[:])
	}
	field := func(v string) {
		length(len(v))
		_, _ = io.WriteString(s, v)
	}
	field(rec.Method)
	field(rec.URL)
	field(rec.ContentType)
	names := make([]string, 0, len(rec.Header))
	for k := range rec.Header {
		if !attemptHeaders[http.CanonicalHeaderKey(k)] {
			names = append(names, k)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		return strings.Compare(http.CanonicalHeaderKey(a), http.CanonicalHeaderKey(b))
	})
	length(len(names))
	for _, k := range names {
		vs := rec.Header[k]
		field(http.CanonicalHeaderKey(k))
		length(len(vs))
		for _, v := range vs {
			field(v)
		}
	}
	length(len(rec.Body))
	_, _ = s.Write(rec.Body)
	var sum [sha256.Size]byte
	return hex.EncodeToString(s.Sum(sum[:0]))
}

// attemptHeaders are request headers that describe one attempt to send a
// request rather than the request: tracing, request ids and what proxies
// add. Clients, proxies and tracers set them anew on every retry, so a
// fingerprint that covered them would refuse every retried submit with a
// kept (KeepHeaders "*") tracing header. They are still kept and handed
// to the Processor.
var attemptHeaders = map[string]bool{
	"Date": true, "Traceparent": true, "Tracestate": true, "Baggage": true,
	"X-Request-Id": true, "X-Correlation-Id": true, "X-Amzn-Trace-Id": true,
	"X-Cloud-Trace-Context": true, "Uber-Trace-Id": true, "Sentry-Trace": true, "B3": true,
	"X-B3-Traceid": true, "X-B3-Spanid": true, "X-B3-Parentspanid": true, "X-B3-Sampled": true, "X-B3-Flags": true,
	"Forwarded": true, "Via": true, "X-Forwarded-For": true, "X-Forwarded-Host": true,
	"X-Forwarded-Proto": true, "X-Forwarded-Port": true, "X-Real-Ip": true,
}

// sameRequest reports whether a submit (rec) repeats the request that
// made existing, by their fingerprints. A record written while BodyHash
// held the hash of the body alone is compared by the body alone.
func sameRequest(existing, rec *Record) bool {
	if existing.BodyHash == rec.BodyHash {
		return true
	}
	sum := sha256.Sum256(rec.Body)
	return existing.BodyHash == hex.EncodeToString(sum[:])
}

// rollback deletes a record whose enqueue failed, so that no half-made
// request stays visible. It runs even when the client has gone.
func (h *Handler) rollback(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := h.store.Delete(ctx, id, false); err != nil && !isMissing(err) {
		h.logBackend(ctx, "asyncreq: rollback of an unenqueued request (the worker's sweep enqueues it if the Store lists unenqueued records)", id, err)
	}
}

// serveStatus serves GET and HEAD /{id}/status.
func (h *Handler) serveStatus(w http.ResponseWriter, r *http.Request) {
	st := state(r)
	w.Header().Add("Vary", "Prefer")
	w.Header().Set("Cache-Control", "no-store")
	rec, ok := h.lookup(w, r, st)
	if !ok {
		return
	}
	if wait := h.capWait(parsePrefer(r.Header).wait); wait > 0 && !rec.State.Final() {
		first := rec
		cur, err := h.await(r.Context(), rec, wait, func(c *Record) bool { return changed(first, c) })
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		rec = cur
		w.Header().Set("Preference-Applied", "wait="+seconds(wait))
	}
	doc := h.statusDocument(rec, st)
	switch rec.State {
	case StateSucceeded:
		w.Header().Set("Location", st.resultURL(rec.ID))
		h.writeDocument(w, r, http.StatusSeeOther, doc)
	case StateFailed, StateCanceled:
		h.writeDocument(w, r, http.StatusOK, doc)
	default:
		w.Header().Set("Retry-After", h.retryAfter)
		if h.opts.AcceptedWhilePending {
			w.Header().Set("Location", st.statusURL(rec.ID))
			h.writeDocument(w, r, http.StatusAccepted, doc)
			return
		}
		h.writeDocument(w, r, http.StatusOK, doc)
	}
}

// changed reports whether a long poll that started at first has news in
// cur: another state or other progress.
func changed(first, cur *Record) bool {
	if first.State != cur.State {
		return true
	}
	switch {
	case first.Progress == nil && cur.Progress == nil:
		return false
	case first.Progress == nil || cur.Progress == nil:
		return true
	}
	return *first.Progress != *cur.Progress
}

// serveResult serves GET and HEAD /{id}.
func (h *Handler) serveResult(w http.ResponseWriter, r *http.Request) {
	st := state(r)
	rec, ok := h.lookup(w, r, st)
	if !ok {
		return
	}
	h.writeOutcome(w, r, rec, st)
}

// writeOutcome answers with what the result URL serves for rec: the result,
// the failure, or 404 while it is not finished.
func (h *Handler) writeOutcome(w http.ResponseWriter, r *http.Request, rec *Record, st *reqState) {
	switch rec.State {
	case StateSucceeded:
		h.writeResult(w, r, rec)
	case StateFailed, StateCanceled:
		if rec.Owner != "" {
			w.Header().Set("Cache-Control", "private")
		}
		sendProblem(w, r, failureProblem(rec), http.StatusInternalServerError)
	default:
		statusURL := st.statusURL(rec.ID)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Retry-After", h.retryAfter)
		p := servedProblem(newProblem(http.StatusNotFound,
			"the request is "+string(rec.State)+"; its result is not available yet; see "+statusURL), http.StatusNotFound)
		writeProblem(w, r, &pendingProblem{Problem: *p, StatusURL: statusURL})
	}
}

// failureProblem returns the problem a failed or canceled record answers
// with.
func failureProblem(rec *Record) *Problem {
	if rec.Error != nil {
		return rec.Error
	}
	if rec.State == StateCanceled {
		return canceledProblem()
	}
	return failedProblem("processing failed")
}

// writeResult serves a succeeded request's result with its status code,
// Content-Type, the headers it may carry, and a strong ETag. The result of
// an owned record is private: no shared cache may keep it for another.
func (h *Handler) writeResult(w http.ResponseWriter, r *http.Request, rec *Record) {
	res := rec.Result
	if res == nil {
		res = &Result{}
	}
	hdr := w.Header()
	for k, vs := range res.Header {
		k = http.CanonicalHeaderKey(k)
		if notReplayed(k, res.Header) || k == "Set-Cookie" && !h.opts.ReplaySetCookie {
			continue
		}
		if k == "Vary" {
			hdr[k] = append(hdr[k], vs...)
			continue
		}
		hdr[k] = append([]string(nil), vs...)
	}
	if rec.Owner != "" {
		hdr["Cache-Control"] = privateCacheControl(hdr["Cache-Control"])
	}
	ctype := res.ContentType
	if ctype == "" {
		ctype = res.Header.Get("Content-Type")
	}
	// A Content-Type key without a value asks for no type at all, as it
	// does in net/http; otherwise a missing type is sniffed.
	_, untyped := res.Header[http.CanonicalHeaderKey("Content-Type")]
	untyped = untyped && ctype == ""
	if ctype == "" && !untyped && len(res.Body) > 0 {
		ctype = http.DetectContentType(res.Body)
	}
	if ctype != "" {
		hdr.Set("Content-Type", ctype)
	} else {
		hdr["Content-Type"] = nil
	}
	etag := resultETag(res, ctype)
	hdr.Set("ETag", etag)

	code := res.StatusCode
	switch {
	case code == 0:
		code = http.StatusOK
	case code < 200 || code > 999:
		h.log.LogAttrs(r.Context(), slog.LevelError, "asyncreq: result has an invalid status code; serving 500",
			slog.String("id", rec.ID), slog.Int("status", code))
		for k := range hdr {
			delete(hdr, k)
		}
		sendError(w, r, http.StatusInternalServerError, "the result cannot be served")
		return
	}
	// If-None-Match is evaluated for GET and HEAD only: on a submit
	// answered with its result (Prefer: wait) it is a precondition on the
	// collection, not on this result.
	if code >= 200 && code < 300 && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		etagMatch(r.Header.Get("If-None-Match"), etag) {
		for _, k := range []string{"Content-Type", "Content-Length", "Content-Language", "Content-Encoding"} {
			hdr.Del(k)
		}
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if !bodyAllowed(code) {
		w.WriteHeader(code)
		return
	}
	hdr.Set("Content-Length", strconv.Itoa(len(res.Body)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(res.Body)
	}
}

// privateCacheControl returns the Cache-Control of a result that only its
// owner may see: the result's own directives (cc) without those that let
// a shared cache store it (public, s-maxage, and private with field names,
// which leaves the other fields shareable), and with private added unless
// private or no-store is there already.
func privateCacheControl(cc []string) []string {
	var out []string
	private := false
	for _, v := range cc {
		for _, d := range splitDirectives(v) {
			name, arg, hasArg := strings.Cut(d, "=")
			switch name = strings.ToLower(strings.TrimSpace(name)); {
			case name == "public", name == "s-maxage", name == "private" && hasArg && strings.TrimSpace(arg) != "":
				continue
			case name == "private", name == "no-store":
				private = true
			}
			out = append(out, d)
		}
	}
	if !private {
		out = append(out, "private")
	}
	return []string{strings.Join(out, ", ")}
}

// splitDirectives splits a Cache-Control value at the commas outside
// quoted strings and trims the directives, leaving out empty ones.
func splitDirectives(v string) []string {
	var out []string
	quoted, escaped, start := false, false, 0
	add := func(end int) {
		if d := strings.TrimSpace(v[start:end]); d != "" {
			out = append(out, d)
		}
		start = end + 1
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			add(i)
		}
	}
	add(len(v))
	return out
}

// resultETag returns a strong entity tag of the result's representation:
// its content type and body.
func resultETag(res *Result, ctype string) string {
	s := sha256.New()
	_, _ = io.WriteString(s, ctype)
	_, _ = s.Write([]byte{0})
	_, _ = s.Write(res.Body)
	var sum [sha256.Size]byte
	return `"` + hex.EncodeToString(s.Sum(sum[:0])[:16]) + `"`
}

// etagMatch reports whether an If-None-Match value matches etag, by the weak
// comparison RFC 9110 prescribes for If-None-Match.
func etagMatch(inm, etag string) bool {
	for inm != "" {
		var tag string
		tag, inm, _ = strings.Cut(inm, ",")
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			return true
		}
		tag = strings.TrimPrefix(tag, "W/")
		if tag == etag {
			return true
		}
	}
	return false
}

// bodyAllowed reports whether a response with the given status may have a
// body.
func bodyAllowed(code int) bool {
	return !(code >= 100 && code <= 199 || code == http.StatusNoContent || code == http.StatusNotModified)
}

// hopByHop lists the headers that describe one connection, not the
// message (RFC 9110 section 7.6.1).
var hopByHop = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// notReplayed reports whether the result header k is left out when a
// result is served: hop-by-hop headers (with those named by Connection) and
// the headers the handler sets itself. (Set-Cookie is left out too unless
// HandlerOptions.ReplaySetCookie is set; see writeResult.)
func notReplayed(k string, h http.Header) bool {
	switch k {
	case "Content-Length", "Content-Type", "Etag", "Date":
		return true
	}
	return hopByHop[k] || connectionListed(k, h)
}

// connectionListed reports whether the Connection header in h names k.
func connectionListed(k string, h http.Header) bool {
	for _, v := range h["Connection"] {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(f), k) {
				return true
			}
		}
	}
	return false
}

// serveDelete serves DELETE /{id}: cancel a request that is not finished,
// delete one that is.
func (h *Handler) serveDelete(w http.ResponseWriter, r *http.Request) {
	st := state(r)
	owner, ok := h.owner(w, r, st)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !ValidID(id) {
		sendError(w, r, http.StatusNotFound, "no request with this id")
		return
	}
	ctx := r.Context()
	now := h.now().UTC()
	rec, err := checkRecord(h.store.Update(ctx, id, func(c *Record) error {
		return c.RequestCancel(owner, now)
	}))
	switch {
	case err == nil:
		h.writeDocument(w, r, http.StatusAccepted, h.statusDocument(rec, st))
		return
	case !errors.Is(err, ErrFinished):
		h.storeError(w, r, err)
		return
	}
	if err := h.store.Delete(ctx, id, true); err != nil {
		h.storeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// lookup reads the record the path names and checks its owner. When it
// fails, lookup has answered and returns false.
func (h *Handler) lookup(w http.ResponseWriter, r *http.Request, st *reqState) (*Record, bool) {
	owner, ok := h.owner(w, r, st)
	if !ok {
		return nil, false
	}
	id := r.PathValue("id")
	if !ValidID(id) {
		sendError(w, r, http.StatusNotFound, "no request with this id")
		return nil, false
	}
	rec, err := checkRecord(h.store.Get(r.Context(), id))
	if err != nil {
		h.storeError(w, r, err)
		return nil, false
	}
	if !rec.visibleTo(owner) {
		sendError(w, r, http.StatusNotFound, "no request with this id")
		return nil, false
	}
	return rec, true
}

// storeError answers for an error from the Store: 404, 410, or 503.
func (h *Handler) storeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrGone) && !goneTo(err, state(r).owner, h.opts.Owner != nil):
		sendError(w, r, http.StatusNotFound, "no request with this id")
	case errors.Is(err, ErrGone):
		sendError(w, r, http.StatusGone, "the request was deleted or has expired")
	default:
		h.logBackend(r.Context(), "asyncreq: store", r.PathValue("id"), err)
		h.unavailable(w, r)
	}
}

// logBackend logs a backend error. An error caused by the client going
// away is logged at debug level only.
func (h *Handler) logBackend(ctx context.Context, msg, id string, err error) {
	level := slog.LevelError
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		level = slog.LevelDebug
	}
	h.log.LogAttrs(ctx, level, msg, slog.String("id", id), slog.Any("err", err))
}

// unavailable answers 503 with Retry-After.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", h.retryAfter)
	sendError(w, r, http.StatusServiceUnavailable, "the service cannot handle the request right now; retry later")
}

// seconds formats d in whole seconds, rounded up.
func seconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

// capWait bounds a client's Prefer wait by MaxWait.
func (h *Handler) capWait(d time.Duration) time.Duration {
	return min(d, h.opts.MaxWait)
}

// await reads the record until done holds for it or d passes or ctx ends,
// and returns the last record read (rec when no read succeeded).
//
// A watch is a hint, never the only source of truth: a Store's Watcher may
// miss changes (SQLite's sees only its own process's writes, PostgreSQL's
// only its own Store's without LISTEN). So await reads the record on the
// same schedule whether or not it holds a watch, pollMin after the last
// read at first and twice as long each time up to pollMax, and a change the
// watch reports only cuts the current pause short. When d passes it reads
// the record once more, so that the answer is as fresh as the deadline.
// It returns an error only when the Store fails before d passes, or the
// record is gone.
func (h *Handler) await(ctx context.Context, rec *Record, d time.Duration, done func(*Record) bool) (*Record, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	id := rec.ID
	last := rec
	watcher := h.watcher
	wait := pollMin
	// The watch held, nil when none is. Each watch is released before the
	// next one is made.
	var changed <-chan struct{}
	stopWatch := func() {}
	defer func() { stopWatch() }()
poll:
	for {
		if watcher != nil && changed == nil {
			stopWatch()
			c, stop, err := watch(wctx, watcher, id)
			switch {
			case err == nil:
				changed, stopWatch = c, stop
			case wctx.Err() != nil:
				break poll
			default:
				// Polling still answers the client; note the failure.
				h.logBackend(ctx, "asyncreq: watch failed; polling instead", id, err)
				watcher, stopWatch = nil, func() {}
			}
		}
		// Read after watching: a change in between is then not missed.
		cur, err := checkRecord(h.store.Get(wctx, id))
		if err != nil {
			if wctx.Err() != nil && !isMissing(err) {
				break poll
			}
			return last, err
		}
		last = cur
		if done(cur) {
			return cur, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
			changed = nil
		case <-t.C:
			wait = min(2*wait, pollMax)
		case <-wctx.Done():
		}
		t.Stop()
		if wctx.Err() != nil {
			break poll
		}
	}
	// The deadline: one last read, bounded like a pause, unless the
	// client has gone.
	if ctx.Err() != nil {
		return last, nil
	}
	rctx, cancelRead := context.WithTimeout(ctx, pollMax)
	defer cancelRead()
	cur, err := checkRecord(h.store.Get(rctx, id))
	switch {
	case err == nil:
		return cur, nil
	case isMissing(err):
		return last, err
	}
	h.logBackend(rctx, "asyncreq: last read of a long poll", id, err)
	return last, nil
}

// watch watches the record id until stop is called or ctx ends. A Watcher
// releases a watch only when its context ends, so a caller that watches
// again after each change must stop the watch it replaces, or watches
// pile up for as long as ctx lasts.
func watch(ctx context.Context, w Watcher, id string) (changed <-chan struct{}, stop func(), err error) {
	wctx, cancel := context.WithCancel(ctx)
	ch, err := w.Watch(wctx, id)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return ch, cancel, nil
}

// keptHeader returns the request headers KeepHeaders selects, or nil.
func (h *Handler) keptHeader(in http.Header) http.Header {
	if !h.keepAll && len(h.keep) == 0 {
		return nil
	}
	var out http.Header
	for k, vs := range in {
		if _, listed := h.keep[k]; !listed && !(h.keepAll && keptByStar(k, in)) {
			continue
		}
		if out == nil {
			out = make(http.Header)
		}
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// keptByStar reports whether the KeepHeaders entry "*" keeps header k.
//
// Besides the headers this handler interprets and those of the transfer,
// "*" leaves out every header that may carry a credential: Authorization,
// Cookie, and each header whose name, split into parts at '-' and '_',
// has a part that contains auth, bearer, token, secret, signature,
// password, passwd, credential, cookie, session, jwt, csrf, xsrf, hmac or
// key, or is sig, pass, pwd, otp, pin, sid or dpop (case-insensitively):
// X-Api-Key, Api-Key, X-Amz-Security-Token, X-CSRF-Token, X-Auth-User,
// Stripe-Signature, X-Hub-Signature-256, Ocp-Apim-Subscription-Key,
// Cf-Access-Client-Secret, X-Session-Id. Matching parts of names catches
// the vendors' variants of the usual names; a header left out by mistake
// is still kept when it is listed by name.
func keptByStar(k string, in http.Header) bool {
	switch k {
	case "Authorization", "Cookie", "Prefer", "Idempotency-Key", "Content-Length", "Content-Type", "Expect", "Host":
		return false
	}
	if hopByHop[k] || connectionListed(k, in) {
		return false
	}
	// One pass over the name, matching case-insensitively: c|0x20 is c in
	// lower case for an ASCII letter, and no other byte becomes one.
	has := func(i int, frag string) bool {
		if len(k)-i < len(frag) {
			return false
		}
		for j := 0; j < len(frag); j++ {
			if k[i+j]|0x20 != frag[j] {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(k); i++ {
		var secret bool
		switch k[i] | 0x20 {
		case 'a':
			secret = has(i, "auth")
		case 'b':
			secret = has(i, "bearer")
		case 'c':
			secret = has(i, "credential") || has(i, "cookie") || has(i, "csrf")
		case 'h':
			secret = has(i, "hmac")
		case 'j':
			secret = has(i, "jwt")
		case 'k':
			secret = has(i, "key")
		case 'p':
			secret = has(i, "password") || has(i, "passwd")
		case 's':
			secret = has(i, "secret") || has(i, "signature") || has(i, "session")
		case 't':
			secret = has(i, "token")
		case 'x':
			secret = has(i, "xsrf")
		}
		if secret {
			return false
		}
	}
	for rest := k; rest != ""; {
		part := rest
		if i := strings.IndexAny(rest, "-_"); i >= 0 {
			part, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if len(part) != 3 && len(part) != 4 {
			continue
		}
		for _, word := range [...]string{"sig", "pass", "pwd", "otp", "pin", "sid", "dpop"} {
			if strings.EqualFold(part, word) {
				return false
			}
		}
	}
	return true
}

// idempotencyKey returns the request's Idempotency-Key, unquoted if it is
// sent as a structured-field string, and whether it is well-formed.
func idempotencyKey(h http.Header) (string, bool) {
	vs := h.Values("Idempotency-Key")
	switch len(vs) {
	case 0:
		return "", true
	case 1:
	default:
		return "", false
	}
	k := strings.TrimSpace(vs[0])
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
	}
	if k == "" || len(k) > maxIdempotencyKeyLen {
		return "", false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e || k[i] == '"' || k[i] == '\\' {
			return "", false
		}
	}
	return k, true
}

// preferences are the RFC 7240 preferences the handler honours.
type preferences struct {
	wait         time.Duration
	respondAsync bool
}

// parsePrefer reads the Prefer headers. Preferences it does not know and
// values it cannot read are ignored, as RFC 7240 asks; the first of
// repeated preferences counts.
func parsePrefer(h http.Header) preferences {
	var p preferences
	seenWait := false
	for _, v := range h["Prefer"] {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			item, _, _ = strings.Cut(item, ";") // parameters are not used
			name, val, _ := strings.Cut(item, "=")
			name = strings.TrimSpace(name)
			val = strings.Trim(strings.TrimSpace(val), `"`)
			switch {
			case strings.EqualFold(name, "respond-async"):
				p.respondAsync = true
			case strings.EqualFold(name, "wait") && !seenWait:
				seenWait = true
				n, err := strconv.ParseUint(val, 10, 64)
				if err != nil {
					if errors.Is(err, strconv.ErrRange) {
						p.wait = time.Duration(1<<63 - 1)
					}
					continue
				}
				if n > uint64((1<<63-1)/time.Second) {
					p.wait = time.Duration(1<<63 - 1)
				} else {
					p.wait = time.Duration(n) * time.Second
				}
			}
		}
	}
	return p
}

// statusDocument builds the status document of rec.
func (h *Handler) statusDocument(rec *Record, st *reqState) *StatusDocument {
	doc := &StatusDocument{
		ID:        rec.ID,
		Status:    rec.State,
		CreatedAt: rec.CreatedAt.UTC(),
		UpdatedAt: rec.UpdatedAt.UTC(),
		Attempts:  rec.Attempts,
		Progress:  rec.Progress,
		StatusURL: st.statusURL(rec.ID),
	}
	if !rec.ExpiresAt.IsZero() {
		doc.ExpiresAt = rec.ExpiresAt.UTC()
	}
	switch rec.State {
	case StateSucceeded:
		doc.ResultURL = st.resultURL(rec.ID)
	case StateFailed, StateCanceled:
		doc.Error = servedProblem(failureProblem(rec), http.StatusInternalServerError)
	}
	return doc
}

// writeDocument answers with a status document as application/json.
func (h *Handler) writeDocument(w http.ResponseWriter, r *http.Request, code int, doc *StatusDocument) {
	b, err := appendStatusDocument(make([]byte, 0, 384), doc)
	if err != nil {
		h.log.LogAttrs(r.Context(), slog.LevelError, "asyncreq: encoding a status document",
			slog.String("id", doc.ID), slog.Any("err", err))
		sendError(w, r, http.StatusInternalServerError, "the status document could not be encoded")
		return
	}
	b = append(b, '\n')
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// appendStatusDocument appends the JSON encoding of d to b: the bytes
// encoding/json would write, without its reflection on the hot paths.
func appendStatusDocument(b []byte, d *StatusDocument) ([]byte, error) {
	for _, t := range []time.Time{d.CreatedAt, d.UpdatedAt, d.ExpiresAt} {
		if y := t.Year(); y < 0 || y > 9999 {
			return nil, fmt.Errorf("asyncreq: time %v cannot be encoded in JSON", t)
		}
	}
	b = append(b, `{"id":`...)
	b = appendJSONString(b, d.ID)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(d.Status))
	b = append(b, `,"created_at":"`...)
	b = d.CreatedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","updated_at":"`...)
	b = d.UpdatedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","attempts":`...)
	b = strconv.AppendInt(b, int64(d.Attempts), 10)
	if d.Progress != nil {
		b = append(b, `,"progress":{"percent":`...)
		b = strconv.AppendInt(b, int64(d.Progress.Percent), 10)
		if d.Progress.Message != "" {
			b = append(b, `,"message":`...)
			b = appendJSONString(b, d.Progress.Message)
		}
		b = append(b, '}')
	}
	b = append(b, `,"status_url":`...)
	b = appendJSONString(b, d.StatusURL)
	if d.ResultURL != "" {
		b = append(b, `,"result_url":`...)
		b = appendJSONString(b, d.ResultURL)
	}
	if d.Error != nil {
		e, err := json.Marshal(d.Error)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"error":`...)
		b = append(b, e...)
	}
	if !d.ExpiresAt.IsZero() {
		b = append(b, `,"expires_at":"`...)
		b = d.ExpiresAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML-safe, invalid UTF-8 replaced).
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// validToken reports whether s is an RFC 9110 token, as header names are.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
