package asyncreq_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// In the mode for generic pollers, the status URL of a finished request
// answers with its outcome: the result on success, the failure's problem
// with its own status otherwise. Such pollers take a 2xx that is not 202
// for the result, so the status document must not be one.
func TestStatusForGenericPollersAnswersTheOutcome(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{AcceptedWhilePending: true})

	id := postJob(t, h, "x")
	setRecord(t, b, id, succeed(&asyncreq.Result{
		ContentType: "application/json",
		Header:      http.Header{"X-Answer": {"42"}},
		Body:        []byte(`{"n":1}`),
	}))
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		rr := serveReq(t, h, method, "/"+id+"/status", "")
		require.Equal(t, http.StatusOK, rr.Code, method)
		assert.Equal(t, "application/json", rr.Header().Get("Content-Type"))
		assert.Equal(t, "42", rr.Header().Get("X-Answer"))
		assert.Equal(t, "/"+id, rr.Header().Get("Content-Location"))
		assert.Empty(t, rr.Header().Get("Location"))
		assert.Empty(t, rr.Header().Get("Retry-After"), "final: no Retry-After")
		result := serveReq(t, h, http.MethodGet, "/"+id, "")
		assert.Equal(t, result.Header().Get("ETag"), rr.Header().Get("ETag"), "the result's representation")
		if method == http.MethodGet {
			assert.JSONEq(t, `{"n":1}`, rr.Body.String())
		} else {
			assert.Empty(t, rr.Body.String())
		}
	}

	for _, tc := range []struct {
		state asyncreq.State
		err   *asyncreq.Problem
		want  int
	}{
		{asyncreq.StateFailed, &asyncreq.Problem{Status: 422, Title: "Unprocessable Content", Detail: "not UTF-8"}, 422},
		{asyncreq.StateFailed, nil, 500},
		{asyncreq.StateCanceled, nil, 409},
	} {
		id := postJob(t, h, "x")
		setRecord(t, b, id, func(r *asyncreq.Record) {
			r.State = tc.state
			r.Error = tc.err
		})
		rr := serveReq(t, h, http.MethodGet, "/"+id+"/status", "")
		p := checkProblem(t, rr, tc.want)
		if tc.err != nil {
			assert.Equal(t, tc.err.Detail, p.Detail)
		}
		assert.Equal(t, "no-store", rr.Header().Get("Cache-Control"))
		assert.Empty(t, rr.Header().Get("Retry-After"), "final: no Retry-After")
		// The result URL answers the same failure.
		assert.Equal(t, rr.Body.String(), serveReq(t, h, http.MethodGet, "/"+id, "").Body.String())
	}
}

// The default mode keeps the pattern's answers.
func TestStatusStandardModeKeepsDocument(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, nil)
	id := postJob(t, h, "x")
	setRecord(t, b, id, func(r *asyncreq.Record) {
		r.State = asyncreq.StateFailed
		r.Error = &asyncreq.Problem{Status: 422, Detail: "no"}
	})
	rr := serveReq(t, h, http.MethodGet, "/"+id+"/status", "")
	require.Equal(t, http.StatusOK, rr.Code)
	assert.Equal(t, asyncreq.StateFailed, readDoc(t, rr).Status)
}
