package asyncreq

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// This file is the completion callback of a request: the Callback-URL a
// submit may name, how the Handler accepts it (CallbackPolicy), what the
// record keeps about its delivery, and the transitions of that delivery.
// The delivery itself (signing, the HTTP call, retries) is in webhook.go.

// CallbackHeader is the request header in which a submit names the URL
// that is told when the request reaches a final state.
const CallbackHeader = "Callback-URL"

// CallbackPolicy says which callback URLs a Handler accepts (see
// HandlerOptions.Callbacks). A URL must be absolute http or https, with
// no user information or fragment, and be allowed by AllowedHosts or by
// Allow.
type CallbackPolicy struct {
	// AllowedHosts lists the host names (or IP addresses) a callback URL
	// may name, compared case-insensitively and without the port. A
	// leading "*." allows every subdomain of the rest ("*.example.com"
	// allows "hooks.example.com", not "example.com").
	AllowedHosts []string

	// Allow, if set, is asked about each URL that AllowedHosts does not
	// allow; nil accepts it, an error refuses it (its text is sent to the
	// client as the detail of a 400 problem).
	Allow func(u *url.URL) error
}

// errCallbackHost is the refusal of a URL no rule allows.
var errCallbackHost = errors.New("the Callback-URL host is not allowed")

// check returns the callback URL raw parsed, or an error fit for the
// client to read.
func (p *CallbackPolicy) check(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "":
		return nil, errors.New("the Callback-URL header must be one absolute http or https URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("the Callback-URL scheme must be http or https")
	case u.User != nil:
		return nil, errors.New("the Callback-URL must not carry user information")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("the Callback-URL must not carry a fragment")
	case len(raw) > maxCallbackURLLen:
		return nil, fmt.Errorf("the Callback-URL must be at most %d bytes", maxCallbackURLLen)
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	for _, a := range p.AllowedHosts {
		a = strings.ToLower(strings.TrimSuffix(a, "."))
		if h, _, err := net.SplitHostPort(a); err == nil {
			a = h
		}
		if a == host || (strings.HasPrefix(a, "*.") && strings.HasSuffix(host, a[1:])) {
			return u, nil
		}
	}
	if p.Allow != nil {
		if err := p.Allow(u); err != nil {
			return nil, err
		}
		return u, nil
	}
	return nil, errCallbackHost
}

// maxCallbackURLLen bounds the Callback-URL header.
const maxCallbackURLLen = 2048

// callbackURL reads the Callback-URL of a submit. It returns "" when
// there is none, and an error fit for the client when there is one the
// Handler does not accept: a Handler without HandlerOptions.Callbacks
// refuses every one, so that a client never believes it will be told.
func (h *Handler) callbackURL(r *http.Request) (string, error) {
	vs := r.Header.Values(CallbackHeader)
	switch {
	case len(vs) == 0:
		return "", nil
	case h.opts.Callbacks == nil:
		return "", errors.New("this server does not send callbacks; poll the status URL instead of sending Callback-URL")
	case len(vs) > 1:
		return "", errors.New("the Callback-URL header must appear once")
	}
	u, err := h.opts.Callbacks.check(strings.TrimSpace(vs[0]))
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// CallbackState is where the delivery of a request's completion callback
// stands.
type CallbackState string

// The states of a callback. A callback waits while its request is not
// final, is pending once it is, and is delivered, or failed once its
// attempts are used up or it cannot be delivered at all; retrying means
// an attempt failed and another one is due.
const (
	CallbackWaiting   CallbackState = ""
	CallbackPending   CallbackState = "pending"
	CallbackRetrying  CallbackState = "retrying"
	CallbackDelivered CallbackState = "delivered"
	CallbackFailed    CallbackState = "failed"
)

// due reports whether s still needs a delivery attempt.
func (s CallbackState) due() bool { return s == CallbackPending || s == CallbackRetrying }

// Callback is what a Record keeps about the completion callback its
// submit asked for: where to send it, the URLs its event names, and how
// its delivery went.
type Callback struct {
	// URL is the callback URL the submit named.
	URL string `json:"url"`
	// StatusURL and ResultURL are the request's status and result URLs as
	// the submit reached the Handler, which the event's status document
	// names: the Worker that sends it does not know them.
	StatusURL string `json:"status_url,omitempty"`
	ResultURL string `json:"result_url,omitempty"`
	// State is where the delivery stands.
	State CallbackState `json:"state,omitempty"`
	// Attempts is the number of delivery attempts made so far.
	Attempts int `json:"attempts,omitempty"`
	// LastError says why the last attempt failed, for the logs and the
	// operator; it is not shown to clients.
	LastError string `json:"last_error,omitempty"`
	// UpdatedAt is when the delivery last changed.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// errCallbackSettled refuses a delivery transition on a record whose
// callback is not due (none, not final yet, or settled already).
var errCallbackSettled = errors.New("asyncreq: no callback due")

// callbackDue reports whether r's callback awaits a delivery attempt.
func (r *Record) callbackDue() bool {
	return r.Callback != nil && r.State.Final() && r.Callback.State.due()
}

// scheduleCallback makes the callback of r, which just became final,
// pending. finalize calls it, so every way to a final state schedules it.
func (r *Record) scheduleCallback(now time.Time) {
	if r.Callback != nil && r.Callback.State == CallbackWaiting {
		r.Callback.State = CallbackPending
		r.Callback.UpdatedAt = now
	}
}

// CallbackDelivered records a delivery attempt that the receiver
// acknowledged. It returns an error, and changes nothing, unless r is
// final with its callback due.
func (r *Record) CallbackDelivered(now time.Time) error {
	return r.callbackAttempt(CallbackDelivered, "", now)
}

// CallbackRetry records a failed delivery attempt, reason, after which
// another is due. It returns an error, and changes nothing, unless r is
// final with its callback due.
func (r *Record) CallbackRetry(reason string, now time.Time) error {
	return r.callbackAttempt(CallbackRetrying, reason, now)
}

// CallbackFail records the failed delivery attempt, reason, that gives
// the callback up. It returns an error, and changes nothing, unless r is
// final with its callback due.
func (r *Record) CallbackFail(reason string, now time.Time) error {
	return r.callbackAttempt(CallbackFailed, reason, now)
}

func (r *Record) callbackAttempt(s CallbackState, reason string, now time.Time) error {
	if !r.callbackDue() {
		return errCallbackSettled
	}
	r.Callback.State = s
	r.Callback.Attempts++
	r.Callback.LastError = reason
	r.Callback.UpdatedAt = now
	return nil
}

// CallbackStatus is the delivery of a request's callback as the status
// document shows it.
type CallbackStatus struct {
	// State is "waiting" while the request is not final, then "pending",
	// "retrying", "delivered" or "failed".
	State string `json:"state"`
	// Attempts is the number of delivery attempts made so far.
	Attempts int `json:"attempts"`
}

// callbackStatus returns what the status document shows of r's callback,
// or nil when it has none.
func callbackStatus(r *Record) *CallbackStatus {
	if r.Callback == nil {
		return nil
	}
	s := string(r.Callback.State)
	if s == "" {
		s = "waiting"
	}
	return &CallbackStatus{State: s, Attempts: r.Callback.Attempts}
}
