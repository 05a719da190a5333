package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sleepRecorder replaces a Client's sleeper: it records each wait and
// returns at once, so time-based logic is checked without waiting.
type sleepRecorder struct {
	mu     sync.Mutex
	sleeps []time.Duration
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.sleeps = append(s.sleeps, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.sleeps...)
}

// newTestClient returns a Client with its own transport (closed at the end
// of the test), small poll bounds, and no jitter, unless opts says
// otherwise.
func newTestClient(t *testing.T, opts *Options) *Client {
	t.Helper()
	var o Options
	if opts != nil {
		o = *opts
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	if o.PollMin == 0 {
		o.PollMin = time.Millisecond
	}
	if o.PollMax == 0 {
		o.PollMax = 5 * time.Millisecond
	}
	if o.PollInitial == 0 {
		o.PollInitial = time.Millisecond
	}
	if o.Jitter == 0 {
		o.Jitter = -1
	}
	c, err := New(&o)
	require.NoError(t, err)
	return c
}

// recordSleeps makes c record its waits instead of sleeping.
func recordSleeps(c *Client) *sleepRecorder {
	r := &sleepRecorder{}
	c.sleep = r.sleep
	return r
}

// newServer starts an httptest server closed at the end of the test.
func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}
