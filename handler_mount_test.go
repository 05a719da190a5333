package asyncreq_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// walkContract submits through root (the full URL of the submit path) and
// follows every URL the handler hands out, checking that each carries
// wantBase.
func walkContract(t *testing.T, srv http.Handler, b *memory.Backend, submitPath, wantBase string) {
	t.Helper()
	rr := serveReq(t, srv, http.MethodPost, submitPath, "x")
	require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
	doc := readDoc(t, rr)
	statusURL := wantBase + "/" + doc.ID + "/status"
	require.Equal(t, statusURL, rr.Header().Get("Location"))
	require.Equal(t, statusURL, doc.StatusURL)

	rr = serveReq(t, srv, http.MethodGet, statusURL, "")
	require.Equal(t, http.StatusOK, rr.Code, rr.Body.String())

	setRecord(t, b, doc.ID, succeed(&asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")}))
	rr = serveReq(t, srv, http.MethodGet, statusURL, "")
	require.Equal(t, http.StatusSeeOther, rr.Code)
	resultURL := wantBase + "/" + doc.ID
	require.Equal(t, resultURL, rr.Header().Get("Location"))
	require.Equal(t, resultURL, readDoc(t, rr).ResultURL)

	rr = serveReq(t, srv, http.MethodGet, resultURL, "")
	require.Equal(t, http.StatusOK, rr.Code)
	require.Equal(t, "ok", rr.Body.String())

	rr = serveReq(t, srv, http.MethodDelete, resultURL, "")
	require.Equal(t, http.StatusNoContent, rr.Code)
}

func TestMountStdMuxStripPrefix(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, nil)
	mux := http.NewServeMux()
	jobs := http.StripPrefix("/jobs", h)
	mux.Handle("/jobs", jobs)
	mux.Handle("/jobs/", jobs)
	walkContract(t, mux, b, "/jobs", "/jobs")
	walkContract(t, mux, b, "/jobs/", "/jobs")

	// Method patterns on the outer mux work as well.
	mux2 := http.NewServeMux()
	mux2.Handle("POST /api/v1/jobs", http.StripPrefix("/api/v1/jobs", h))
	mux2.Handle("/api/v1/jobs/", http.StripPrefix("/api/v1/jobs", h))
	walkContract(t, mux2, b, "/api/v1/jobs", "/api/v1/jobs")
}

func TestMountStdMuxBasePath(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{BasePath: "/jobs/"})
	mux := http.NewServeMux()
	mux.Handle("/jobs", h)
	mux.Handle("/jobs/", h)
	walkContract(t, mux, b, "/jobs", "/jobs")
	checkProblem(t, serveReq(t, h, http.MethodPost, "/jobsx", "x"), http.StatusNotFound)
	checkProblem(t, serveReq(t, h, http.MethodPost, "/other", "x"), http.StatusNotFound)
}

// A handler that sees a path outside its BasePath, as one mounted where
// BasePath does not say does, answers 404 with a problem that names both
// and logs the first such path, once, at Warn.
func TestMountOutsideBasePath(t *testing.T) {
	b := newMemory(t)
	var logs syncBuffer
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{BasePath: "/jobs", Logger: logs.logger()})
	// Behind http.StripPrefix as well: the handler sees "/{id}/status".
	stripped := http.StripPrefix("/jobs", h)
	rr := serveReq(t, h, http.MethodPost, "/jobs/", "x")
	require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
	id := readDoc(t, rr).ID
	p := checkProblem(t, serveReq(t, stripped, http.MethodGet, "/jobs/"+id+"/status", ""), http.StatusNotFound)
	assert.Equal(t, "the path /"+id+"/status is not under the handler's BasePath /jobs", p.Detail)
	p = checkProblem(t, serveReq(t, h, http.MethodPost, "/jobsx", "x"), http.StatusNotFound)
	assert.Equal(t, "the path /jobsx is not under the handler's BasePath /jobs", p.Detail)
	p = checkProblem(t, serveReq(t, h, http.MethodGet, "/"+strings.Repeat("a", 1000), ""), http.StatusNotFound)
	assert.Equal(t, "the path /"+strings.Repeat("a", 255)+"... is not under the handler's BasePath /jobs", p.Detail, "a long path is cut")

	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, "not under HandlerOptions.BasePath"), "logged once: %s", out)
	assert.Contains(t, out, "level=WARN")
	assert.Contains(t, out, "path=/"+id+"/status")
	assert.Contains(t, out, "base_path=/jobs")

	// A path under BasePath that is no route is a plain 404.
	p = checkProblem(t, serveReq(t, h, http.MethodGet, "/jobs/a/b/c", ""), http.StatusNotFound)
	assert.Equal(t, "no such resource", p.Detail)
}

// TestMountOverTheWire runs the contract through a real server, where the
// request line, not a test helper, sets RequestURI.
func TestMountOverTheWire(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, nil)
	mux := http.NewServeMux()
	mux.Handle("/jobs", http.StripPrefix("/jobs", h))
	mux.Handle("/jobs/", http.StripPrefix("/jobs", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	res, err := client.Post(srv.URL+"/jobs?x=1", "text/plain", strings.NewReader("body"))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	loc := res.Header.Get("Location")
	require.True(t, strings.HasPrefix(loc, "/jobs/") && strings.HasSuffix(loc, "/status"), loc)

	res, err = client.Get(srv.URL + loc)
	require.NoError(t, err)
	_ = res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)

	rec, err := b.Get(t.Context(), strings.TrimSuffix(strings.TrimPrefix(loc, "/jobs/"), "/status"))
	require.NoError(t, err)
	assert.Equal(t, "/?x=1", rec.URL, "the URL the handler received")
}

// TestRoutingLeavesTheCallersRequestAlone checks that the handler's own
// routing does not overwrite the pattern and path values of the mux in
// front of it.
func TestRoutingLeavesTheCallersRequestAlone(t *testing.T) {
	b := newMemory(t)
	var owner string
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{
		BasePath: "/t",
		Owner: func(r *http.Request) (string, error) {
			owner = r.PathValue("tenant")
			return owner, nil
		},
	})
	var pattern, tenant string
	mux := http.NewServeMux()
	mux.HandleFunc("/t/{tenant}/", func(w http.ResponseWriter, r *http.Request) {
		// Route on the rest of the path, as a router with a wildcard
		// prefix would.
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/t" + strings.TrimPrefix(r.URL.Path, "/t/"+r.PathValue("tenant"))
		r2.SetPathValue("tenant", r.PathValue("tenant"))
		h.ServeHTTP(w, r2)
		pattern, tenant = r2.Pattern, r2.PathValue("tenant")
	})
	rr := serveReq(t, mux, http.MethodPost, "/t/acme/", "x")
	require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
	assert.Regexp(t, "^/t/acme/[0-9A-Z]{30}/status$", rr.Header().Get("Location"))
	assert.Equal(t, "acme", owner, "Owner sees the caller's path values")
	assert.Equal(t, "/t/{tenant}/", pattern)
	assert.Equal(t, "acme", tenant)
}
