package asyncreq

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
)

// This file is what every route of the Handler shares about the request
// it serves: where the Handler is mounted (the URLs it writes), who asks
// (the Owner function), which record the path names and whether the
// caller may see it, and the answers for backend failures.

// reqState is what ServeHTTP hands to the routes: the request as it
// arrived (with the caller's path values, for Owner and Validate), the
// base path that URLs are built from, and the id the path names.
type reqState struct {
	orig  *http.Request
	base  string
	id    string // the path's {id}; "" for a submit
	owner string // the caller's owner, once Owner has run
}

func (st *reqState) statusURL(id string) string { return st.base + "/" + id + "/status" }

func (st *reqState) resultURL(id string) string { return st.base + "/" + id }

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

// lookup reads the record the path names and checks its owner. When it
// fails, lookup has answered and returns false.
func (h *Handler) lookup(w http.ResponseWriter, r *http.Request, st *reqState) (*Record, bool) {
	owner, ok := h.owner(w, r, st)
	if !ok {
		return nil, false
	}
	id := st.id
	if !ValidID(id) {
		sendError(w, r, http.StatusNotFound, "no request with this id")
		return nil, false
	}
	rec, err := checkRecord(h.store.Get(r.Context(), id))
	if err != nil {
		h.storeError(w, r, st, err)
		return nil, false
	}
	if !rec.visibleTo(owner) {
		sendError(w, r, http.StatusNotFound, "no request with this id")
		return nil, false
	}
	return rec, true
}

// storeError answers for an error from the Store: 404, 410, or 503.
func (h *Handler) storeError(w http.ResponseWriter, r *http.Request, st *reqState, err error) {
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrGone) && !goneTo(err, st.owner, h.opts.Owner != nil):
		sendError(w, r, http.StatusNotFound, "no request with this id")
	case errors.Is(err, ErrGone):
		sendError(w, r, http.StatusGone, "the request was deleted or has expired")
	default:
		h.logBackend(r.Context(), "asyncreq: store", st.id, err)
		h.unavailable(w, r)
	}
}

// unavailable answers 503 with Retry-After.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", h.retryAfter)
	sendError(w, r, http.StatusServiceUnavailable, "the service cannot handle the request right now; retry later")
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
