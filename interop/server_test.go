package interop

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// echo is the result the test processor returns.
type echo struct {
	Echo string `json:"echo"`
}

// testServer is an httptest server with an asyncreq handler mounted at
// /jobs and a Worker behind it running process.
type testServer struct {
	*httptest.Server
	// release ends every request whose body is "block".
	release chan struct{}
}

// process answers a request by its body: "invalid" fails permanently with
// 422, "block" waits for release, anything else succeeds with an echo of
// the body as JSON.
func (s *testServer) process(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
	switch string(req.Body) {
	case "invalid":
		return nil, asyncreq.Permanent(&asyncreq.Problem{Status: http.StatusUnprocessableEntity, Detail: "the input is invalid"}, 0)
	case "block":
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	b, err := json.Marshal(echo{Echo: string(req.Body)})
	if err != nil {
		return nil, err
	}
	return &asyncreq.Result{ContentType: "application/json", Body: b}, nil
}

// newServer starts a server whose handler has the options opts, with
// PublicURL set to the server's own URL when public is true.
func newServer(t *testing.T, opts asyncreq.HandlerOptions, public bool) *testServer {
	t.Helper()
	b := memory.New(nil)
	t.Cleanup(func() { b.Close() })
	s := &testServer{release: make(chan struct{})}

	mux := http.NewServeMux()
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	if public {
		opts.PublicURL = s.URL
	}
	h, err := asyncreq.NewHandler(b, &opts)
	require.NoError(t, err)
	jobs := http.StripPrefix("/jobs", h)
	mux.Handle("/jobs", jobs)
	mux.Handle("/jobs/", jobs)

	w, err := asyncreq.NewWorker(b, asyncreq.ProcessorFunc(s.process), nil)
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, w.Stop(ctx))
	})
	return s
}
