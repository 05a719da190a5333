package asyncreq

import (
	"errors"
	"net/http"
)

// This file is the DELETE route: a client's cancel of a request that is
// not finished, or the deletion of one that is.

// serveDelete serves DELETE /{id}: cancel a request that is not finished,
// delete one that is.
func (h *Handler) serveDelete(w http.ResponseWriter, r *http.Request, st *reqState) {
	owner, ok := h.owner(w, r, st)
	if !ok {
		return
	}
	id := st.id
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
		doc := statusDocument(rec, st)
		h.writeDocument(w, r, http.StatusAccepted, &doc)
		return
	case !errors.Is(err, ErrFinished):
		h.storeError(w, r, st, err)
		return
	}
	if err := h.store.Delete(ctx, id, true); err != nil {
		h.storeError(w, r, st, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
