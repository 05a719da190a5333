package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/asyncreq/asyncreq"
)

// This file is the JSON API under {base}/api/. The pages' forms do the
// same operations through the functions here, and answer with redirects
// instead of documents.

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: the documents are plain values
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// apiNotFound answers a path or method the API does not serve.
func (h *Handler) apiNotFound(w http.ResponseWriter, r *http.Request) {
	h.problem(w, r, http.StatusNotFound, "no such API route")
}

// apiMethodNotAllowed answers a method an API route does not serve.
func (h *Handler) apiMethodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		h.problem(w, r, http.StatusMethodNotAllowed, "the method "+strconv.Quote(r.Method)+" is not allowed here; allowed: "+allow)
	}
}

// QueuesDocument is the answer of GET {base}/api/queues.
type QueuesDocument struct {
	Queues []Queue `json:"queues"`
}

// readTimeout bounds the reads of one page or API answer.
const readTimeout = 10 * time.Second

func (h *Handler) apiQueues(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	doc := QueuesDocument{Queues: make([]Queue, 0, len(h.queues))}
	for _, q := range h.queues {
		doc.Queues = append(doc.Queues, h.queueView(ctx, q))
	}
	writeJSON(w, http.StatusOK, doc)
}

// ListDocument is the answer of GET {base}/api/requests.
type ListDocument struct {
	Requests []Summary `json:"requests"`
	// Next is the cursor of the next page, "" on the last.
	Next string `json:"next,omitempty"`
}

// listQuery reads the listing parameters of r (state, owner, cursor,
// limit), or returns an error fit for a 400 answer.
func listQuery(r *http.Request) (asyncreq.ListQuery, error) {
	q := asyncreq.ListQuery{
		State:  asyncreq.State(r.FormValue("state")),
		Owner:  r.FormValue("owner"),
		Cursor: r.FormValue("cursor"),
	}
	if q.State != "" && !q.State.Valid() {
		return q, errors.New("state must be one of pending, running, succeeded, failed, canceled")
	}
	if s := r.FormValue("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, errors.New("limit must be a positive integer (at most " + strconv.Itoa(asyncreq.MaxListLimit) + " are listed)")
		}
		q.Limit = n
	}
	if _, err := asyncreq.ParseListCursor(q.Cursor); err != nil {
		return q, errors.New("the cursor was not made by this listing")
	}
	return q, nil
}

// list lists q's requests, or returns an error wrapping
// asyncreq.ErrNotSupported when its Store is no Lister.
func (h *Handler) list(ctx context.Context, q *queue, lq asyncreq.ListQuery) (ListDocument, error) {
	if q.lister == nil {
		return ListDocument{}, notSupported(q, "asyncreq.Lister")
	}
	page, err := q.lister.List(ctx, lq)
	if err != nil {
		return ListDocument{}, err
	}
	doc := ListDocument{Requests: make([]Summary, 0, len(page.Records)), Next: page.Next}
	for _, rec := range page.Records {
		doc.Requests = append(doc.Requests, summaryOf(q, rec))
	}
	return doc, nil
}

func (h *Handler) apiList(w http.ResponseWriter, r *http.Request) {
	if _, _, doc, ok := h.listed(w, r, h.apiAnswers()); ok {
		writeJSON(w, http.StatusOK, doc)
	}
}

func (h *Handler) apiGet(w http.ResponseWriter, r *http.Request) {
	if q, rec, ok := h.found(w, r, h.apiAnswers()); ok {
		writeJSON(w, http.StatusOK, h.detailOf(q, rec, time.Now()))
	}
}

// get reads the request r's path names in q.
func (h *Handler) get(ctx context.Context, q *queue, id string) (*asyncreq.Record, error) {
	if !asyncreq.ValidID(id) {
		return nil, asyncreq.ErrNotFound
	}
	return q.backend.Get(ctx, id)
}

// operation is one of the changes an operator makes to a request.
type operation func(ctx context.Context, b asyncreq.Backend, id string) (*asyncreq.Record, error)

// byValidID makes op answer ErrNotFound for a malformed id without
// asking the backend, as the Handler's routes do.
func byValidID(op operation) operation {
	return func(ctx context.Context, b asyncreq.Backend, id string) (*asyncreq.Record, error) {
		if !asyncreq.ValidID(id) {
			return nil, asyncreq.ErrNotFound
		}
		return op(ctx, b, id)
	}
}

// The operations of the routes; delete leaves no record to show.
var (
	retry         = byValidID(asyncreq.RetryRequest)
	cancelRequest = byValidID(asyncreq.CancelRequest)
	deleteRequest = byValidID(func(ctx context.Context, b asyncreq.Backend, id string) (*asyncreq.Record, error) {
		return nil, asyncreq.DeleteRequest(ctx, b, id)
	})
)

// apiOperate answers an operation with the request's detail as it
// stands after it, or 204 when nothing is left to show.
func (h *Handler) apiOperate(op operation) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, ok := h.queueOf(w, r, h.problem)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
		defer cancel()
		rec, err := op(ctx, q.backend, r.PathValue("id"))
		switch {
		case err != nil:
			h.apiError(w, r, err)
		case rec == nil:
			w.WriteHeader(http.StatusNoContent)
		default:
			writeJSON(w, http.StatusOK, h.detailOf(q, rec, time.Now()))
		}
	}
}

func (h *Handler) apiRetry(w http.ResponseWriter, r *http.Request) { h.apiOperate(retry)(w, r) }
func (h *Handler) apiCancel(w http.ResponseWriter, r *http.Request) {
	h.apiOperate(cancelRequest)(w, r)
}
func (h *Handler) apiDelete(w http.ResponseWriter, r *http.Request) {
	h.apiOperate(deleteRequest)(w, r)
}

// PurgeDocument is the answer of POST {base}/api/purge.
type PurgeDocument struct {
	Queue   string    `json:"queue"`
	Before  time.Time `json:"before"`
	Deleted int       `json:"deleted"`
}

// purgeBefore reads the time a purge deletes the finished requests last
// changed before: the before parameter (RFC 3339), or now less the
// older_than parameter (a Go duration such as 24h).
func purgeBefore(r *http.Request, now time.Time) (time.Time, error) {
	before, olderThan := r.FormValue("before"), r.FormValue("older_than")
	switch {
	case before != "" && olderThan != "":
		return time.Time{}, errors.New("give before or older_than, not both")
	case before != "":
		t, err := time.Parse(time.RFC3339, before)
		if err != nil {
			return time.Time{}, errors.New("before must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
		}
		return t, nil
	case olderThan != "":
		d, err := time.ParseDuration(olderThan)
		if err != nil || d < 0 {
			return time.Time{}, errors.New("older_than must be a duration such as 24h or 90m, not negative")
		}
		return now.Add(-d), nil
	}
	return time.Time{}, errors.New("give before (an RFC 3339 time) or older_than (a duration such as 24h)")
}

// purge deletes q's finished requests last changed before the given time.
func (h *Handler) purge(ctx context.Context, q *queue, before time.Time) (int, error) {
	if q.purger == nil {
		return 0, notSupported(q, "asyncreq.FinishedPurger")
	}
	return asyncreq.PurgeFinished(ctx, q.backend, before, 0)
}

func (h *Handler) apiPurge(w http.ResponseWriter, r *http.Request) {
	q, ok := h.queueOf(w, r, h.problem)
	if !ok {
		return
	}
	before, err := purgeBefore(r, time.Now())
	if err != nil {
		h.problem(w, r, http.StatusBadRequest, err.Error())
		return
	}
	n, err := h.purge(r.Context(), q, before)
	if err != nil {
		status, detail := h.statusOf(r, err)
		if n > 0 {
			detail += " (" + strconv.Itoa(n) + " requests were deleted before it failed)"
		}
		h.problem(w, r, status, detail)
		return
	}
	writeJSON(w, http.StatusOK, PurgeDocument{Queue: q.name, Before: before.UTC(), Deleted: n})
}
