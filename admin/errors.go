package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/asyncreq/asyncreq"
)

// This file maps the errors of the operator API onto HTTP statuses, and
// holds the per-request value every page and redirect needs: the path the
// Handler is mounted at.

// statusOf returns the HTTP status an operation's error answers with, and
// the detail shown with it. A backend failure is logged and shown without
// its text, which may name hosts or credentials.
func (h *Handler) statusOf(r *http.Request, err error) (int, string) {
	switch {
	case errors.Is(err, asyncreq.ErrBadCursor):
		return http.StatusBadRequest, "the cursor was not made by this listing"
	case errors.Is(err, asyncreq.ErrNotFound):
		return http.StatusNotFound, "no such request"
	case errors.Is(err, asyncreq.ErrGone):
		return http.StatusGone, "the request was deleted or purged"
	case errors.Is(err, asyncreq.ErrNotRetryable):
		return http.StatusConflict, "only a failed or canceled request can be retried"
	case errors.Is(err, asyncreq.ErrFinished):
		return http.StatusConflict, "the request is already finished"
	case errors.Is(err, asyncreq.ErrNotSupported):
		// The error names the Store's type and the capability it lacks.
		return http.StatusNotImplemented, err.Error()
	case r.Context().Err() != nil:
		return http.StatusServiceUnavailable, "the request ended before the backend answered"
	}
	h.opts.Logger.LogAttrs(r.Context(), slog.LevelError, "admin: backend failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	return http.StatusInternalServerError, "the backend failed; the error is logged"
}

// logRead logs a failed read of a queue's figures.
func (h *Handler) logRead(ctx context.Context, q *queue, what string, err error) {
	h.opts.Logger.LogAttrs(ctx, slog.LevelError, "admin: reading a queue failed",
		slog.String("queue", q.name), slog.String("what", what), slog.Any("err", err))
}

// problem answers with an RFC 9457 problem document.
func (h *Handler) problem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	(&asyncreq.Problem{Status: status, Detail: detail}).ServeHTTP(w, r)
}

// apiError answers an operation's error as a problem document.
func (h *Handler) apiError(w http.ResponseWriter, r *http.Request, err error) {
	status, detail := h.statusOf(r, err)
	h.problem(w, r, status, detail)
}

// notSupported is the error of an operation a queue's backend lacks the
// capability for; it names the capability, as asyncreq's own do.
func notSupported(q *queue, capability string) error {
	return &notSupportedError{queue: q.name, capability: capability}
}

type notSupportedError struct{ queue, capability string }

func (e *notSupportedError) Error() string {
	return "the backend of queue " + e.queue + " is no " + e.capability
}

func (e *notSupportedError) Unwrap() error { return asyncreq.ErrNotSupported }

// baseKey is the context key of the mount base.
type baseKey struct{}

// withBase returns ctx carrying the path the Handler is mounted at.
func withBase(ctx context.Context, base string) context.Context {
	return context.WithValue(ctx, baseKey{}, base)
}

// baseOf returns the path the Handler serving r is mounted at, "" at the
// root; links and redirects start with it.
func baseOf(r *http.Request) string {
	b, _ := r.Context().Value(baseKey{}).(string)
	return b
}

// answers is how a family of routes answers a request it cannot serve:
// the API with problem documents, the pages with an error page.
type answers struct {
	status func(w http.ResponseWriter, r *http.Request, status int, detail string)
	err    func(w http.ResponseWriter, r *http.Request, err error)
}

func (h *Handler) apiAnswers() answers  { return answers{status: h.problem, err: h.apiError} }
func (h *Handler) pageAnswers() answers { return answers{status: h.errorPage, err: h.pageError} }

// listed reads the page of requests that r asks for; when it cannot, it
// answers r with a and reports false.
func (h *Handler) listed(w http.ResponseWriter, r *http.Request, a answers) (*queue, asyncreq.ListQuery, ListDocument, bool) {
	q, ok := h.queueOf(w, r, a.status)
	if !ok {
		return nil, asyncreq.ListQuery{}, ListDocument{}, false
	}
	lq, err := listQuery(r)
	if err != nil {
		a.status(w, r, http.StatusBadRequest, err.Error())
		return nil, asyncreq.ListQuery{}, ListDocument{}, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	doc, err := h.list(ctx, q, lq)
	if err != nil {
		a.err(w, r, err)
		return nil, asyncreq.ListQuery{}, ListDocument{}, false
	}
	return q, lq, doc, true
}

// found reads the request that r names; when it cannot, it answers r with
// a and reports false.
func (h *Handler) found(w http.ResponseWriter, r *http.Request, a answers) (*queue, *asyncreq.Record, bool) {
	q, ok := h.queueOf(w, r, a.status)
	if !ok {
		return nil, nil, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	rec, err := h.get(ctx, q, r.PathValue("id"))
	if err != nil {
		a.err(w, r, err)
		return nil, nil, false
	}
	return q, rec, true
}
