package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/admin"
	"github.com/asyncreq/asyncreq/memory"
)

// testToken is the admin secret of the tests.
const testToken = "test-secret-0123456789"

// listing is a memory Backend with a Lister and a FinishedPurger that
// read every record it created: enough for the admin's tests, whatever
// the memory package implements itself.
type listing struct {
	*memory.Backend
	mu  sync.Mutex
	ids []string
}

func newListing() *listing { return &listing{Backend: memory.New(nil)} }

var (
	_ asyncreq.Lister           = (*listing)(nil)
	_ asyncreq.FinishedPurger   = (*listing)(nil)
	_ asyncreq.QueueStater      = (*listing)(nil)
	_ asyncreq.Accepter         = (*listing)(nil)
	_ asyncreq.Backend          = bare{}
	_ asyncreq.UnenqueuedLister = (*listing)(nil)
)

func (l *listing) track(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = append(l.ids, id)
}

func (l *listing) Create(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	old, err := l.Backend.Create(ctx, rec)
	if err == nil {
		l.track(rec.ID)
	}
	return old, err
}

func (l *listing) Accept(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	old, err := l.Backend.Accept(ctx, rec)
	if err == nil {
		l.track(rec.ID)
	}
	return old, err
}

// all returns every record still held, newest first.
func (l *listing) all(ctx context.Context) ([]*asyncreq.Record, error) {
	l.mu.Lock()
	ids := slices.Clone(l.ids)
	l.mu.Unlock()
	var recs []*asyncreq.Record
	for _, id := range ids {
		r, err := l.Get(ctx, id)
		switch {
		case err == nil:
			r.Body = nil
			if r.Result != nil {
				r.Result.Body = nil
			}
			recs = append(recs, r)
		case asyncreqMissing(err):
		default:
			return nil, err
		}
	}
	slices.SortFunc(recs, func(a, b *asyncreq.Record) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return recs, nil
}

func asyncreqMissing(err error) bool {
	return errors.Is(err, asyncreq.ErrNotFound) || errors.Is(err, asyncreq.ErrGone)
}

func (l *listing) List(ctx context.Context, q asyncreq.ListQuery) (asyncreq.ListPage, error) {
	cur, err := asyncreq.ParseListCursor(q.Cursor)
	if err != nil {
		return asyncreq.ListPage{}, err
	}
	recs, err := l.all(ctx)
	if err != nil {
		return asyncreq.ListPage{}, err
	}
	var page asyncreq.ListPage
	limit := q.PageLimit()
	for _, r := range recs {
		if q.State != "" && r.State != q.State || q.Owner != "" && r.Owner != q.Owner {
			continue
		}
		if !cur.IsZero() && !cur.After(r.CreatedAt, r.ID) {
			continue
		}
		if len(page.Records) == limit {
			last := page.Records[limit-1]
			page.Next = asyncreq.ListCursor{CreatedAt: last.CreatedAt, ID: last.ID}.String()
			break
		}
		page.Records = append(page.Records, r)
	}
	return page, nil
}

func (l *listing) CountStates(ctx context.Context) (asyncreq.StateCounts, error) {
	recs, err := l.all(ctx)
	var c asyncreq.StateCounts
	for _, r := range recs {
		c.Add(r.State, 1)
	}
	return c, err
}

func (l *listing) PurgeFinished(ctx context.Context, before time.Time, limit int, tombstone bool) (int, error) {
	recs, err := l.all(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		if n == limit {
			break
		}
		if r.State.Final() && r.UpdatedAt.Before(before) {
			if err := l.Delete(ctx, r.ID, tombstone); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

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
