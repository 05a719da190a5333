package admin_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/admin"
)

func TestNewRequiresQueuesAndAuthorization(t *testing.T) {
	b := newMemory()
	tok, err := admin.NewToken(testToken)
	require.NoError(t, err)
	allow := func(*http.Request) error { return nil }
	queues := map[string]asyncreq.Backend{"jobs": b}
	for name, o := range map[string]admin.Options{
		"no queues":            {Token: tok},
		"no authorization":     {Queues: queues},
		"two authorizations":   {Queues: queues, Token: tok, Authorize: allow},
		"insecure and a token": {Queues: queues, Token: tok, InsecureNoAuth: true},
		"nil backend":          {Queues: map[string]asyncreq.Backend{"jobs": nil}, Token: tok},
		"bad name":             {Queues: map[string]asyncreq.Backend{"a b": b}, Token: tok},
		"empty name":           {Queues: map[string]asyncreq.Backend{"": b}, Token: tok},
		"bad base path":        {Queues: queues, Token: tok, BasePath: "admin/"},
		"short interval":       {Queues: queues, Token: tok, SampleInterval: time.Millisecond},
		"one sample":           {Queues: queues, Token: tok, Samples: 1},
		"negative preview":     {Queues: queues, Token: tok, PreviewBytes: -1},
	} {
		t.Run(name, func(t *testing.T) {
			h, err := admin.New(o)
			require.Error(t, err)
			require.Nil(t, h)
			require.Contains(t, err.Error(), "admin: ")
		})
	}
	for name, o := range map[string]admin.Options{
		"token":     {Queues: queues, Token: tok},
		"authorize": {Queues: queues, Authorize: allow},
		"insecure":  {Queues: queues, InsecureNoAuth: true},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := admin.New(o)
			require.NoError(t, err)
		})
	}
	_, err = admin.NewToken("short")
	require.Error(t, err)
}

func TestAPIQueues(t *testing.T) {
	jobs, plain := newMemory(), bare{}
	mem := newMemory()
	plain.Store, plain.Queue = mem, mem
	record(t, jobs, 3*time.Second, nil)
	record(t, jobs, 2*time.Second, failed(&asyncreq.Problem{Status: 500, Detail: "boom"}))
	record(t, jobs, time.Second, succeeded("ok"))
	require.NoError(t, jobs.Enqueue(context.Background(), "0000000000000000000000000000AA", 0))
	require.NoError(t, jobs.Enqueue(context.Background(), "0000000000000000000000000000AB", time.Hour))
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": jobs, "plain": plain})

	w := api(t, h, http.MethodGet, "/admin/api/queues")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Equal(t, "application/json", w.Header().Get("Content-Type"))
	doc := decode[admin.QueuesDocument](t, w)
	require.Len(t, doc.Queues, 2)

	q := doc.Queues[0]
	require.Equal(t, "jobs", q.Name)
	require.Equal(t, admin.Capabilities{List: true, Purge: true, QueueStats: true}, q.Capabilities)
	require.NotNil(t, q.Counts)
	assert.Equal(t, admin.Counts{Pending: 1, Succeeded: 1, Failed: 1, Total: 3}, *q.Counts)
	require.NotNil(t, q.Stats)
	assert.EqualValues(t, 1, q.Stats.Pending)
	require.NotNil(t, q.Stats.Delayed)
	assert.EqualValues(t, 2, q.Stats.Depth, "one due, one delayed")
	assert.GreaterOrEqual(t, q.Stats.OldestPendingAge, 0.0)
	assert.Empty(t, q.Errors)

	p := doc.Queues[1]
	require.Equal(t, "plain", p.Name)
	require.Equal(t, admin.Capabilities{}, p.Capabilities)
	assert.Nil(t, p.Counts)
	assert.Nil(t, p.Stats)
}

func TestAPIList(t *testing.T) {
	b := newMemory()
	var ids []string // oldest first
	for i := range 5 {
		owner := "alice"
		if i%2 == 1 {
			owner = "bob"
		}
		ids = append(ids, record(t, b, time.Duration(10-i)*time.Second, func(r *asyncreq.Record) { r.Owner = owner }))
	}
	failedID := record(t, b, 0, failed(nil))
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": b, "other": newMemory()})

	// Paging: newest first, two at a time, until no next cursor.
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		require.Less(t, page, 10, "the listing does not end")
		w := api(t, h, http.MethodGet, "/admin/api/requests?"+url.Values{"queue": {"jobs"}, "limit": {"2"}, "cursor": {cursor}}.Encode())
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		doc := decode[admin.ListDocument](t, w)
		require.LessOrEqual(t, len(doc.Requests), 2)
		for _, s := range doc.Requests {
			require.Equal(t, "jobs", s.Queue)
			got = append(got, s.ID)
		}
		if doc.Next == "" {
			break
		}
		cursor = doc.Next
	}
	require.Equal(t, []string{failedID, ids[4], ids[3], ids[2], ids[1], ids[0]}, got)

	// Filters.
	doc := decode[admin.ListDocument](t, api(t, h, http.MethodGet, "/admin/api/requests?queue=jobs&owner=bob"))
	require.Len(t, doc.Requests, 2)
	require.Equal(t, ids[3], doc.Requests[0].ID)
	require.Equal(t, "bob", doc.Requests[0].Owner)
	doc = decode[admin.ListDocument](t, api(t, h, http.MethodGet, "/admin/api/requests?queue=jobs&state=failed"))
	require.Len(t, doc.Requests, 1)
	require.Equal(t, failedID, doc.Requests[0].ID)
	require.Equal(t, asyncreq.StateFailed, doc.Requests[0].State)
	require.Empty(t, doc.Next)
	doc = decode[admin.ListDocument](t, api(t, h, http.MethodGet, "/admin/api/requests?queue=other"))
	require.NotNil(t, doc.Requests, "an empty page is an empty list, not null")
	require.Empty(t, doc.Requests)

	// Errors.
	for target, status := range map[string]int{
		"/admin/api/requests?queue=jobs&cursor=bogus":                                                     http.StatusBadRequest,
		"/admin/api/requests?queue=jobs&cursor=" + url.QueryEscape(asyncreq.ListCursor{ID: "x"}.String()): http.StatusBadRequest,
		"/admin/api/requests?queue=jobs&state=lost":                                                       http.StatusBadRequest,
		"/admin/api/requests?queue=jobs&limit=none":                                                       http.StatusBadRequest,
		"/admin/api/requests?queue=jobs&limit=0":                                                          http.StatusBadRequest,
		"/admin/api/requests":                                                                             http.StatusBadRequest, // two queues: which?
		"/admin/api/requests?queue=nope":                                                                  http.StatusNotFound,
		"/admin/api/nothing":                                                                              http.StatusNotFound,
	} {
		requireProblem(t, api(t, h, http.MethodGet, target), status)
	}
}

func TestAPIListWithoutLister(t *testing.T) {
	mem := newMemory()
	h := newAdmin(t, map[string]asyncreq.Backend{"plain": bare{mem, mem}})
	// One queue: the queue parameter may be left out.
	p := requireProblem(t, api(t, h, http.MethodGet, "/admin/api/requests"), http.StatusNotImplemented)
	require.Contains(t, p.Detail, "asyncreq.Lister")
	p = requireProblem(t, api(t, h, http.MethodPost, "/admin/api/purge?older_than=1h"), http.StatusNotImplemented)
	require.Contains(t, p.Detail, "asyncreq.FinishedPurger")
	// What every backend can do still works.
	id := record(t, mem, 0, failed(nil))
	require.Equal(t, http.StatusOK, api(t, h, http.MethodGet, "/admin/api/requests/"+id).Code)
	require.Equal(t, http.StatusOK, api(t, h, http.MethodPost, "/admin/api/requests/"+id+"/retry").Code)
}

func TestAPIGet(t *testing.T) {
	b := newMemory()
	id := record(t, b, time.Minute, func(r *asyncreq.Record) {
		r.Owner = "alice"
		r.IdempotencyKey = "key-1"
		r.Header = http.Header{"X-Tenant": {"t1"}}
		r.Body = []byte("the body")
		succeeded(`{"answer":42}`)(r)
		r.UpdatedAt = r.CreatedAt.Add(1500 * time.Millisecond)
		r.Callback = &asyncreq.Callback{URL: "https://hooks.example/cb", State: asyncreq.CallbackRetrying, Attempts: 2,
			LastError: "503 from the receiver", UpdatedAt: r.UpdatedAt}
	})
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": b})

	w := api(t, h, http.MethodGet, "/admin/api/requests/"+id+"?queue=jobs")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	d := decode[admin.Detail](t, w)
	require.Equal(t, id, d.ID)
	require.Equal(t, "jobs", d.Queue)
	require.Equal(t, asyncreq.StateSucceeded, d.State)
	require.Equal(t, "alice", d.Owner)
	require.Equal(t, "key-1", d.IdempotencyKey)
	require.Equal(t, []string{"t1"}, d.Header["X-Tenant"])
	require.Equal(t, &admin.Preview{Bytes: 8, Text: "the body"}, d.Body)
	require.NotNil(t, d.Result)
	require.Equal(t, http.StatusOK, d.Result.StatusCode)
	require.Equal(t, `{"answer":42}`, d.Result.Body.Text)
	require.InDelta(t, 1.5, d.Timings.Finished, 0.001)
	require.InDelta(t, 60, d.Timings.Age, 5)
	require.Equal(t, "retrying", d.CallbackState)
	require.NotNil(t, d.Callback)
	require.Equal(t, "503 from the receiver", d.Callback.LastError)
	require.False(t, d.ExpiresAt.IsZero())
	require.Equal(t, 3600.0, d.Retention)

	requireProblem(t, api(t, h, http.MethodGet, "/admin/api/requests/"+asyncreq.NewID()), http.StatusNotFound)
	requireProblem(t, api(t, h, http.MethodGet, "/admin/api/requests/not-an-id"), http.StatusNotFound)
	requireProblem(t, api(t, h, http.MethodGet, "/admin/api/requests/"+id+"?queue=other"), http.StatusNotFound)
}

func TestAPIPreviewTruncatesAndEncodes(t *testing.T) {
	b := newMemory()
	long := record(t, b, 0, func(r *asyncreq.Record) { r.Body = []byte("aé" + string(make([]byte, 10))) })
	binary := record(t, b, 0, func(r *asyncreq.Record) { r.Body = []byte{0xff, 0xfe, 0x00} })
	tok, _ := admin.NewToken(testToken)
	ah, err := admin.New(admin.Options{Queues: map[string]asyncreq.Backend{"jobs": b}, Token: tok, PreviewBytes: 2})
	require.NoError(t, err)
	h := mount(ah)

	d := decode[admin.Detail](t, api(t, h, http.MethodGet, "/admin/api/requests/"+long))
	// Two bytes would split the é: the preview stops before it.
	require.Equal(t, &admin.Preview{Bytes: 13, Text: "a", Truncated: true}, d.Body)
	d = decode[admin.Detail](t, api(t, h, http.MethodGet, "/admin/api/requests/"+binary))
	require.Equal(t, &admin.Preview{Bytes: 3, Base64: "//4=", Truncated: true}, d.Body)
}

func TestAPIRetry(t *testing.T) {
	b := newMemory()
	id := record(t, b, 0, failed(&asyncreq.Problem{Status: 500, Detail: "boom"}))
	pending := record(t, b, 0, nil)
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": b})

	w := api(t, h, http.MethodPost, "/admin/api/requests/"+id+"/retry?queue=jobs")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	d := decode[admin.Detail](t, w)
	require.Equal(t, asyncreq.StatePending, d.State)
	require.Zero(t, d.Attempts)
	require.Nil(t, d.Error)
	// The retried request is on the queue again.
	l, err := b.Dequeue(context.Background(), time.Minute)
	require.NoError(t, err)
	require.Equal(t, id, l.ID)

	requireProblem(t, api(t, h, http.MethodPost, "/admin/api/requests/"+id+"/retry"), http.StatusConflict)
	requireProblem(t, api(t, h, http.MethodPost, "/admin/api/requests/"+pending+"/retry"), http.StatusConflict)
	requireProblem(t, api(t, h, http.MethodPost, "/admin/api/requests/"+asyncreq.NewID()+"/retry"), http.StatusNotFound)
	w = api(t, h, http.MethodGet, "/admin/api/requests/"+id+"/retry")
	requireProblem(t, w, http.StatusMethodNotAllowed)
	require.Equal(t, "POST", w.Header().Get("Allow"))
}

func TestAPICancel(t *testing.T) {
	b := newMemory()
	id := record(t, b, 0, nil)
	done := record(t, b, 0, succeeded("ok"))
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": b})

	w := api(t, h, http.MethodPost, "/admin/api/requests/"+id+"/cancel")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Equal(t, asyncreq.StateCanceled, decode[admin.Detail](t, w).State)

	requireProblem(t, api(t, h, http.MethodPost, "/admin/api/requests/"+id+"/cancel"), http.StatusConflict)
	requireProblem(t, api(t, h, http.MethodPost, "/admin/api/requests/"+done+"/cancel"), http.StatusConflict)
	requireProblem(t, api(t, h, http.MethodPost, "/admin/api/requests/"+asyncreq.NewID()+"/cancel"), http.StatusNotFound)
}

func TestAPIDelete(t *testing.T) {
	b := newMemory()
	id := record(t, b, 0, failed(nil))
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": b})

	w := api(t, h, http.MethodDelete, "/admin/api/requests/"+id+"?queue=jobs")
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	_, err := b.Get(context.Background(), id)
	require.ErrorIs(t, err, asyncreq.ErrGone)

	requireProblem(t, api(t, h, http.MethodGet, "/admin/api/requests/"+id), http.StatusGone)
	requireProblem(t, api(t, h, http.MethodDelete, "/admin/api/requests/"+asyncreq.NewID()), http.StatusNotFound)
	w = api(t, h, http.MethodPut, "/admin/api/requests/"+id)
	requireProblem(t, w, http.StatusMethodNotAllowed)
	require.Equal(t, "GET, HEAD, DELETE", w.Header().Get("Allow"))
	requireProblem(t, api(t, h, http.MethodDelete, "/admin/api/queues"), http.StatusMethodNotAllowed)
}

func TestAPIPurge(t *testing.T) {
	b := newMemory()
	old := record(t, b, 3*time.Hour, failed(nil))
	oldDone := record(t, b, 2*time.Hour, succeeded("ok"))
	recent := record(t, b, time.Minute, succeeded("ok"))
	oldPending := record(t, b, 3*time.Hour, nil)
	h := newAdmin(t, map[string]asyncreq.Backend{"jobs": b})

	for _, target := range []string{
		"/admin/api/purge?queue=jobs",
		"/admin/api/purge?queue=jobs&older_than=soon",
		"/admin/api/purge?queue=jobs&older_than=-1h",
		"/admin/api/purge?queue=jobs&before=yesterday",
		"/admin/api/purge?queue=jobs&before=2026-01-01T00:00:00Z&older_than=1h",
	} {
		requireProblem(t, api(t, h, http.MethodPost, target), http.StatusBadRequest)
	}
	requireProblem(t, api(t, h, http.MethodPost, "/admin/api/purge?queue=nope&older_than=1h"), http.StatusNotFound)

	w := api(t, h, http.MethodPost, "/admin/api/purge?queue=jobs&older_than=1h")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	doc := decode[admin.PurgeDocument](t, w)
	require.Equal(t, 2, doc.Deleted)
	require.Equal(t, "jobs", doc.Queue)
	require.WithinDuration(t, time.Now().Add(-time.Hour), doc.Before, time.Minute)
	for id, gone := range map[string]bool{old: true, oldDone: true, recent: false, oldPending: false} {
		_, err := b.Get(context.Background(), id)
		if gone {
			require.ErrorIs(t, err, asyncreq.ErrGone)
		} else {
			require.NoError(t, err)
		}
	}

	w = api(t, h, http.MethodPost, "/admin/api/purge?queue=jobs&before="+url.QueryEscape(time.Now().Add(time.Second).Format(time.RFC3339)))
	require.Equal(t, 1, decode[admin.PurgeDocument](t, w).Deleted)
}

// failingStore fails every Get, as a backend whose server is down.
type failingStore struct{ asyncreq.Store }

var errDown = errors.New("dial tcp 10.0.0.1:5432: secret-host unreachable")

func (failingStore) Get(context.Context, string) (*asyncreq.Record, error) { return nil, errDown }

func TestAPIBackendFailureIsLoggedNotShown(t *testing.T) {
	mem := newMemory()
	var logs strings.Builder
	tok, err := admin.NewToken(testToken)
	require.NoError(t, err)
	ah, err := admin.New(admin.Options{Queues: map[string]asyncreq.Backend{"jobs": bare{failingStore{mem}, mem}}, Token: tok,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	h := mount(ah)

	p := requireProblem(t, api(t, h, http.MethodGet, "/admin/api/requests/"+asyncreq.NewID()), http.StatusInternalServerError)
	require.NotContains(t, p.Detail, "secret-host")
	require.Contains(t, logs.String(), "secret-host")
}
