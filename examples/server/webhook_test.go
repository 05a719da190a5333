package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// postJob submits a document to /jobs of srv with the given Callback-URL
// and returns the answer's status code.
func postJob(t *testing.T, srv *httptest.Server, callback string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/jobs", strings.NewReader("one two\n"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Callback-URL", callback)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func startApp(t *testing.T, c config) *httptest.Server {
	t.Helper()
	a, err := newApp(t.Context(), c, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(a.close)
	require.NoError(t, a.start(context.WithoutCancel(t.Context())))
	t.Cleanup(func() { assert.NoError(t, a.stop()) })
	srv := httptest.NewServer(a.handler)
	t.Cleanup(srv.Close)
	return srv
}

func TestWebhookFlags(t *testing.T) {
	var mu sync.Mutex
	var got []*asyncreq.WebhookEvent
	recv := httptest.NewServer(client.WebhookHandler(&client.WebhookVerifier{Secrets: []string{testSecret}},
		func(_ context.Context, _ string, ev *asyncreq.WebhookEvent) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, ev)
			return nil
		}))
	defer recv.Close()

	off := startApp(t, config{backend: "memory", processor: "noop", concurrency: 1})
	assert.Equal(t, http.StatusBadRequest, postJob(t, off, recv.URL), "without -webhook-secret a Callback-URL is refused")

	c, err := parseFlags([]string{"-backend", "memory", "-processor", "noop", "-webhook-secret", testSecret, "-webhook-allow-loopback"})
	require.NoError(t, err)
	on := startApp(t, c)
	require.Equal(t, http.StatusAccepted, postJob(t, on, recv.URL))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	}, 10*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, asyncreq.EventSucceeded, got[0].Type)
}
