package asyncreq

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// This file is the submit route (POST): reading the body, recording and
// enqueueing the request, and the Idempotency-Key rules that make a
// repeated submit the same request.

// serveSubmit serves POST /: record and enqueue a request.
func (h *Handler) serveSubmit(w http.ResponseWriter, r *http.Request, st *reqState) {
	start := h.acceptStart(r.Context())
	w.Header().Add("Vary", "Prefer")
	owner, ok := h.owner(w, r, st)
	if !ok {
		h.rejected(r.Context(), http.StatusUnauthorized, "unauthorized")
		return
	}
	key, ok := idempotencyKey(r.Header)
	if !ok {
		h.rejected(r.Context(), http.StatusBadRequest, "bad_request")
		sendError(w, r, http.StatusBadRequest, "the Idempotency-Key header must be one non-empty key of at most 255 printable characters")
		return
	}
	body, status := h.readBody(w, r)
	if status != 0 {
		if status == http.StatusRequestEntityTooLarge {
			h.rejected(r.Context(), status, "too_large")
			sendError(w, r, status, "the request body is larger than "+strconv.FormatInt(h.opts.MaxBodyBytes, 10)+" bytes")
		} else {
			h.rejected(r.Context(), status, "bad_request")
			sendError(w, r, status, "the request body could not be read")
		}
		return
	}
	if h.opts.Validate != nil {
		if err := h.opts.Validate(st.orig, body); err != nil {
			h.rejected(r.Context(), http.StatusUnprocessableEntity, "invalid")
			var p *Problem
			if errors.As(err, &p) && p != nil {
				sendProblem(w, r, p, http.StatusUnprocessableEntity)
			} else {
				sendError(w, r, http.StatusUnprocessableEntity, err.Error())
			}
			return
		}
	}

	rec := h.newRecord(owner, key, r.Method, st.orig.URL.RequestURI(), r.Header, r.Header.Get("Content-Type"), body)
	callback, err := h.callbackURL(r)
	if err != nil {
		h.rejected(r.Context(), http.StatusBadRequest, "bad_request")
		sendError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if callback != "" {
		rec.Callback = &Callback{URL: callback, StatusURL: st.statusURL(rec.ID), ResultURL: st.resultURL(rec.ID)}
	}
	setFingerprint(rec)
	// Not part of the fingerprint: kept whatever KeepHeaders says.
	rec.Header = h.keepTraceContext(r.Context(), r.Header, rec.Header)
	prefs := parsePrefer(r.Header)
	id := rec.ID
	rec, ok = h.accept(w, r, rec)
	if !ok {
		return
	}
	h.acceptedEvent(r.Context(), rec, rec.ID != id, start)

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
		doc := statusDocument(rec, st)
		w.Header().Set("Location", doc.StatusURL)
		h.writeDocument(w, r, http.StatusSeeOther, &doc)
		return
	}
	if prefs.respondAsync {
		w.Header().Set("Preference-Applied", "respond-async")
	}
	doc := statusDocument(rec, st)
	w.Header().Set("Location", doc.StatusURL)
	w.Header().Set("Retry-After", h.retryAfter)
	h.writeDocument(w, r, http.StatusAccepted, &doc)
}

// newRecord returns the pending record of a submitted request, as an HTTP
// submit and Handler.Submit make it: a new id, the headers KeepHeaders
// keeps of header, the options' Retention and TombstoneTTL. The caller
// completes it, then calls setFingerprint.
func (h *Handler) newRecord(owner, key, method, uri string, header http.Header, contentType string, body []byte) *Record {
	now := h.now().UTC()
	return &Record{
		ID:             NewID(),
		Owner:          owner,
		IdempotencyKey: key,
		State:          StatePending,
		Method:         method,
		URL:            uri,
		Header:         h.keeper.pick(header),
		ContentType:    contentType,
		Body:           body,
		CreatedAt:      now,
		UpdatedAt:      now,
		Retention:      h.opts.Retention,
		TombstoneTTL:   h.opts.TombstoneTTL,
	}
}

// setFingerprint sets a complete record's BodyHash to the fingerprint a
// repeat of its Idempotency-Key must match. Without a key nothing is ever
// compared with it, and it is left empty.
func setFingerprint(rec *Record) {
	if rec.IdempotencyKey != "" {
		rec.BodyHash = fingerprint(rec)
	}
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
	got, err := h.acceptRecord(r.Context(), rec, nil)
	switch {
	case err == nil:
		return got, true
	case errors.Is(err, ErrIdempotencyMismatch):
		h.rejected(r.Context(), http.StatusUnprocessableEntity, "invalid")
		sendError(w, r, http.StatusUnprocessableEntity, "the Idempotency-Key was already used with a different request "+
			"(method, path and query, Content-Type, headers or body)")
	case errors.Is(err, ErrStillAccepting):
		h.rejected(r.Context(), http.StatusConflict, "conflict")
		w.Header().Set("Retry-After", h.retryAfter)
		sendError(w, r, http.StatusConflict, "a request with this Idempotency-Key is still being accepted; retry later")
	default:
		h.logBackend(r.Context(), "asyncreq: accepting a request", rec.ID, err)
		h.rejected(r.Context(), http.StatusServiceUnavailable, "unavailable")
		h.unavailable(w, r)
	}
	return nil, false
}

// acceptRecord records and enqueues rec, durably before it returns, or
// finds the request an earlier submit with the same owner and idempotency
// key made and returns that record. It is the one accept path of an HTTP
// submit and of Handler.Submit. via, when not nil, records and enqueues
// rec in one step instead of the Handler's Backend. A
// repeat of another request is ErrIdempotencyMismatch; a repeat of one not
// yet known to be queued is ErrStillAccepting; a record created whose
// enqueue failed is deleted again.
func (h *Handler) acceptRecord(ctx context.Context, rec *Record, via AcceptFunc) (*Record, error) {
	var existing *Record
	var err error
	if via != nil {
		rec.Enqueued = true
		existing, err = via(ctx, rec)
	} else {
		existing, err = h.put(ctx, rec)
	}
	switch {
	case err == nil:
		return rec, nil
	case errors.Is(err, ErrDuplicate) && existing != nil:
		switch {
		case !sameRequest(existing, rec):
			return nil, ErrIdempotencyMismatch
		case existing.needsEnqueue():
			// Not known to be queued yet: the first submit is still
			// between Store and Queue (or was interrupted there, and the
			// worker's sweep will enqueue it).
			return nil, ErrStillAccepting
		}
		return existing, nil
	default:
		return nil, err
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
	if rec.Callback != nil {
		// Last and only when present, so that the fingerprints of
		// requests without a callback stay what they were.
		field(rec.Callback.URL)
	}
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
