package asyncreq_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// With PublicURL every URL the handler writes is absolute on it, followed
// by the path the request reached the handler at (its mount prefix).
func TestPublicURLMakesEveryURLAbsolute(t *testing.T) {
	for _, tc := range []struct {
		publicURL, mount, want string
	}{
		{"https://api.example.com", "/jobs", "https://api.example.com/jobs"},
		{"https://api.example.com/", "/jobs", "https://api.example.com/jobs"},
		{"http://127.0.0.1:8080/api/", "/v1/jobs", "http://127.0.0.1:8080/api/v1/jobs"},
		{"https://example.com/a%20b", "/jobs", "https://example.com/a%20b/jobs"},
	} {
		t.Run(tc.publicURL, func(t *testing.T) {
			b := newMemory(t)
			h := newTestHandler(t, b, &asyncreq.HandlerOptions{PublicURL: tc.publicURL})
			mux := http.NewServeMux()
			mux.Handle(tc.mount+"/", http.StripPrefix(tc.mount, h))

			rr := serveReq(t, mux, http.MethodPost, tc.mount+"/", "x")
			require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
			doc := readDoc(t, rr)
			statusURL := tc.want + "/" + doc.ID + "/status"
			resultURL := tc.want + "/" + doc.ID
			assert.Equal(t, statusURL, rr.Header().Get("Location"))
			assert.Equal(t, statusURL, doc.StatusURL)

			setRecord(t, b, doc.ID, succeed(&asyncreq.Result{Body: []byte("ok")}))
			rr = serveReq(t, mux, http.MethodGet, tc.mount+"/"+doc.ID+"/status", "")
			require.Equal(t, http.StatusSeeOther, rr.Code)
			assert.Equal(t, resultURL, rr.Header().Get("Location"))
			doc = readDoc(t, rr)
			assert.Equal(t, statusURL, doc.StatusURL)
			assert.Equal(t, resultURL, doc.ResultURL)

			// A submit answered with its result (Prefer: wait) names it
			// in Content-Location.
			synctest.Test(t, func(t *testing.T) {
				m := memory.New(nil)
				defer m.Close()
				hw := newTestHandler(t, m, &asyncreq.HandlerOptions{PublicURL: tc.publicURL})
				mux := http.NewServeMux()
				mux.Handle(tc.mount+"/", http.StripPrefix(tc.mount, hw))
				done := finishAfter(m, time.Second, succeed(&asyncreq.Result{Body: []byte("done")}))
				rr := serveReq(t, mux, http.MethodPost, tc.mount+"/", "x", "Prefer", "wait=10")
				<-done
				require.Equal(t, http.StatusOK, rr.Code, rr.Body.String())
				assert.Regexp(t, "^"+regexp.QuoteMeta(tc.want)+"/[0-9A-Z]+$", rr.Header().Get("Content-Location"))
			})
		})
	}
}

func TestPublicURLValidation(t *testing.T) {
	b := newMemory(t)
	for _, bad := range []string{
		"api.example.com",               // no scheme
		"/jobs",                         // relative
		"ftp://example.com",             // not http(s)
		"https://",                      // no host
		"https:example.com",             // opaque
		"https://user:pw@example.com",   // credentials
		"https://example.com/?a=b",      // query
		"https://example.com/?",         // empty query
		"https://example.com/#frag",     // fragment
		"https://exa mple.com",          // not a URL
		"https://example.com/%zz",       // bad escape
		"javascript://example.com/%0a1", // not http(s)
	} {
		_, err := asyncreq.NewHandler(b, &asyncreq.HandlerOptions{PublicURL: bad})
		require.ErrorContains(t, err, "HandlerOptions.PublicURL", bad)
	}
}

// With BasePath (a router that does not strip the prefix) the URLs are
// absolute on PublicURL as well, and a request line with "//" cannot
// name another host in them.
func TestPublicURLWithBasePath(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{BasePath: "/jobs", PublicURL: "https://api.example.com"})
	rr := serveReq(t, h, http.MethodPost, "/jobs", "x")
	require.Equal(t, http.StatusAccepted, rr.Code, rr.Body.String())
	doc := readDoc(t, rr)
	assert.Equal(t, "https://api.example.com/jobs/"+doc.ID+"/status", rr.Header().Get("Location"))

	r := httptest.NewRequest(http.MethodGet, "/jobs/"+doc.ID+"/status", nil)
	r.RequestURI = "//evil.example/jobs/" + doc.ID + "/status"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "https://api.example.com/jobs/"+doc.ID+"/status", readDoc(t, w).StatusURL)
}
