package asyncreq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// This file is submitting from Go: a service starts an asynchronous
// request from its own code, through the same accept path as a POST to
// the Handler (submit.go), and gets the URLs its clients poll.

// Submission is a request submitted from Go with Handler.Submit: what a
// POST to the Handler would carry, and the owner and idempotency key that
// HandlerOptions.Owner and the Idempotency-Key header would give it.
type Submission struct {
	// Method is the request's method, handed to the Processor (and to a
	// handler wrapped by HandlerProcessor). The default is POST.
	Method string
	// URL is the path and query the request is recorded as submitted to,
	// which HandlerProcessor replays. It must start with "/". The default
	// is the Handler's BasePath, or "/" without one: the URL of a POST to
	// the Handler.
	URL string
	// Header holds the request's headers. Only those HandlerOptions.KeepHeaders
	// keeps are recorded, as for a POST; all of them are seen by
	// HandlerOptions.Validate.
	Header http.Header
	// ContentType is the body's media type.
	ContentType string
	// Body is the request body. It must not be larger than
	// HandlerOptions.MaxBodyBytes. The record keeps its own copy.
	Body []byte
	// Owner is the request's owner: only requests with the same owner see
	// it over HTTP (see HandlerOptions.Owner), and idempotency keys are
	// scoped to it. The default is "", the owner of every request when
	// HandlerOptions.Owner is nil.
	Owner string
	// IdempotencyKey, if set, makes a repeat of this submission return the
	// request the first one made instead of starting another, as the
	// Idempotency-Key header does: at most 255 printable ASCII characters,
	// without '"' or '\'. A repeat of another request under the same key
	// is ErrIdempotencyMismatch. The default is "": every submission is a
	// new request.
	IdempotencyKey string
}

// Submitted is the answer to a submission: the request's id and the URLs
// its clients poll.
type Submitted struct {
	// ID is the request's id.
	ID string
	// StatusURL and ResultURL are the request's status and result URLs,
	// as the Handler writes them for a request that reaches it at its
	// BasePath: with a BasePath, absolute paths; without one, paths
	// relative to where the Handler is mounted (prefix them with the
	// mount prefix given to http.StripPrefix).
	StatusURL string
	ResultURL string
	// State is the request's state when Submit returned: pending for a new
	// request; for a repeat, where the first one stands.
	State State
	// Repeated reports that the submission repeated an earlier one with
	// the same owner and idempotency key, and ID is that request's.
	Repeated bool
}

// AcceptFunc records and enqueues a record in one step, with the
// semantics of Accepter.Accept: a record already holding the owner's
// idempotency key is returned with ErrDuplicate. An Accepter's Accept
// method is one; a closure over a backend's transactional accept (such as
// the postgres backend's AcceptTx) is another.
type AcceptFunc func(ctx context.Context, rec *Record) (*Record, error)

// Errors of a submission, which an HTTP submit answers with the status
// named.
var (
	// ErrIdempotencyMismatch is the answer to a submission whose
	// idempotency key was already used by the same owner for a different
	// request (method, URL, Content-Type, kept headers or body): 422.
	ErrIdempotencyMismatch = errors.New("asyncreq: the idempotency key was already used with a different request")
	// ErrStillAccepting is the answer to a repeat of a submission that is
	// not yet known to be queued (the first one is being accepted, or was
	// interrupted and the Worker's sweep will queue it); try again later:
	// 409 with Retry-After.
	ErrStillAccepting = errors.New("asyncreq: a request with this idempotency key is still being accepted")
	// ErrRejected wraps the error with which HandlerOptions.Validate
	// refused a submission (a *Problem in its chain is what a POST would
	// have answered): 422.
	ErrRejected = errors.New("asyncreq: the submission was rejected")
)

// Submit starts an asynchronous request from Go, as a POST to h would:
// the submission is checked (MaxBodyBytes, Validate), made a record with
// the same fields and fingerprint, and recorded and enqueued in the
// Handler's Backend durably before Submit returns (by a Pair, a record
// whose enqueue failed is deleted again). A Worker over the same backend processes it, and the
// Handler serves it at the returned StatusURL.
//
// Submit tells HandlerOptions.Hooks what a POST would: Accepted (with
// Replay for a repeated idempotency key) or Rejected, with the status and
// reason a POST of the submission would have been answered with, all
// called with ctx. The trace context kept with the request is the one a
// POST would keep (see NewRecord).
//
// Submit returns ErrIdempotencyMismatch or ErrStillAccepting for an
// idempotency key that a POST would answer 422 or 409, an error wrapping
// ErrRejected when Validate refused the submission, an
// *http.MaxBytesError for a body larger than MaxBodyBytes, and the backend's
// error, wrapped, when the request could not be stored.
func (h *Handler) Submit(ctx context.Context, s Submission) (Submitted, error) {
	return h.SubmitVia(ctx, s, nil)
}

// SubmitVia is Submit recording and enqueueing the request with accept
// instead of the Handler's Backend; a nil accept is Submit. It
// lets a request be started inside the caller's database transaction,
// with the postgres backend's AcceptTx for example:
//
//	sub, err := h.SubmitVia(ctx, s, func(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
//		return backend.AcceptTx(ctx, tx, rec)
//	})
//
// The request then exists once the transaction commits, and a repeat of
// its idempotency key is resolved as Submit resolves it. The Accepted
// hook is called once accept returned, before the transaction commits:
// a transaction rolled back later is still counted as accepted.
func (h *Handler) SubmitVia(ctx context.Context, s Submission, accept AcceptFunc) (Submitted, error) {
	start := h.acceptStart(ctx)
	rec, err := h.NewRecord(ctx, s)
	if err != nil {
		h.submissionRejected(ctx, err, http.StatusBadRequest, "bad_request")
		return Submitted{}, err
	}
	got, err := h.acceptRecord(ctx, rec, accept)
	if err != nil {
		h.submissionRejected(ctx, err, http.StatusServiceUnavailable, "unavailable")
		return Submitted{}, err
	}
	h.acceptedEvent(ctx, got, got.ID != rec.ID, start)
	return Submitted{
		ID:        got.ID,
		StatusURL: h.opts.BasePath + "/" + got.ID + "/status",
		ResultURL: h.opts.BasePath + "/" + got.ID,
		State:     got.State,
		Repeated:  got.ID != rec.ID,
	}, nil
}

// NewRecord checks s as Submit does and returns the pending record a
// submit of it would store: a new id (see NewID), the kept headers, the
// Handler's Retention and TombstoneTTL, and the fingerprint a repeat must
// match. It is for recording the request by hand, with an Accepter or a
// transactional accept; SubmitVia does that and also resolves a repeated
// idempotency key. It returns Submit's errors for a submission Submit
// would refuse before storing anything.
//
// The record keeps the trace context a POST's record keeps, whatever
// KeepHeaders says: the traceparent and tracestate of s.Header, then
// what the TraceContext hook writes, called with ctx (a tracer keeps the
// span ctx carries). NewRecord calls no other hook: a caller that records
// the request itself tells no Accepted or Rejected hook.
func (h *Handler) NewRecord(ctx context.Context, s Submission) (*Record, error) {
	method := s.Method
	if method == "" {
		method = http.MethodPost
	}
	if !validToken(method) {
		return nil, fmt.Errorf("asyncreq: Submission.Method %q is not a method", s.Method)
	}
	uri := s.URL
	if uri == "" {
		uri = h.opts.BasePath
		if uri == "" {
			uri = "/"
		}
	}
	if u, err := url.ParseRequestURI(uri); err != nil || uri[0] != '/' || u.Host != "" {
		return nil, fmt.Errorf("asyncreq: Submission.URL %q is not a path and query", s.URL)
	}
	var key string
	if s.IdempotencyKey != "" {
		var ok bool
		key, ok = idempotencyKey(http.Header{"Idempotency-Key": {s.IdempotencyKey}})
		if !ok || key != s.IdempotencyKey {
			return nil, fmt.Errorf("asyncreq: Submission.IdempotencyKey must be at most %d printable characters without '\"' or '\\'", maxIdempotencyKeyLen)
		}
	}
	if int64(len(s.Body)) > h.opts.MaxBodyBytes {
		return nil, &http.MaxBytesError{Limit: h.opts.MaxBodyBytes}
	}
	var body []byte
	if len(s.Body) > 0 {
		body = bytes.Clone(s.Body)
	}
	header := s.Header.Clone()
	if header == nil {
		header = make(http.Header)
	}
	if s.ContentType != "" {
		header.Set("Content-Type", s.ContentType)
	} else {
		header.Del("Content-Type")
	}
	if h.opts.Validate != nil {
		r, err := http.NewRequestWithContext(ctx, method, uri, bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("asyncreq: Submission: %w", err)
		}
		r.Header = header.Clone()
		r.RequestURI = uri
		if err := h.opts.Validate(r, body); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRejected, err)
		}
	}
	rec := h.newRecord(s.Owner, key, method, uri, header, s.ContentType, body)
	setFingerprint(rec)
	// Not part of the fingerprint: kept whatever KeepHeaders says.
	rec.Header = h.keepTraceContext(ctx, header, rec.Header)
	return rec, nil
}
