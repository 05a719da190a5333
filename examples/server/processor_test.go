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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

func TestLoadTargetFlags(t *testing.T) {
	c, err := parseFlags(nil)
	require.NoError(t, err)
	assert.Equal(t, "report", c.processor)
	assert.Equal(t, 8, c.concurrency)
	assert.False(t, c.defaults)

	c, err = parseFlags([]string{"-processor", "noop", "-concurrency", "100", "-defaults"})
	require.NoError(t, err)
	assert.Equal(t, "noop", c.processor)
	assert.Equal(t, 100, c.concurrency)
	assert.True(t, c.defaults)
}

// serveApp starts an app made from c behind a test server, stopped when t
// ends.
func serveApp(t *testing.T, c config) *httptest.Server {
	t.Helper()
	ctx := t.Context()
	a, err := newApp(ctx, c, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(a.close)
	require.NoError(t, a.start(ctx))
	t.Cleanup(func() { assert.NoError(t, a.stop()) })
	srv := httptest.NewServer(a.handler)
	t.Cleanup(srv.Close)
	return srv
}

// submitAndWait posts a document to /jobs of an app made from c and
// returns the final answer.
func submitAndWait(t *testing.T, c config) (*http.Response, string) {
	t.Helper()
	ctx := t.Context()
	srv := serveApp(t, c)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/jobs", strings.NewReader("one two\nthree\n"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Prefer", "wait=10")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestNoopProcessor(t *testing.T) {
	resp, body := submitAndWait(t, config{backend: "memory", processor: "noop", concurrency: 2, workTime: time.Hour})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "ok", body)
	assert.Equal(t, "text/plain", resp.Header.Get("Content-Type"))
}

func TestReportProcessorIsTheDefault(t *testing.T) {
	c, err := parseFlags([]string{"-backend", "memory", "-work-time", "0"})
	require.NoError(t, err)
	resp, body := submitAndWait(t, c)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var rep report
	require.NoError(t, json.Unmarshal([]byte(body), &rep))
	assert.Equal(t, report{Bytes: 14, Lines: 2, Words: 3, SHA256: rep.SHA256}, rep)
	assert.Len(t, rep.SHA256, 64)
}

func TestUnknownProcessor(t *testing.T) {
	_, err := newApp(t.Context(), config{backend: "memory", processor: "sleep", concurrency: 1}, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, `unknown -processor "sleep"`)
}

func TestNoWorkersLeavesRequestsQueued(t *testing.T) {
	c, err := parseFlags([]string{"-backend", "memory", "-processor", "noop", "-no-workers"})
	require.NoError(t, err)
	require.True(t, c.noWorkers)
	ctx := t.Context()
	srv := serveApp(t, c)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/jobs", strings.NewReader("x"))
	require.NoError(t, err)
	req.Header.Set("Prefer", "wait=1")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "no worker ran the request within its wait")
	var doc asyncreq.StatusDocument
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
	assert.Equal(t, asyncreq.StatePending, doc.Status)
}
