package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// server runs asyncreq's handler and a worker over the memory backend at
// /jobs/ and returns the submit URL.
func server(t *testing.T, p asyncreq.ProcessorFunc) string {
	t.Helper()
	b := memory.New(nil)
	t.Cleanup(func() { _ = b.Close() })
	h, err := asyncreq.NewHandler(b, &asyncreq.HandlerOptions{
		Owner: func(r *http.Request) (string, error) {
			if r.Header.Get("Authorization") != "Bearer t" {
				return "", errors.New("no credentials")
			}
			return "u", nil
		},
	})
	require.NoError(t, err)
	w, err := asyncreq.NewWorker(b, p, &asyncreq.WorkerOptions{PurgeInterval: -1, SweepInterval: -1})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, w.Stop(ctx))
	})
	mux := http.NewServeMux()
	mux.Handle("/jobs/", http.StripPrefix("/jobs", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections)
	return srv.URL + "/jobs/"
}

func shout(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
	if err := asyncreq.ReportProgress(ctx, 50, "shouting"); err != nil {
		return nil, err
	}
	return &asyncreq.Result{StatusCode: http.StatusOK, ContentType: "text/plain", Body: bytes.ToUpper(req.Body)}, nil
}

type outcome struct {
	code           int
	stdout, stderr string
}

func cli(t *testing.T, stdin string, args ...string) outcome {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, strings.NewReader(stdin), &out, &errOut)
	return outcome{code, out.String(), errOut.String()}
}

var auth = []string{"-H", "Authorization: Bearer t", "-poll-max", "10ms"}

func TestSubmitAndWait(t *testing.T) {
	url := server(t, shout)
	o := cli(t, "hello from stdin", append(auth, "-d", "@-", "-H", "Content-Type: text/plain", url)...)
	require.Equal(t, 0, o.code, o.stderr)
	assert.Equal(t, "HELLO FROM STDIN", o.stdout)
	assert.Contains(t, o.stderr, "accepted: ")
	assert.Contains(t, o.stderr, "resume token: arq1.")
	assert.Contains(t, o.stderr, "status: succeeded")
	assert.Contains(t, o.stderr, "result: 200 OK (text/plain, 16 bytes)")
}

func TestSubmitFromFileToFile(t *testing.T) {
	url := server(t, shout)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	out := filepath.Join(dir, "out.txt")
	require.NoError(t, os.WriteFile(in, []byte("file body"), 0o600))
	o := cli(t, "", append(auth, "-q", "-d", "@"+in, "-o", out, "-idempotency-key", "k1", url)...)
	require.Equal(t, 0, o.code, o.stderr)
	assert.Empty(t, o.stdout)
	assert.Empty(t, o.stderr, "quiet")
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "FILE BODY", string(got))
}

func TestTokenWaitCancel(t *testing.T) {
	url := server(t, shout)
	o := cli(t, "", append(auth, "-wait=false", "-d", "later", url)...)
	require.Equal(t, 0, o.code, o.stderr)
	token := strings.TrimSpace(o.stdout)
	require.True(t, strings.HasPrefix(token, "arq1."), token)

	o = cli(t, "", append([]string{"wait"}, append(auth, token)...)...)
	require.Equal(t, 0, o.code, o.stderr)
	assert.Equal(t, "LATER", o.stdout)

	// Without the credentials the request does not exist for the caller.
	o = cli(t, "", "wait", "-poll-max", "10ms", token)
	assert.Equal(t, 1, o.code)
	assert.Contains(t, o.stderr, "401")

	o = cli(t, "", append([]string{"cancel"}, append(auth, token)...)...)
	require.Equal(t, 0, o.code, o.stderr)
	assert.Contains(t, o.stdout, "forgotten")

	o = cli(t, "", append([]string{"wait"}, append(auth, token)...)...)
	assert.Equal(t, 1, o.code)
	assert.Contains(t, o.stderr, "purged")
}

func TestCancelRunning(t *testing.T) {
	started := make(chan struct{}, 1)
	url := server(t, func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	o := cli(t, "", append(auth, "-wait=false", url)...)
	require.Equal(t, 0, o.code, o.stderr)
	token := strings.TrimSpace(o.stdout)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "processor did not start")
	}
	o = cli(t, "", append([]string{"cancel"}, append(auth, token)...)...)
	require.Equal(t, 0, o.code, o.stderr)
	assert.Contains(t, o.stdout, "cancel requested")

	o = cli(t, "", append([]string{"wait"}, append(auth, token)...)...)
	assert.Equal(t, 1, o.code)
	assert.Contains(t, o.stderr, "request canceled")
}

func TestFailedRequest(t *testing.T) {
	url := server(t, func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		return nil, asyncreq.Permanent(errors.New("the input is not a report"), http.StatusUnprocessableEntity)
	})
	o := cli(t, "", append(auth, "-d", "x", url)...)
	assert.Equal(t, 1, o.code)
	assert.Contains(t, o.stderr, "request failed: the input is not a report (422)")
}

func TestTimeoutPrintsToken(t *testing.T) {
	release := make(chan struct{})
	url := server(t, func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		select {
		case <-ctx.Done():
		case <-release:
		}
		return nil, ctx.Err()
	})
	t.Cleanup(func() { close(release) })
	o := cli(t, "", append(auth, "-timeout", "100ms", url)...)
	assert.Equal(t, 130, o.code)
	assert.Contains(t, o.stderr, "resume with: asyncreq wait arq1.")
}

func TestUsageErrors(t *testing.T) {
	for name, args := range map[string][]string{
		"no url":          {},
		"two urls":        {"http://a/", "http://b/"},
		"bad header":      {"-H", "nocolon", "http://a/"},
		"missing file":    {"-d", "@/no/such/file", "http://a/"},
		"unknown flag":    {"-nope", "http://a/"},
		"wait no token":   {"wait"},
		"wait bad token":  {"wait", "garbage"},
		"cancel bad":      {"cancel", "arq1.!!"},
		"bad trust":       {"-trust", "nope", "http://a/"},
		"cancel no token": {"cancel"},
	} {
		o := cli(t, "", args...)
		assert.Equal(t, 2, o.code, name)
		assert.NotEmpty(t, o.stderr, name)
	}
	o := cli(t, "", "-h")
	assert.Equal(t, 0, o.code)
	assert.Contains(t, o.stderr, "usage: asyncreq [flags] URL")

	o = cli(t, "", "-d", "x", "not a url")
	assert.Equal(t, 1, o.code)
	assert.Contains(t, o.stderr, "submit")
}

func TestInlineServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("done already"))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections)
	o := cli(t, "", "-wait=false", srv.URL)
	require.Equal(t, 0, o.code, o.stderr)
	assert.Equal(t, "done already", o.stdout)
	assert.Contains(t, o.stderr, "finished at once")
	assert.NotContains(t, o.stderr, "resume token")
}
