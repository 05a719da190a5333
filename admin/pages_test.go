package admin_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/admin"
)

const xss = `<script>alert(1)</script>`

// requireSafePage checks the headers every answer carries and, for a
// page, that it has no inline script, style or event handler.
func requireSafePage(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	hdr := w.Header()
	require.Equal(t, "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'", hdr.Get("Content-Security-Policy"))
	require.Equal(t, "nosniff", hdr.Get("X-Content-Type-Options"))
	require.Equal(t, "no-store", hdr.Get("Cache-Control"))
	body := w.Body.String()
	if strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		require.NotRegexp(t, regexp.MustCompile(`(?i)<script(\s[^>]*)?>`), strings.ReplaceAll(body, `<script src=`, ``),
			"a script element without src")
		require.NotRegexp(t, regexp.MustCompile(`(?i)\sstyle\s*=`), body, "a style attribute")
		require.NotRegexp(t, regexp.MustCompile(`(?i)<style`), body, "a style element")
		require.NotRegexp(t, regexp.MustCompile(`(?i)\son[a-z]+\s*=`), body, "an event handler attribute")
		require.NotRegexp(t, regexp.MustCompile(`(?i)(href|src|action)\s*=\s*"?\s*javascript:`), body, "a javascript: URL")
	}
	return body
}

// browser is a client with a cookie jar, as a browser logged in to the
// admin would be.
type browser struct {
	t       *testing.T
	h       http.Handler
	cookies []*http.Cookie
}

func (b *browser) do(method, target string, form url.Values) *httptest.ResponseRecorder {
	b.t.Helper()
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	// What a browser sends with a form of the same origin.
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	for _, c := range b.cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	b.h.ServeHTTP(w, r)
	b.cookies = append(b.cookies, w.Result().Cookies()...)
	requireSafePage(b.t, w)
	return w
}

func (b *browser) login() {
	b.t.Helper()
	w := b.do(http.MethodPost, "/admin/login", url.Values{"token": {testToken}})
	require.Equal(b.t, http.StatusSeeOther, w.Code, w.Body.String())
	require.Equal(b.t, "/admin/?done=loggedin", w.Header().Get("Location"))
}

func TestEveryRouteNeedsAuthorization(t *testing.T) {
	b := newMemory()
	id := record(t, b, 0, failed(nil))
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": b})
	for _, rt := range []struct{ method, target string }{
		{"GET", "/admin/api/queues"}, {"GET", "/admin/api/requests"}, {"GET", "/admin/api/requests/" + id},
		{"POST", "/admin/api/requests/" + id + "/retry"}, {"POST", "/admin/api/requests/" + id + "/cancel"},
		{"DELETE", "/admin/api/requests/" + id}, {"POST", "/admin/api/purge?older_than=1h"}, {"GET", "/admin/api/nothing"},
	} {
		for _, auth := range []string{"", "wrong-secret-0123456789"} {
			w := call(t, h, rt.method, rt.target, auth)
			requireSafePage(t, w)
			requireProblem(t, w, http.StatusUnauthorized)
			require.Equal(t, `Bearer realm="asyncreq admin"`, w.Header().Get("WWW-Authenticate"))
		}
	}
	// The pages send a browser to the login form.
	for _, target := range []string{"/admin/", "/admin/requests", "/admin/requests/" + id, "/admin/nothing"} {
		w := call(t, h, http.MethodGet, target, "")
		requireSafePage(t, w)
		require.Equal(t, http.StatusSeeOther, w.Code, target)
		require.Equal(t, "/admin/login", w.Header().Get("Location"))
	}
	// A form posted without a session changes nothing.
	for _, target := range []string{"/admin/requests/" + id + "/retry", "/admin/requests/" + id + "/delete", "/admin/purge"} {
		w := call(t, h, http.MethodPost, target, "")
		requireSafePage(t, w)
		require.Equal(t, http.StatusUnauthorized, w.Code, target)
	}
	rec, err := b.Get(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateFailed, rec.State)

	// The stylesheet, the script and the login form need none.
	for _, target := range []string{"/admin/static/admin.css", "/admin/static/admin.js", "/admin/login"} {
		w := call(t, h, http.MethodGet, target, "")
		requireSafePage(t, w)
		require.Equal(t, http.StatusOK, w.Code, target)
	}
	require.Equal(t, http.StatusNotFound, call(t, h, http.MethodGet, "/admin/static/", "").Code)
}

func TestAuthorizeFunc(t *testing.T) {
	b := newMemory()
	errNo := errors.New("no")
	ah, err := admin.New(admin.Options{Queues: map[string]asyncreq.Backend{"jobs": b}, Authorize: func(r *http.Request) error {
		if r.Header.Get("X-Operator") == "yes" {
			return nil
		}
		return errNo
	}})
	require.NoError(t, err)
	h := mount(ah)
	w := call(t, h, http.MethodGet, "/admin/", "")
	requireSafePage(t, w)
	require.Equal(t, http.StatusUnauthorized, w.Code)
	require.Equal(t, http.StatusNotFound, call(t, h, http.MethodGet, "/admin/login", "").Code, "no login form without a Token")

	r := httptest.NewRequest(http.MethodGet, "/admin/", nil)
	r.Header.Set("X-Operator", "yes")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
}

func TestLoginSession(t *testing.T) {
	b := newMemory()
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": b})
	br := &browser{t: t, h: h}

	w := br.do(http.MethodPost, "/admin/login", url.Values{"token": {"not it"}})
	require.Equal(t, http.StatusUnauthorized, w.Code)
	require.Contains(t, w.Body.String(), "That is not the admin token")
	require.Empty(t, br.cookies)

	br.login()
	require.Len(t, br.cookies, 1)
	c := br.cookies[0]
	require.True(t, c.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, c.SameSite)
	require.Equal(t, "/admin/", c.Path)
	require.NotContains(t, c.Value, testToken)

	w = br.do(http.MethodGet, "/admin/?done=loggedin", nil)
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), "Logged in.")
	w = br.do(http.MethodGet, "/admin/api/queues", nil)
	require.Equal(t, http.StatusOK, w.Code)

	// A forged session is refused.
	forged := &browser{t: t, h: h, cookies: []*http.Cookie{{Name: c.Name, Value: "99999999999." + strings.Repeat("A", 43)}}}
	require.Equal(t, http.StatusSeeOther, forged.do(http.MethodGet, "/admin/", nil).Code)

	w = br.do(http.MethodPost, "/admin/logout", url.Values{})
	require.Equal(t, http.StatusSeeOther, w.Code)
	cleared := w.Result().Cookies()
	require.Len(t, cleared, 1)
	require.Equal(t, -1, cleared[0].MaxAge)
}

func TestCrossOriginStateChangeIsRefused(t *testing.T) {
	b := newMemory()
	id := record(t, b, 0, failed(nil))
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": b})
	for _, target := range []string{"/admin/api/requests/" + id + "/retry", "/admin/requests/" + id + "/retry", "/admin/login"} {
		for _, hdr := range []struct{ name, value string }{
			{"Sec-Fetch-Site", "cross-site"},
			{"Origin", "https://evil.example"},
		} {
			r := httptest.NewRequest(http.MethodPost, target, strings.NewReader("queue=jobs&token="+testToken))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Authorization", "Bearer "+testToken)
			r.Header.Set(hdr.name, hdr.value)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			requireSafePage(t, w)
			require.Equal(t, http.StatusForbidden, w.Code, "%s with %s", target, hdr.name)
		}
	}
	rec, err := b.Get(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateFailed, rec.State)
	// A program's call, with neither header, goes through.
	require.Equal(t, http.StatusOK, api(t, h, http.MethodPost, "/admin/api/requests/"+id+"/retry").Code)
}

func TestPagesEscapeRecordData(t *testing.T) {
	b := newMemory()
	id := record(t, b, 0, func(r *asyncreq.Record) {
		r.Owner = xss
		r.Body = []byte(xss)
		r.Header = http.Header{"X-Note": {xss}}
		r.URL = "/jobs?q=" + xss
		r.IdempotencyKey = xss
		failed(&asyncreq.Problem{Status: 422, Title: xss, Detail: xss, Type: "javascript:alert(1)"})(r)
		r.Callback = &asyncreq.Callback{URL: "javascript:alert(1)", State: asyncreq.CallbackFailed, LastError: xss}
	})
	done := record(t, b, 0, func(r *asyncreq.Record) {
		r.Owner = xss
		succeeded(xss + strings.Repeat("x", 5000))(r)
		r.Result.Header = http.Header{"X-Result": {xss}}
	})
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": b})
	br := &browser{t: t, h: h}
	br.login()

	for _, target := range []string{
		"/admin/",
		"/admin/requests?queue=jobs",
		"/admin/requests?queue=jobs&owner=" + url.QueryEscape(xss),
		"/admin/requests/" + id + "?queue=jobs",
		"/admin/requests/" + done + "?queue=jobs",
	} {
		w := br.do(http.MethodGet, target, nil)
		require.Equal(t, http.StatusOK, w.Code, target)
		body := w.Body.String()
		require.NotContains(t, body, xss, target)
		require.NotContains(t, body, "<script>alert", target)
		if strings.Contains(target, "requests/") {
			require.Contains(t, body, "&lt;script&gt;alert(1)&lt;/script&gt;", target)
		}
	}
	w := br.do(http.MethodGet, "/admin/requests/"+done+"?queue=jobs", nil)
	require.Contains(t, w.Body.String(), "The first part of 5025 bytes", "the result preview is truncated")
	require.NotContains(t, w.Body.String(), strings.Repeat("x", 4500))
}

func TestDashboardAndList(t *testing.T) {
	b := newMemory()
	f := record(t, b, time.Second, failed(&asyncreq.Problem{Status: 500, Detail: "attempt 3 of 3 failed"}))
	record(t, b, 0, succeeded("ok"))
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": b, "plain": bare{b, b}})
	br := &browser{t: t, h: h}
	br.login()

	body := br.do(http.MethodGet, "/admin/", nil).Body.String()
	require.Contains(t, body, `href="/admin/static/admin.css"`)
	require.Contains(t, body, `<script src="/admin/static/admin.js" defer></script>`)
	require.Contains(t, body, `href="/admin/requests?queue=jobs&amp;state=failed"`)
	require.Contains(t, body, "no asyncreq.Lister")
	require.Contains(t, body, "not sampling")
	require.Contains(t, body, `<svg class="chart"`)
	require.Contains(t, body, `action="/admin/purge"`)

	w := br.do(http.MethodGet, "/admin/requests?queue=jobs&state=failed", nil)
	require.Equal(t, http.StatusOK, w.Code)
	body = w.Body.String()
	require.Contains(t, body, f)
	require.Contains(t, body, "attempt 3 of 3 failed")
	require.Equal(t, 1, strings.Count(body, `class="id"`))

	w = br.do(http.MethodGet, "/admin/requests?queue=jobs&limit=1", nil)
	require.Contains(t, w.Body.String(), "Next page")
	w = br.do(http.MethodGet, "/admin/requests?queue=jobs&cursor=bogus", nil)
	require.Equal(t, http.StatusBadRequest, w.Code)
	w = br.do(http.MethodGet, "/admin/requests?queue=plain", nil)
	require.Equal(t, http.StatusNotImplemented, w.Code)
	require.Contains(t, w.Body.String(), "asyncreq.Lister")
	w = br.do(http.MethodGet, "/admin/requests?queue=nope", nil)
	require.Equal(t, http.StatusNotFound, w.Code)
	w = br.do(http.MethodGet, "/admin/requests/"+asyncreq.NewID()+"?queue=jobs", nil)
	require.Equal(t, http.StatusNotFound, w.Code)
}

func TestForms(t *testing.T) {
	b := newMemory()
	id := record(t, b, 0, failed(nil))
	old := record(t, b, 48*time.Hour, succeeded("ok"))
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": b})
	br := &browser{t: t, h: h}
	br.login()

	page := br.do(http.MethodGet, "/admin/requests/"+id+"?queue=jobs", nil).Body.String()
	require.Contains(t, page, `action="/admin/requests/`+id+`/retry"`)
	require.Contains(t, page, `id="retry"`)
	require.NotContains(t, page, `id="cancel"`, "a failed request cannot be canceled")

	w := br.do(http.MethodPost, "/admin/requests/"+id+"/retry", url.Values{"queue": {"jobs"}})
	require.Equal(t, http.StatusSeeOther, w.Code, w.Body.String())
	require.Equal(t, "/admin/requests/"+id+"?done=retried&queue=jobs", w.Header().Get("Location"))
	page = br.do(http.MethodGet, w.Header().Get("Location"), nil).Body.String()
	require.Contains(t, page, "Retried: the request is pending again")
	require.Contains(t, page, `id="cancel"`)

	w = br.do(http.MethodPost, "/admin/requests/"+id+"/retry", url.Values{"queue": {"jobs"}})
	require.Equal(t, http.StatusConflict, w.Code)

	w = br.do(http.MethodPost, "/admin/requests/"+id+"/cancel", url.Values{"queue": {"jobs"}})
	require.Equal(t, http.StatusSeeOther, w.Code)
	rec, err := b.Get(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, asyncreq.StateCanceled, rec.State)

	w = br.do(http.MethodPost, "/admin/requests/"+id+"/delete", url.Values{"queue": {"jobs"}})
	require.Equal(t, http.StatusSeeOther, w.Code)
	require.Equal(t, "/admin/requests?done=deleted&queue=jobs", w.Header().Get("Location"))
	w = br.do(http.MethodGet, "/admin/requests/"+id+"?queue=jobs", nil)
	require.Equal(t, http.StatusGone, w.Code)

	w = br.do(http.MethodPost, "/admin/purge", url.Values{"queue": {"jobs"}, "older_than": {"24h"}})
	require.Equal(t, http.StatusSeeOther, w.Code, w.Body.String())
	require.Equal(t, "/admin/?done=purged&n=1", w.Header().Get("Location"))
	_, err = b.Get(t.Context(), old)
	require.ErrorIs(t, err, asyncreq.ErrGone)
	w = br.do(http.MethodPost, "/admin/purge", url.Values{"queue": {"jobs"}})
	require.Equal(t, http.StatusBadRequest, w.Code)
}

func TestMountPaths(t *testing.T) {
	b := newMemory()
	tok, err := admin.NewToken(testToken)
	require.NoError(t, err)

	// Behind a router that does not strip the prefix.
	ah, err := admin.New(admin.Options{Queues: map[string]asyncreq.Backend{"jobs": b}, Token: tok, BasePath: "/ops/admin"})
	require.NoError(t, err)
	w := call(t, ah, http.MethodGet, "/ops/admin/", "")
	require.Equal(t, "/ops/admin/login", w.Header().Get("Location"))
	w = call(t, ah, http.MethodGet, "/ops/admin/", testToken)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Body.String(), `href="/ops/admin/static/admin.css"`)
	require.Equal(t, http.StatusNotFound, call(t, ah, http.MethodGet, "/elsewhere/", testToken).Code)

	// At the root of a server.
	root, err := admin.New(admin.Options{Queues: map[string]asyncreq.Backend{"jobs": b}, Token: tok})
	require.NoError(t, err)
	w = call(t, root, http.MethodGet, "/", testToken)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Body.String(), `href="/static/admin.css"`)

	// An unclean path is not redirected out of the mount path.
	for _, target := range []string{"/admin/requests/../api/queues", "/admin//requests", "/admin/requests/./x"} {
		r := httptest.NewRequest(http.MethodGet, "/admin/", nil)
		r.URL.Path = target
		r.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		root.ServeHTTP(w, r)
		require.Equal(t, http.StatusNotFound, w.Code, target)
	}

	// A request line that would make links point at another host.
	mux := mount(root)
	r := httptest.NewRequest(http.MethodGet, "/admin/", nil)
	r.RequestURI = "//evil.example/admin/"
	r.Header.Set("Authorization", "Bearer "+testToken)
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	require.NotContains(t, w.Body.String(), "evil.example")
}
