package asyncreq_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
)

// FuzzHandler feeds the handler arbitrary methods, paths, ids, headers and
// bodies. It must never panic, must always answer with a valid status, and
// must answer every error with a problem document. "{id}" in a path stands
// for the id of a stored request, "{done}" for a finished one.
func FuzzHandler(f *testing.F) {
	b := newMemory(f)
	h := newTestHandler(f, b, &asyncreq.HandlerOptions{
		MaxBodyBytes: 64,
		MaxWait:      time.Millisecond,
		Owner: func(r *http.Request) (string, error) {
			if r.Header.Get("X-Anonymous") != "" {
				return "", &asyncreq.Problem{Status: http.StatusUnauthorized}
			}
			return r.Header.Get("X-User"), nil
		},
		Validate: func(_ *http.Request, body []byte) error {
			if strings.HasPrefix(string(body), "reject") {
				return &asyncreq.Problem{Status: http.StatusBadRequest, Detail: "rejected"}
			}
			return nil
		},
	})
	pending := postJob(f, h, "seed")
	done := postJob(f, h, "done")
	setRecord(f, b, done, succeed(&asyncreq.Result{ContentType: "text/plain", Body: []byte("result")}))

	for _, s := range []struct{ method, path, prefer, key, inm, user, body string }{
		{"POST", "/", "", "", "", "", "hello"},
		{"POST", "/", "wait=1", "k1", "", "", "hello"},
		{"POST", "/", "respond-async, wait=99999999999999999999", "k1", "", "", "other"},
		{"POST", "/", "wait=-1;x=\"y\", ,=,", `"quoted"`, "", "u", strings.Repeat("x", 65)},
		{"POST", "/", "", "", "", "", "reject me"},
		{"GET", "/{id}/status", "wait=1", "", "", "", ""},
		{"HEAD", "/{id}/status", "", "", "", "", ""},
		{"GET", "/{id}", "", "", "", "", ""},
		{"GET", "/{done}", "", "", `"abc", W/"def", *`, "", ""},
		{"GET", "/{done}/status", "wait=1", "", "", "other", ""},
		{"DELETE", "/{id}", "", "", "", "", ""},
		{"DELETE", "/{done}", "", "", "", "", ""},
		{"PUT", "/{id}", "", "", "", "", "x"},
		{"GET", "//../%2e%2e/status", "", "", "", "", ""},
		{"get", "/\x00/status", "wait=\x00", "\xff", "\xff", "", "\xff"},
		{"", "", "", "", "", "", ""},
		{"POST", "/?a=b#c", "", "", "", "", ""},
		{"OPTIONS", "*", "", "", "", "", ""},
	} {
		f.Add(s.method, s.path, s.prefer, s.key, s.inm, s.user, s.body)
	}

	f.Fuzz(func(t *testing.T, method, path, prefer, key, inm, user, body string) {
		path = strings.ReplaceAll(path, "{id}", pending)
		path = strings.ReplaceAll(path, "{done}", done)
		u, err := url.Parse(path)
		if err != nil {
			u = &url.URL{Path: path}
		}
		r := httptest.NewRequest(http.MethodGet, "/", strings.NewReader(body))
		r.Method = method
		r.URL = u
		r.RequestURI = path
		r.ContentLength = int64(len(body))
		for k, v := range map[string]string{"Prefer": prefer, "Idempotency-Key": key, "If-None-Match": inm, "X-User": user} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		if user == "anonymous" {
			r.Header.Set("X-Anonymous", "1")
		}
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, r)

		code := rr.Code
		if code < 200 || code > 599 || http.StatusText(code) == "" {
			t.Fatalf("%q %q: invalid status %d", method, path, code)
		}
		if code < 400 {
			return
		}
		if ct := rr.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("%q %q: %d with Content-Type %q", method, path, code, ct)
		}
		if method == http.MethodHead {
			return
		}
		var p asyncreq.Problem
		if err := json.Unmarshal(rr.Body.Bytes(), &p); err != nil {
			t.Fatalf("%q %q: %d with a body that is no problem document: %q", method, path, code, rr.Body.String())
		}
		if p.Status != code || p.Title == "" || p.Type == "" {
			t.Fatalf("%q %q: %d with problem %+v", method, path, code, p)
		}
	})
}
