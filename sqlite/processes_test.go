package sqlite_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/sqlite"
)

// openOther opens the database file of first, at path, as another process
// would: through a symbolic link, so that the Backend gets connections, a
// writer and watches of its own instead of sharing first's (every Open of
// one absolute path in a process shares them). It is closed when t ends.
func openOther(t *testing.T, first *sqlite.Backend, path string, opts *sqlite.Options) *sqlite.Backend {
	t.Helper()
	link := filepath.Join(t.TempDir(), "other.db")
	if err := os.Symlink(path, link); err != nil {
		t.Skipf("a second engine on one file is opened through a symbolic link: %v", err)
	}
	other, err := sqlite.Open(t.Context(), link, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, other.Close()) })
	require.False(t, sqlite.SharesEngine(first, other), "the second Backend must not share the first one's engine")
	return other
}

// TestTwoInstances runs the kit's two-instance cases with the handler and
// the workers on two engines on one file, as an API process and a worker
// process.
func TestTwoInstances(t *testing.T) {
	asyncreqtest.TestTwoInstances(t, func(t *testing.T) (asyncreq.Backend, asyncreq.Backend) {
		api, path := openTemp(t, nil)
		worker := openOther(t, api, path, nil)
		return api, worker
	}, &asyncreqtest.Options{LeaseTTL: 500 * time.Millisecond})
}

// twoProcesses starts a handler on one engine of a new file and a worker
// running p on another engine of it, and returns the handler's server.
func twoProcesses(t *testing.T, p asyncreq.ProcessorFunc, lease time.Duration) *httptest.Server {
	t.Helper()
	api, path := openTemp(t, nil)
	worker := openOther(t, api, path, &sqlite.Options{MaxPollInterval: 50 * time.Millisecond})
	h, err := asyncreq.NewHandler(api, nil)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	w, err := asyncreq.NewWorker(worker, p, &asyncreq.WorkerOptions{LeaseDuration: lease})
	require.NoError(t, err)
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, w.Stop(ctx))
	})
	return srv
}

// send sends a request to srv and returns the answer with its body.
func send(t *testing.T, srv *httptest.Server, method, target, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+target, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// TestPreferWaitSeesOtherProcessOutcome: a submit with Prefer: wait=5 of a
// one-second request that a worker of another process runs answers with
// the result, although the handler's watch never sees that process's
// writes.
func TestPreferWaitSeesOtherProcessOutcome(t *testing.T) {
	srv := twoProcesses(t, func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte("done")}, nil
	}, 3*time.Second)

	resp, body := send(t, srv, http.MethodPost, "/", "x", "Prefer", "wait=5")
	require.Equal(t, http.StatusOK, resp.StatusCode, "the final answer, not 202; body: %s", body)
	assert.Equal(t, "done", body)
	assert.Equal(t, "wait=5", resp.Header.Get("Preference-Applied"))
}

// TestDeleteCancelsOtherProcessProcessor: DELETE of a request running in
// a worker of another process cancels its processor, and the request ends
// canceled, although the worker's watch never sees the handler's write.
func TestDeleteCancelsOtherProcessProcessor(t *testing.T) {
	started := make(chan struct{}, 1)
	causes := make(chan error, 1)
	const lease = 600 * time.Millisecond
	srv := twoProcesses(t, func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			causes <- context.Cause(ctx)
			return nil, ctx.Err()
		case <-time.After(10 * time.Second):
			return &asyncreq.Result{Body: []byte("ran to the end")}, nil
		}
	}, lease)

	resp, body := send(t, srv, http.MethodPost, "/", "x")
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	status := resp.Header.Get("Location")
	id := strings.TrimSuffix(strings.TrimPrefix(status, "/"), "/status")
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the processor did not start")
	}
	// Let the worker's first read of the record pass.
	time.Sleep(lease / 2)
	resp, body = send(t, srv, http.MethodDelete, "/"+id, "")
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)

	select {
	case cause := <-causes:
		assert.ErrorIs(t, cause, asyncreq.ErrCanceled)
	case <-time.After(5 * time.Second):
		t.Fatal("the processor was not canceled within 5s (a heartbeat is every 200ms)")
	}
	require.Eventually(t, func() bool {
		_, body = send(t, srv, http.MethodGet, status, "")
		return strings.Contains(body, `"status":"canceled"`)
	}, 5*time.Second, 20*time.Millisecond, "the request ends canceled; last status: %s", body)
}
