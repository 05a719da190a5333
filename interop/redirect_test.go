package interop

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// Clients that follow redirects, against the default (standard) mode: the
// status URL of a succeeded request answers 303 to the result, and the
// client ends at the result.

// submit posts body to the server's /jobs and returns the status URL the
// 202 names, made absolute on the server.
func submit(t *testing.T, s *testServer, body string) string {
	t.Helper()
	resp, err := s.Client().Post(s.URL+"/jobs", "text/plain", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	loc := resp.Header.Get("Location")
	require.True(t, strings.HasPrefix(loc, "/jobs/"), loc)
	return s.URL + loc
}

// waitFinished long-polls statusURL without following the 303 until the
// request is finished, and returns that answer's status code.
func waitFinished(t *testing.T, s *testServer, statusURL string) int {
	t.Helper()
	c := *s.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, statusURL, nil)
		require.NoError(t, err)
		req.Header.Set("Prefer", "wait=5")
		resp, err := c.Do(req)
		require.NoError(t, err)
		var doc asyncreq.StatusDocument
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		require.NoError(t, err)
		if doc.Status.Final() {
			return resp.StatusCode
		}
	}
	t.Fatal("the request did not finish in time")
	return 0
}

func TestHTTPClientFollowsStatusToResult(t *testing.T) {
	s := newServer(t, asyncreq.HandlerOptions{}, false)
	statusURL := submit(t, s, "hello")
	require.Equal(t, http.StatusSeeOther, waitFinished(t, s, statusURL))

	// http.Client's default redirect policy.
	resp, err := (&http.Client{Transport: s.Client().Transport}).Get(statusURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.JSONEq(t, `{"echo":"hello"}`, string(body))
	assert.Equal(t, strings.TrimSuffix(statusURL, "/status"), resp.Request.URL.String(), "ended at the result URL")
}

func TestCurlFollowsStatusToResult(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	s := newServer(t, asyncreq.HandlerOptions{}, false)
	statusURL := submit(t, s, "hello")
	require.Equal(t, http.StatusSeeOther, waitFinished(t, s, statusURL))

	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), curl, "--silent", "--show-error", "--location",
		"--max-time", "10", "--write-out", `\n%{http_code} %{url_effective}`, statusURL)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	body, last, ok := strings.Cut(stdout.String(), "\n")
	require.True(t, ok, stdout.String())
	assert.JSONEq(t, `{"echo":"hello"}`, body)
	assert.Equal(t, "200 "+strings.TrimSuffix(statusURL, "/status"), last)
}
