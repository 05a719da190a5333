package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newMemory(t *testing.T) *memory.Backend {
	t.Helper()
	b := memory.New(nil)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func newHandler(t *testing.T, b *memory.Backend, opts *asyncreq.HandlerOptions) *asyncreq.Handler {
	t.Helper()
	h, err := asyncreq.NewHandler(b, opts)
	require.NoError(t, err)
	return h
}

func serve(h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(method, target, rd))
	return rr
}

func readDoc(t *testing.T, rr *httptest.ResponseRecorder) asyncreq.StatusDocument {
	t.Helper()
	require.Equal(t, "application/json", rr.Header().Get("Content-Type"), rr.Body.String())
	var doc asyncreq.StatusDocument
	require.NoError(t, json.Unmarshal(rr.Body.Bytes(), &doc), rr.Body.String())
	return doc
}

// walkContract submits to submitPath on srv and follows every URL the
// handler hands out (status, the 303 to the result, the result, its
// DELETE), checking that each carries wantBase. The request is finished
// through the Store, as a worker would finish it.
func walkContract(t *testing.T, srv http.Handler, b *memory.Backend, submitPath, wantBase string) {
	t.Helper()
	rr := serve(srv, http.MethodPost, submitPath, "x")
	require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
	doc := readDoc(t, rr)
	statusURL := wantBase + "/" + doc.ID + "/status"
	require.Equal(t, statusURL, rr.Header().Get("Location"))
	require.Equal(t, statusURL, doc.StatusURL)

	rr = serve(srv, http.MethodGet, statusURL, "")
	require.Equal(t, http.StatusOK, rr.Code, rr.Body.String())

	_, err := b.Update(t.Context(), doc.ID, func(r *asyncreq.Record) error {
		r.State = asyncreq.StateSucceeded
		r.Result = &asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")}
		r.UpdatedAt = time.Now()
		r.ExpiresAt = time.Now().Add(time.Hour)
		return nil
	})
	require.NoError(t, err)
	rr = serve(srv, http.MethodGet, statusURL, "")
	require.Equal(t, http.StatusSeeOther, rr.Code, rr.Body.String())
	resultURL := wantBase + "/" + doc.ID
	require.Equal(t, resultURL, rr.Header().Get("Location"))
	require.Equal(t, resultURL, readDoc(t, rr).ResultURL)

	rr = serve(srv, http.MethodGet, resultURL, "")
	require.Equal(t, http.StatusOK, rr.Code, rr.Body.String())
	require.Equal(t, "ok", rr.Body.String())

	rr = serve(srv, http.MethodDelete, resultURL, "")
	require.Equal(t, http.StatusNoContent, rr.Code, rr.Body.String())
}

func TestRoutes(t *testing.T) {
	b := newMemory(t)
	mux, err := routes(b, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	walkContract(t, mux, b, "/std/jobs", "/std/jobs")
	walkContract(t, mux, b, "/std/jobs/", "/std/jobs")
	walkContract(t, mux, b, "/api/v1/jobs", "/api/v1/jobs")
	walkContract(t, mux, b, "/api/v1/jobs/", "/api/v1/jobs")
}

func TestMountChi(t *testing.T) {
	b := newMemory(t)

	t.Run("Mount with BasePath", func(t *testing.T) {
		r := chi.NewRouter()
		r.Mount("/jobs", newHandler(t, b, &asyncreq.HandlerOptions{BasePath: "/jobs"}))
		walkContract(t, r, b, "/jobs", "/jobs")
		walkContract(t, r, b, "/jobs/", "/jobs")
	})
	t.Run("Mount with StripPrefix", func(t *testing.T) {
		r := chi.NewRouter()
		r.Mount("/jobs", http.StripPrefix("/jobs", newHandler(t, b, nil)))
		walkContract(t, r, b, "/jobs", "/jobs")
	})
	t.Run("nested routers", func(t *testing.T) {
		r := chi.NewRouter()
		r.Route("/api", func(r chi.Router) {
			r.Route("/v2", func(r chi.Router) {
				r.Mount("/jobs", newHandler(t, b, &asyncreq.HandlerOptions{BasePath: "/api/v2/jobs"}))
			})
		})
		walkContract(t, r, b, "/api/v2/jobs", "/api/v2/jobs")
	})
	t.Run("StripPrefix in front of chi", func(t *testing.T) {
		r := chi.NewRouter()
		r.Mount("/jobs", newHandler(t, b, &asyncreq.HandlerOptions{BasePath: "/jobs"}))
		outer := http.NewServeMux()
		outer.Handle("/tenant/", http.StripPrefix("/tenant", r))
		walkContract(t, outer, b, "/tenant/jobs", "/tenant/jobs")
	})
}

// TestMountChiOverTheWire runs the contract through a real server, where
// the request line, not a test helper, sets RequestURI.
func TestMountChiOverTheWire(t *testing.T) {
	b := newMemory(t)
	r := chi.NewRouter()
	r.Mount("/jobs", http.StripPrefix("/jobs", newHandler(t, b, nil)))
	srv := httptest.NewServer(r)
	defer srv.Close()
	defer srv.Client().CloseIdleConnections()
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
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)

	rec, err := b.Get(t.Context(), strings.TrimSuffix(strings.TrimPrefix(loc, "/jobs/"), "/status"))
	require.NoError(t, err)
	assert.Equal(t, "/?x=1", rec.URL, "the URL the handler received")
}
