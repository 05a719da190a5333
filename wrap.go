package asyncreq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// HandlerProcessor returns a Processor that runs next on the recorded
// request and records its full response (status, headers, body) as the
// Result, which the Handler then serves at the result URL as if the call
// had been synchronous.
//
// next sees a server-side request rebuilt from the record: the method, the
// path and query the request was submitted to, the headers the Handler
// kept (see HandlerOptions.KeepHeaders), the Content-Type and the body, and
// a context that is canceled when the request is canceled, times out or
// the worker stops. The context carries the request's owner, which
// OwnerFromContext returns, so next knows its caller without the
// credentials, which are not kept by default. It may call ReportProgress
// with r.Context() to show progress on the status document.
//
// next writes to an in-memory http.ResponseWriter with the semantics of
// net/http's: WriteHeader takes effect once and snapshots the header map
// (later changes are ignored, except declared trailers), the first Write
// without WriteHeader sends 200, 1xx informational answers are skipped, a
// missing Content-Type is sniffed from the first bytes written, bodies are
// refused for statuses that allow none, and writing past a declared
// Content-Length fails with http.ErrContentLength. It implements
// http.Flusher (Flush commits the header, as on a connection). Hop-by-hop
// headers are not recorded. The body is buffered up to the Worker's
// MaxResultBytes (10 MiB outside a Worker): the Write that would pass it
// fails with ErrResultTooLarge, nothing more is kept, and the request fails
// for good with a 500 problem that says the result was too large.
//
// Whatever status next answers with, including a 4xx or 5xx, is the
// request's result: the request succeeds and the result URL replays that
// answer. When the context ends before next returns, the Processor returns
// the context's error, and the Worker decides by its cause. A WriteHeader
// with an invalid status code is a permanent failure (500), as it would be
// a panic in net/http; a panic in next is left to the Worker, which counts
// it as a failed attempt.
//
// Set-Cookie is not recorded: a cookie is a credential, and the Handler
// does not replay it by default (HandlerOptions.ReplaySetCookie), so
// keeping it would only store a secret. NewAsync records it when its
// Handler options set ReplaySetCookie.
func HandlerProcessor(next http.Handler) Processor { return handlerProcessor(next, false) }

// handlerProcessor is HandlerProcessor, recording Set-Cookie only if
// keepSetCookie.
func handlerProcessor(next http.Handler, keepSetCookie bool) Processor {
	return ProcessorFunc(func(ctx context.Context, req *Request) (*Result, error) {
		ctx = withOwner(ctx, req.Owner)
		r, err := replayRequest(ctx, req)
		if err != nil {
			return nil, unreplayable(err)
		}
		limit := resultLimit(ctx)
		rw := newRecorder(req.Method, limit)
		next.ServeHTTP(rw, r)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		switch {
		case errors.Is(rw.err, ErrResultTooLarge):
			return nil, resultTooLarge(limit)
		case rw.err != nil:
			return nil, unreplayable(rw.err)
		}
		res := rw.result()
		if !keepSetCookie {
			res.Header.Del("Set-Cookie")
			if len(res.Header) == 0 {
				res.Header = nil
			}
		}
		if resultSize(res) > limit {
			return nil, resultTooLarge(limit)
		}
		return res, nil
	})
}

// unreplayable returns the permanent failure of a request whose handler
// cannot be run or whose answer cannot be replayed. Its problem document
// (what the client sees) says only that; err, which it wraps, is for the
// Worker's log.
func unreplayable(err error) error {
	return Permanent(&problemError{problem: failedProblem("the handler's response cannot be replayed"), err: err}, http.StatusInternalServerError)
}

// replayRequest rebuilds the server-side request that req recorded.
func replayRequest(ctx context.Context, req *Request) (*http.Request, error) {
	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	target := req.URL
	if target == "" {
		target = "/"
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, fmt.Errorf("asyncreq: recorded request URL %q: %w", target, err)
	}
	h := req.Header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	if req.ContentType != "" {
		h.Set("Content-Type", req.ContentType)
	}
	body := req.Body
	r := &http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          http.NoBody,
		ContentLength: int64(len(body)),
		Host:          u.Host,
		RequestURI:    target,
	}
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return r.WithContext(ctx), nil
}

// recorder is the in-memory http.ResponseWriter HandlerProcessor gives the
// wrapped handler.
type recorder struct {
	head      bool        // the request is a HEAD: the body is discarded
	header    http.Header // the handler's header map
	sent      http.Header // the snapshot taken at WriteHeader
	status    int
	committed bool // the header is final (Content-Type sniffed)
	declared  int64
	limit     int64 // the largest body kept (MaxResultBytes)
	body      bytes.Buffer
	err       error
}

func newRecorder(method string, limit int64) *recorder {
	return &recorder{head: method == http.MethodHead, header: make(http.Header), declared: -1, limit: limit}
}

// Header implements http.ResponseWriter.
func (rw *recorder) Header() http.Header { return rw.header }

// WriteHeader implements http.ResponseWriter.
func (rw *recorder) WriteHeader(code int) {
	if rw.status != 0 || rw.err != nil {
		return // superfluous, as net/http ignores it
	}
	if code < 100 || code > 999 {
		rw.err = fmt.Errorf("asyncreq: handler wrote invalid status code %d", code)
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		return // informational answers are not part of the result
	}
	if code == http.StatusSwitchingProtocols {
		rw.err = errors.New("asyncreq: handler switched protocols, which cannot be replayed")
		return
	}
	rw.status = code
	rw.sent = rw.header.Clone()
	if cl := rw.sent.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(cl), 10, 64); err == nil && n >= 0 {
			rw.declared = n
		}
	}
}

// Write implements http.ResponseWriter.
func (rw *recorder) Write(p []byte) (int, error) {
	if rw.err != nil {
		return 0, rw.err
	}
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(rw.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if rw.head {
		return len(p), nil
	}
	if rw.declared >= 0 && int64(rw.body.Len())+int64(len(p)) > rw.declared {
		return 0, http.ErrContentLength
	}
	if int64(rw.body.Len())+int64(len(p)) > rw.limit {
		// The request fails; what was buffered is of no more use.
		rw.err = fmt.Errorf("%w: the response body passed %d bytes", ErrResultTooLarge, rw.limit)
		rw.body = bytes.Buffer{}
		return 0, rw.err
	}
	return rw.body.Write(p)
}

// Flush implements http.Flusher: it commits the header, as a flush to a
// connection would.
func (rw *recorder) Flush() {
	if rw.err != nil {
		return
	}
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	rw.commit()
}

// commit makes the header final, sniffing a missing Content-Type from what
// was written so far, as net/http does.
func (rw *recorder) commit() {
	if rw.committed || rw.status == 0 {
		return
	}
	rw.committed = true
	_, haveType := rw.sent["Content-Type"]
	if !haveType && rw.sent.Get("Content-Encoding") == "" && rw.sent.Get("Transfer-Encoding") == "" &&
		bodyAllowed(rw.status) && rw.body.Len() > 0 {
		rw.sent.Set("Content-Type", http.DetectContentType(rw.body.Bytes()))
	}
}

// result returns the recorded response as a Result.
func (rw *recorder) result() *Result {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK) // net/http answers 200 to a handler that wrote nothing
	}
	rw.commit()
	h := make(http.Header, len(rw.sent))
	for k, vs := range rw.sent {
		if hopByHop[k] || connectionListed(k, rw.sent) {
			continue
		}
		switch k {
		case "Content-Type":
			if len(vs) == 0 {
				h[k] = nil // no type, and none to be sniffed when served
			}
			continue
		case "Content-Length", "Date":
			continue
		}
		h[k] = vs
	}
	// Trailers: those declared before WriteHeader and set afterwards, and
	// those set with the http.TrailerPrefix, become headers of the result.
	for _, v := range rw.sent["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if vs, ok := rw.header[k]; ok && k != "" && !hopByHop[k] {
				h[k] = vs
			}
		}
	}
	for k, vs := range rw.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && name != "" {
			name = http.CanonicalHeaderKey(name)
			if !hopByHop[name] {
				h[name] = vs
			}
		}
	}
	if len(h) == 0 {
		h = nil
	}
	res := &Result{
		StatusCode:  rw.status,
		ContentType: rw.sent.Get("Content-Type"),
		Header:      h,
	}
	if rw.body.Len() > 0 {
		res.Body = rw.body.Bytes()
	}
	return res
}

// Async makes an http.Handler asynchronous: it is the Endpoint whose
// Processor is the wrapped handler, run through HandlerProcessor. It
// serves the HTTP contract (see Handler) and owns the Worker; start it
// before serving and stop it at shutdown.
type Async = Endpoint

// AsyncOptions configures an Async. A nil *AsyncOptions means all
// defaults.
type AsyncOptions struct {
	// Handler configures the HTTP side. Its KeepHeaders, when nil, is
	// []string{"*"}: the wrapped handler sees every end-to-end request
	// header except those that may carry credentials, which are not stored
	// unless listed by name. "*" leaves out Authorization,
	// Proxy-Authorization, Cookie, and every header whose name, split into
	// parts at '-' and '_', has a part that contains auth, bearer, token,
	// secret, signature, password, passwd, credential, cookie, session,
	// jwt, csrf, xsrf, hmac or key, or is sig, pass, pwd, otp, pin, sid or
	// dpop, in any case: X-Api-Key, Api-Key, X-Auth-Token,
	// X-Amz-Security-Token, X-CSRF-Token, X-XSRF-Token, Stripe-Signature,
	// Ocp-Apim-Subscription-Key, Cf-Access-Client-Secret, X-Session-Id.
	// (It also leaves out the headers the Handler interprets and those of
	// the transfer; see HandlerOptions.KeepHeaders.)
	//
	// The default is this deny-list rather than a short allow-list because
	// the wrapped handler is meant to run as if it had been called
	// synchronously: an allow-list would silently drop the application's
	// own headers (a tenant, a locale, a trace id), and users would widen
	// it to everything, credentials included. Credential headers follow
	// naming conventions that matching parts of names catches, new vendor
	// names included; one named unlike any of them would still be kept,
	// so an application with such a header lists the headers it wants
	// instead. The handler needs no credential to know its caller:
	// OwnerFromContext returns the owner HandlerOptions.Owner found.
	//
	// Set it to a non-nil empty slice to keep none, to a list of names to
	// keep only those, or list "Authorization" (or any other credential)
	// next to "*" when the wrapped handler needs it and the Store may hold
	// it. The default is HandlerOptions's defaults with KeepHeaders
	// []string{"*"}.
	Handler HandlerOptions
	// Worker configures the Worker that runs the wrapped handler; its
	// MaxResultBytes bounds the response buffered and stored. The default
	// is WorkerOptions's defaults.
	Worker WorkerOptions
}

// NewAsync returns an Async that accepts requests for next into b, and
// runs next on them in its Worker. A nil opts means all defaults. It
// returns an error naming the field when an option is invalid.
func NewAsync(next http.Handler, b Backend, opts *AsyncOptions) (*Async, error) {
	if next == nil {
		return nil, errors.New("asyncreq: NewAsync: nil http.Handler")
	}
	var o AsyncOptions
	if opts != nil {
		o = *opts
	}
	if o.Handler.KeepHeaders == nil {
		o.Handler.KeepHeaders = []string{"*"}
	}
	return NewEndpoint(b, handlerProcessor(next, o.Handler.ReplaySetCookie), &EndpointOptions{Handler: o.Handler, Worker: o.Worker})
}

// ownerKey is the context key under which HandlerProcessor puts the
// owner of the request it replays.
type ownerKey struct{}

// withOwner returns a context carrying owner for OwnerFromContext; an
// empty owner is none.
func withOwner(ctx context.Context, owner string) context.Context {
	if owner == "" {
		return ctx
	}
	return context.WithValue(ctx, ownerKey{}, owner)
}

// OwnerFromContext returns the owner of the request a handler wrapped by
// HandlerProcessor (or NewAsync) is running for: what HandlerOptions.Owner
// returned when the request was submitted. So the handler knows its caller
// without the credential that proved it, which is not stored by default
// (see AsyncOptions). ok is false outside such a handler, and for a
// request that has no owner (no Owner function, or it returned "").
func OwnerFromContext(ctx context.Context) (owner string, ok bool) {
	owner, ok = ctx.Value(ownerKey{}).(string)
	return owner, ok
}
