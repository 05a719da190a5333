package asyncreq

import "net/http"

// This file is what the status URL answers about a finished request in the
// mode for generic pollers (HandlerOptions.AcceptedWhilePending).
//
// A generic poller, such as the Azure SDK's Location poller
// (runtime.NewPoller on a 202 with a Location) or a Logic Apps HTTP action,
// polls the Location of a 202 while it answers 202 and takes the first other
// answer as the operation's own: a 2xx is its result, anything else its
// failure. So a finished request answers with its outcome, as the result
// URL does: the result itself (200 and the result's body, headers and
// ETag, with Content-Location naming the result URL) rather than a 303,
// which only a client that follows redirects turns into the result; and a
// failed or canceled request answers with its problem document and the
// problem's own status (422 for a permanent failure the input caused),
// rather than 200 and the status document, which such a poller would take
// for the result.

// writeFinalForPoller answers a status request about the finished record
// rec in the mode for generic pollers.
func (h *Handler) writeFinalForPoller(w http.ResponseWriter, r *http.Request, rec *Record, st *reqState) {
	if rec.State == StateSucceeded {
		w.Header().Set("Content-Location", st.resultURL(rec.ID))
		h.writeResult(w, r, rec)
		return
	}
	// Cache-Control stays no-store, as on every status answer.
	sendProblem(w, r, failureProblem(rec), http.StatusInternalServerError)
}
