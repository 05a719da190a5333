package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/admin"
	"github.com/asyncreq/asyncreq/memory"
)

// testToken is the admin secret of the tests.
const testToken = "test-secret-0123456789"

// The memory Backend has every capability the admin uses.
var (
	_ asyncreq.Lister         = (*memory.Backend)(nil)
	_ asyncreq.FinishedPurger = (*memory.Backend)(nil)
	_ asyncreq.QueueStater    = (*memory.Backend)(nil)
)

func newMemory() *memory.Backend { return memory.New(nil) }

// bare hides every optional capability of a Backend.
type bare struct {
	asyncreq.Store
	asyncreq.Queue
}

// record stores a record in b, as the Handler would have, changed by fn,
// created the given offset from now, and returns its id.
func record(t *testing.T, b asyncreq.Backend, age time.Duration, fn func(*asyncreq.Record)) string {
	t.Helper()
	now := time.Now().Add(-age)
	rec := &asyncreq.Record{
		ID: asyncreq.NewID(), State: asyncreq.StatePending, Method: http.MethodPost, URL: "/jobs",
		ContentType: "text/plain", Body: []byte("hello"), Enqueued: true,
		CreatedAt: now, UpdatedAt: now, Retention: time.Hour, TombstoneTTL: time.Hour,
	}
	if fn != nil {
		fn(rec)
	}
	_, err := b.Create(context.Background(), rec)
	require.NoError(t, err)
	return rec.ID
}

// failed makes a record failed with the given problem.
func failed(p *asyncreq.Problem) func(*asyncreq.Record) {
	return func(r *asyncreq.Record) {
		r.State = asyncreq.StateFailed
		r.Attempts = 3
		r.Error = p
		r.ExpiresAt = r.UpdatedAt.Add(r.Retention)
	}
}

// succeeded makes a record succeeded with the given result body.
func succeeded(body string) func(*asyncreq.Record) {
	return func(r *asyncreq.Record) {
		r.State = asyncreq.StateSucceeded
		r.Attempts = 1
		r.Result = &asyncreq.Result{ContentType: "text/plain", Body: []byte(body)}
		r.ExpiresAt = r.UpdatedAt.Add(r.Retention)
	}
}

// mount returns a server mux with h at /admin/, as the example server
// mounts it.
func mount(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", h))
	return mux
}

// newAdmin returns the admin over queues with the test token, mounted at
// /admin/.
func newAdmin(t *testing.T, queues map[string]asyncreq.Backend) http.Handler {
	t.Helper()
	tok, err := admin.NewToken(testToken)
	require.NoError(t, err)
	h, err := admin.New(admin.Options{Queues: queues, Token: tok})
	require.NoError(t, err)
	return mount(h)
}

// call serves one request with the test token as a bearer token (unless
// auth is ""), and returns the answer.
func call(t *testing.T, h http.Handler, method, target, auth string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if auth != "" {
		r.Header.Set("Authorization", "Bearer "+auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// api serves an authorized API call.
func api(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	return call(t, h, method, target, testToken)
}

// decode decodes the JSON answer w into v.
func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	require.NoError(t, json.NewDecoder(w.Body).Decode(&v), w.Body.String())
	return v
}

// requireProblem checks that w is a problem document of the given
// status, and returns it.
func requireProblem(t *testing.T, w *httptest.ResponseRecorder, status int) asyncreq.Problem {
	t.Helper()
	require.Equal(t, status, w.Code, w.Body.String())
	require.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
	p := decode[asyncreq.Problem](t, w)
	require.Equal(t, status, p.Status)
	require.NotEmpty(t, p.Title)
	return p
}
