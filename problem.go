package asyncreq

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// This file is the one home of RFC 9457 problem documents: the Problem
// type, the errors that carry one, the normaliser every problem passes
// through before it is stored or sent, and the writer that sends it.

// Problem is an RFC 9457 problem document. It is also an error, so a
// validator or processor can return one to choose the exact answer.
type Problem struct {
	// Type is a URI reference that identifies the problem type.
	// The default is "about:blank".
	Type string `json:"type,omitempty"`
	// Title is a short summary of the problem type.
	Title string `json:"title,omitempty"`
	// Status is the HTTP status code of the answer.
	Status int `json:"status,omitempty"`
	// Detail explains this occurrence of the problem to the client.
	Detail string `json:"detail,omitempty"`
	// Instance is a URI reference that identifies this occurrence.
	Instance string `json:"instance,omitempty"`
}

// Error implements error.
func (p *Problem) Error() string {
	if p.Detail != "" {
		return fmt.Sprintf("asyncreq: %d %s: %s", p.Status, p.Title, p.Detail)
	}
	return fmt.Sprintf("asyncreq: %d %s", p.Status, p.Title)
}

// ServeHTTP answers with p as an application/problem+json document, as
// the Handler writes its own: a Status that is not an error status becomes
// 500, an empty Type "about:blank" and an empty Title the status's RFC
// 9110 reason phrase. A handler wrapped by NewAsync, or any other, can use
// it to answer errors the way asyncreq does.
func (p *Problem) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sendProblem(w, r, p, http.StatusInternalServerError)
}

// problemError is a failure whose problem document is all the client
// sees; err, which it wraps as well, is for the log. Permanent(&problemError{...})
// is shown as that problem.
type problemError struct {
	problem *Problem
	err     error
}

func (e *problemError) Error() string   { return e.problem.Error() + ": " + e.err.Error() }
func (e *problemError) Unwrap() []error { return []error{e.problem, e.err} }

// validProblemStatus reports whether s is an error status, the only kind
// a problem document may carry.
func validProblemStatus(s int) bool { return 400 <= s && s <= 599 }

// statusText is the reason phrase of an HTTP status code for problem
// titles: http.StatusText, with the names RFC 9110 gives 413 and 422.
func statusText(code int) string {
	switch code {
	case http.StatusRequestEntityTooLarge:
		return "Content Too Large"
	case http.StatusUnprocessableEntity:
		return "Unprocessable Content"
	}
	return http.StatusText(code)
}

// newProblem returns the problem of the given error status with its
// reason phrase as the title.
func newProblem(status int, detail string) *Problem {
	return &Problem{Title: statusText(status), Status: status, Detail: detail}
}

// normalProblem returns a copy of p with an error status (def when p's is
// not one, and 500 when def is not one either) and the status's reason
// phrase as its title when it has none. Every problem passes through it
// before it is recorded or sent. The Type is left as it is: the writer
// fills in "about:blank" when it sends one without a Type.
func normalProblem(p *Problem, def int) *Problem {
	c := *p
	if !validProblemStatus(c.Status) {
		c.Status = def
		if !validProblemStatus(c.Status) {
			c.Status = http.StatusInternalServerError
		}
	}
	if c.Title == "" {
		c.Title = statusText(c.Status)
	}
	return &c
}

// servedProblem returns p as it is sent: normalised (see normalProblem)
// and with "about:blank" as its Type when it names none.
func servedProblem(p *Problem, def int) *Problem {
	c := normalProblem(p, def)
	if c.Type == "" {
		c.Type = "about:blank"
	}
	return c
}

// permanentProblem returns the problem a permanent failure is recorded
// with, or nil if err is not permanent.
//
// A failure is permanent when the processor says so: a *PermanentError
// anywhere in err's chain, or a *Problem that is err itself. A *Problem
// found only deeper in the chain is not a verdict on this request but an
// answer some other service gave (a client's ResponseError wrapped with
// %w, or a RetryAfter of it): taken as permanent, a passing 503 would fail
// the request for good and hand that service's detail to the client.
//
// A problem that names no status takes the PermanentError's; one that
// names a status that is not an error status is recorded as 500.
func permanentProblem(err error) *Problem {
	if p, ok := err.(*Problem); ok {
		if p == nil {
			return nil
		}
		return normalProblem(p, http.StatusInternalServerError)
	}
	var pe *PermanentError
	if !errors.As(err, &pe) {
		return nil
	}
	withStatus := func(p *Problem) *Problem {
		c := *p
		if c.Status == 0 {
			c.Status = pe.Status
		}
		return normalProblem(&c, http.StatusInternalServerError)
	}
	detail := "processing failed"
	switch e := pe.Err.(type) {
	case *Problem:
		if e != nil {
			return withStatus(e)
		}
	case *problemError:
		return withStatus(e.problem)
	case nil:
	default:
		detail = e.Error()
	}
	return normalProblem(&Problem{Status: pe.Status, Detail: detail}, http.StatusInternalServerError)
}

// failedProblem is the problem of a request that failed for a reason whose
// text is kept from the client.
func failedProblem(detail string) *Problem {
	return newProblem(http.StatusInternalServerError, detail)
}

// canceledProblem is the problem of a request canceled by its client.
func canceledProblem() *Problem {
	return newProblem(http.StatusConflict, "the request was canceled")
}

// tooLargeProblem is the problem of a request whose result is larger than
// limit bytes. Its status is 500: the server made an answer it will not
// keep, which is no fault of the client's request and will not change
// when the client tries again.
func tooLargeProblem(limit int64) *Problem {
	return failedProblem("the result is larger than the " + strconv.FormatInt(limit, 10) + " bytes the server keeps")
}

// resultTooLarge is the permanent failure of a request whose result is
// larger than limit bytes.
func resultTooLarge(limit int64) error {
	return Permanent(&problemError{problem: tooLargeProblem(limit), err: ErrResultTooLarge}, http.StatusInternalServerError)
}

// pendingProblem is the problem a result URL answers before the request
// finished: it points at the status URL with an extension member.
type pendingProblem struct {
	Problem
	StatusURL string `json:"status_url"`
}

// sendError answers with a problem document of the given error status.
func sendError(w http.ResponseWriter, r *http.Request, status int, detail string) {
	sendProblem(w, r, newProblem(status, detail), status)
}

// sendProblem answers with p as it is served (see servedProblem), its
// status def when p's is not an error status.
func sendProblem(w http.ResponseWriter, r *http.Request, p *Problem, def int) {
	writeProblem(w, r, servedProblem(p, def))
}

// problemStatus returns the status of a problem document value.
func problemStatus(v any) int {
	switch p := v.(type) {
	case *Problem:
		return p.Status
	case *pendingProblem:
		return p.Status
	}
	return http.StatusInternalServerError
}

// writeProblem answers with a problem document (a *Problem or a
// *pendingProblem) as it is: callers normalise it first.
func writeProblem(w http.ResponseWriter, r *http.Request, v any) {
	code := problemStatus(v)
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: the documents are plain strings and ints
		b = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
		code = http.StatusInternalServerError
	}
	b = append(b, '\n')
	hdr := w.Header()
	hdr.Set("Content-Type", "application/problem+json")
	hdr.Set("Content-Length", strconv.Itoa(len(b)))
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
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
