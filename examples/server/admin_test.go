package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/admin"
)

const testAdminToken = "admin-token-0123456789abcdef"

// adminCall calls the admin of srv with the test token.
func adminCall(t *testing.T, srv *httptest.Server, method, path string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// submitJob posts body to /jobs of srv and returns the request's id.
func submitJob(t *testing.T, srv *httptest.Server, body string) string {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+"/jobs", "text/plain", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	var doc asyncreq.StatusDocument
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
	return doc.ID
}

// awaitState waits until the admin shows the request id of /jobs in the
// given state.
func awaitState(t *testing.T, srv *httptest.Server, id string, want asyncreq.State) admin.Detail {
	t.Helper()
	var d admin.Detail
	require.Eventually(t, func() bool {
		resp := adminCall(t, srv, http.MethodGet, "/admin/api/requests/"+id+"?queue=jobs")
		if resp.StatusCode != http.StatusOK {
			return false
		}
		d = admin.Detail{}
		return json.NewDecoder(resp.Body).Decode(&d) == nil && d.State == want
	}, 20*time.Second, 20*time.Millisecond, "request %s never became %s (last: %s)", id, want, d.State)
	return d
}

func TestAdminFlag(t *testing.T) {
	off := startApp(t, config{backend: "memory", processor: "noop", concurrency: 1})
	require.Equal(t, http.StatusNotFound, adminCall(t, off, http.MethodGet, "/admin/").StatusCode, "no admin without -admin-token")
	require.Equal(t, http.StatusNotFound, adminCall(t, off, http.MethodGet, "/admin/api/queues").StatusCode)

	_, err := newApp(t.Context(), config{backend: "memory", processor: "noop", concurrency: 1, adminToken: "short"}, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "-admin-token")

	c, err := parseFlags([]string{"-backend", "memory", "-processor", "noop", "-concurrency", "1", "-admin-token", testAdminToken, "-fail-word", "FAIL-ONCE"})
	require.NoError(t, err)
	on := startApp(t, c)

	resp, err := on.Client().Get(on.URL + "/admin/api/queues")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp = adminCall(t, on, http.MethodGet, "/admin/api/queues")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var qs admin.QueuesDocument
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&qs))
	require.Len(t, qs.Queues, 2)
	require.Equal(t, "jobs", qs.Queues[0].Name)
	require.Equal(t, "reports", qs.Queues[1].Name)

	// -fail-word: the request fails once, and its retry succeeds.
	id := submitJob(t, on, "please FAIL-ONCE\n")
	d := awaitState(t, on, id, asyncreq.StateFailed)
	require.NotNil(t, d.Error)
	require.Equal(t, http.StatusUnprocessableEntity, d.Error.Status)
	require.Contains(t, d.Error.Detail, "FAIL-ONCE")
	require.Equal(t, http.StatusOK, adminCall(t, on, http.MethodPost, "/admin/api/requests/"+id+"/retry?queue=jobs").StatusCode)
	d = awaitState(t, on, id, asyncreq.StateSucceeded)
	require.Equal(t, 1, d.Attempts)
	other := submitJob(t, on, "fine\n")
	awaitState(t, on, other, asyncreq.StateSucceeded)
}
