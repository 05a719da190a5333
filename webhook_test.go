package asyncreq_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// The Standard Webhooks test vector (standard-webhooks/standard-webhooks,
// libraries/go/webhook_test.go, TestWebhookSign).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestWebhookSignatureVector(t *testing.T) {
	for _, secret := range []string{vectorSecret, strings.TrimPrefix(vectorSecret, "whsec_")} {
		key, err := asyncreq.ParseWebhookSecret(secret)
		require.NoError(t, err)
		assert.Equal(t, vectorSignature, asyncreq.WebhookSignature(key, vectorID, vectorTimestamp, []byte(vectorBody)))
	}
	key, err := asyncreq.ParseWebhookSecret(vectorSecret)
	require.NoError(t, err)
	assert.NotEqual(t, vectorSignature, asyncreq.WebhookSignature(key, vectorID, vectorTimestamp+1, []byte(vectorBody)))
	assert.NotEqual(t, vectorSignature, asyncreq.WebhookSignature(key, vectorID, vectorTimestamp, []byte(`{"test": 2432232315}`)))

	for _, bad := range []string{"", "whsec_", "whsec_!!!", "whsec_c2hvcnQ="} {
		_, err := asyncreq.ParseWebhookSecret(bad)
		assert.Error(t, err, bad)
	}
}

// receiver is a webhook receiver that records what it gets and answers
// with the codes of answer, then 200.
type receiver struct {
	mu     sync.Mutex
	got    []received
	answer []int
}

type received struct {
	header http.Header
	body   []byte
	at     time.Time
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.got = append(rc.got, received{header: r.Header.Clone(), body: body, at: time.Now()})
	code := http.StatusOK
	if len(rc.answer) > 0 {
		code, rc.answer = rc.answer[0], rc.answer[1:]
	}
	w.WriteHeader(code)
}

func (rc *receiver) calls() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// handlerTransport delivers requests to a handler in memory, so that a
// delivery runs on a synctest bubble's clock.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	rr := httptest.NewRecorder()
	t.h.ServeHTTP(rr, r)
	return rr.Result(), nil
}

// acceptWithCallback records and enqueues a pending request whose
// callback is url, as a handler with Callbacks would.
func acceptWithCallback(t *testing.T, b *memory.Backend, url string) string {
	t.Helper()
	id := asyncreq.NewID()
	now := time.Now()
	_, err := b.Accept(t.Context(), &asyncreq.Record{
		ID: id, State: asyncreq.StatePending, Method: http.MethodPost, URL: "/jobs",
		CreatedAt: now, UpdatedAt: now, Retention: time.Hour, TombstoneTTL: time.Hour,
		Callback: &asyncreq.Callback{URL: url, StatusURL: "/jobs/" + id + "/status", ResultURL: "/jobs/" + id},
	})
	require.NoError(t, err)
	return id
}

// callbackSettled reports whether a record's callback was delivered or
// given up.
func callbackSettled(r *asyncreq.Record) bool {
	return r.Callback != nil && (r.Callback.State == asyncreq.CallbackDelivered || r.Callback.State == asyncreq.CallbackFailed)
}

// checkSigned checks that got carries a valid Standard Webhooks signature
// under secret, and returns its event.
func checkSigned(t *testing.T, got received, secret string) asyncreq.WebhookEvent {
	t.Helper()
	key, err := asyncreq.ParseWebhookSecret(secret)
	require.NoError(t, err)
	ts, err := strconv.ParseInt(got.header.Get("webhook-timestamp"), 10, 64)
	require.NoError(t, err)
	want := asyncreq.WebhookSignature(key, got.header.Get("webhook-id"), ts, got.body)
	assert.Contains(t, strings.Fields(got.header.Get("webhook-signature")), want)
	assert.Equal(t, "application/json", got.header.Get("Content-Type"))
	var ev asyncreq.WebhookEvent
	require.NoError(t, json.Unmarshal(got.body, &ev), string(got.body))
	return ev
}

func succeedWith(body string) asyncreq.Processor {
	return asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{Body: []byte(body)}, nil
	})
}

func TestWebhookDeliveredSignedWithEveryKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		rc := &receiver{}
		const newSecret = "whsec_c2Vjb25kLXNlY3JldC1vZi0yNC1ieXRlcyE="
		startTestWorker(t, b, succeedWith("done"), &asyncreq.WorkerOptions{
			Webhooks: &asyncreq.WebhookOptions{Secrets: []string{vectorSecret, newSecret}, Transport: handlerTransport{rc}},
		})
		id := acceptWithCallback(t, b, "https://hooks.example.com/done")
		rec := awaitRecord(t, b, id, callbackSettled)

		assert.Equal(t, asyncreq.StateSucceeded, rec.State)
		assert.Equal(t, asyncreq.CallbackDelivered, rec.Callback.State)
		assert.Equal(t, 1, rec.Callback.Attempts)
		got := rc.calls()
		require.Len(t, got, 1)
		assert.Len(t, strings.Fields(got[0].header.Get("webhook-signature")), 2, "one signature per secret")
		checkSigned(t, got[0], newSecret)
		ev := checkSigned(t, got[0], vectorSecret)
		assert.Equal(t, asyncreq.EventSucceeded, ev.Type)
		assert.True(t, ev.Timestamp.Equal(rec.UpdatedAt))
		require.NotNil(t, ev.Data)
		assert.Equal(t, id, ev.Data.ID)
		assert.Equal(t, asyncreq.StateSucceeded, ev.Data.Status)
		assert.Equal(t, "/jobs/"+id+"/status", ev.Data.StatusURL)
		assert.Equal(t, "/jobs/"+id, ev.Data.ResultURL)
		assert.Nil(t, ev.Data.Callback)
		assert.Equal(t, "msg_"+id, got[0].header.Get("webhook-id"))
		synctest.Wait()
		assert.Zero(t, queueLen(b), "the entry is acked once the callback is delivered")
	})
}

func TestWebhookFailedAndCanceledEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		rc := &receiver{}
		p := asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			return nil, asyncreq.Permanent(errors.New("no"), http.StatusUnprocessableEntity)
		})
		failed := acceptWithCallback(t, b, "https://hooks.example.com/a")
		canceled := acceptWithCallback(t, b, "https://hooks.example.com/b")
		// Canceled while pending, before any worker ran: the entry it left
		// in the queue brings the callback to the worker.
		_, err := b.Update(t.Context(), canceled, func(r *asyncreq.Record) error { return r.RequestCancel("", time.Now()) })
		require.NoError(t, err)
		startTestWorker(t, b, p, &asyncreq.WorkerOptions{
			Webhooks: &asyncreq.WebhookOptions{Secrets: []string{vectorSecret}, Transport: handlerTransport{rc}},
		})
		awaitRecord(t, b, failed, callbackSettled)
		awaitRecord(t, b, canceled, callbackSettled)
		types := map[string]string{}
		for _, g := range rc.calls() {
			ev := checkSigned(t, g, vectorSecret)
			types[ev.Data.ID] = ev.Type
		}
		assert.Equal(t, map[string]string{failed: asyncreq.EventFailed, canceled: asyncreq.EventCanceled}, types)
	})
}

func TestWebhookRetriesFlakyReceiver(t *testing.T) {
	b := newMemory(t)
	rc := &receiver{answer: []int{http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusFound}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	const backoff = 20 * time.Millisecond
	startTestWorker(t, b, succeedWith("done"), &asyncreq.WorkerOptions{
		Webhooks: &asyncreq.WebhookOptions{
			Secrets: []string{vectorSecret}, AllowLoopback: true,
			BackoffMin: backoff, BackoffMax: 4 * backoff, MaxAttempts: 5,
		},
	})
	id := acceptWithCallback(t, b, srv.URL+"/hook")

	var rec *asyncreq.Record
	require.Eventually(t, func() bool {
		r, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		rec = r
		return callbackSettled(r)
	}, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, asyncreq.CallbackDelivered, rec.Callback.State)
	assert.Equal(t, 4, rec.Callback.Attempts, "503, 500 and a redirect (not followed) were retried")
	got := rc.calls()
	require.Len(t, got, 4)
	for i, g := range got {
		checkSigned(t, g, vectorSecret)
		assert.Equal(t, "msg_"+id, g.header.Get("webhook-id"), "every attempt has the event's id")
		if i > 0 {
			assert.GreaterOrEqual(t, g.at.Sub(got[i-1].at), backoff, "attempt %d came before the backoff", i+1)
		}
	}
	assert.Eventually(t, func() bool { return queueLen(b) == 0 }, 5*time.Second, 5*time.Millisecond)
}

func TestWebhookGivenUpAfterMaxAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		rc := &receiver{answer: []int{500, 500, 500, 500, 500}}
		startTestWorker(t, b, succeedWith("done"), &asyncreq.WorkerOptions{
			Webhooks: &asyncreq.WebhookOptions{Secrets: []string{vectorSecret}, Transport: handlerTransport{rc}, MaxAttempts: 3},
		})
		id := acceptWithCallback(t, b, "https://hooks.example.com/x")
		start := time.Now()
		rec := awaitRecord(t, b, id, callbackSettled)
		assert.Equal(t, asyncreq.CallbackFailed, rec.Callback.State)
		assert.Equal(t, 3, rec.Callback.Attempts)
		assert.Contains(t, rec.Callback.LastError, "500")
		assert.Equal(t, asyncreq.StateSucceeded, rec.State, "the request's own outcome stands")
		assert.GreaterOrEqual(t, time.Since(start), 2*5*time.Second, "two backoffs of at least BackoffMin (5s)")
		synctest.Wait()
		assert.Zero(t, queueLen(b))
		assert.Len(t, rc.calls(), 3)
	})
}

// killable is a Store and Queue that stops answering, as a killed
// process does, once it has stored a final record.
type killable struct {
	*memory.Backend
	dead atomic.Bool
}

var errKilled = errors.New("the process was killed")

func (k *killable) Update(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	if k.dead.Load() {
		return nil, errKilled
	}
	rec, err := k.Backend.Update(ctx, id, fn)
	if err == nil && rec.State.Final() {
		k.dead.Store(true)
	}
	return rec, err
}

func (k *killable) Get(ctx context.Context, id string) (*asyncreq.Record, error) {
	if k.dead.Load() {
		return nil, errKilled
	}
	return k.Backend.Get(ctx, id)
}

func (k *killable) Dequeue(ctx context.Context, ttl time.Duration) (*asyncreq.Lease, error) {
	if k.dead.Load() {
		return nil, errKilled
	}
	return k.Backend.Dequeue(ctx, ttl)
}

func (k *killable) DequeueBatch(ctx context.Context, limit int, ttl time.Duration) ([]*asyncreq.Lease, error) {
	if k.dead.Load() {
		return nil, errKilled
	}
	return k.Backend.DequeueBatch(ctx, limit, ttl)
}

func (k *killable) Extend(ctx context.Context, l *asyncreq.Lease, ttl time.Duration) error {
	if k.dead.Load() {
		return errKilled
	}
	return k.Backend.Extend(ctx, l, ttl)
}

func (k *killable) Ack(ctx context.Context, l *asyncreq.Lease) error {
	if k.dead.Load() {
		return errKilled
	}
	return k.Backend.Ack(ctx, l)
}

func (k *killable) Nack(ctx context.Context, l *asyncreq.Lease, delay time.Duration) error {
	if k.dead.Load() {
		return errKilled
	}
	return k.Backend.Nack(ctx, l, delay)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestWebhookDeliveredAfterCrashBetweenOutcomeAndDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		rc := &receiver{}
		hooks := &asyncreq.WebhookOptions{Secrets: []string{vectorSecret}, Transport: handlerTransport{rc}}
		const lease = 30 * time.Second

		k := &killable{Backend: b}
		// The killed process sends nothing either.
		dead := &asyncreq.WebhookOptions{Secrets: hooks.Secrets, Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
			return nil, errKilled
		})}
		first, err := asyncreq.NewWorker(k, succeedWith("done"), &asyncreq.WorkerOptions{Webhooks: dead, LeaseDuration: lease})
		require.NoError(t, err)
		require.NoError(t, first.Start(t.Context()))
		id := acceptWithCallback(t, b, "https://hooks.example.com/x")
		awaitState(t, b, id, asyncreq.StateSucceeded)
		synctest.Wait()
		require.NoError(t, first.Stop(t.Context()))
		require.True(t, k.dead.Load())

		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		assert.Equal(t, asyncreq.CallbackPending, rec.Callback.State, "the outcome is recorded, the callback not yet sent")
		assert.Equal(t, 1, queueLen(b), "the request keeps its queue entry")

		startTestWorker(t, b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			t.Error("a finished request ran again")
			return nil, nil
		}), &asyncreq.WorkerOptions{Webhooks: hooks, LeaseDuration: lease})
		rec = awaitRecord(t, b, id, callbackSettled)
		assert.Equal(t, asyncreq.CallbackDelivered, rec.Callback.State)
		assert.Equal(t, 1, rec.Callback.Attempts)
		got := rc.calls()
		require.Len(t, got, 1)
		ev := checkSigned(t, got[0], vectorSecret)
		assert.Equal(t, asyncreq.EventSucceeded, ev.Type)
		synctest.Wait()
		assert.Zero(t, queueLen(b))
	})
}

func TestWebhookWithoutWorkerConfigurationFailsCallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		startTestWorker(t, b, succeedWith("done"), nil)
		id := acceptWithCallback(t, b, "https://hooks.example.com/x")
		rec := awaitRecord(t, b, id, callbackSettled)
		assert.Equal(t, asyncreq.CallbackFailed, rec.Callback.State)
		assert.Contains(t, rec.Callback.LastError, "no webhook configuration")
		synctest.Wait()
		assert.Zero(t, queueLen(b))
	})
}

func TestWebhookRefusesPrivateAddresses(t *testing.T) {
	b := newMemory(t)
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "http://"), ":")
	startTestWorker(t, b, succeedWith("done"), &asyncreq.WorkerOptions{
		Webhooks: &asyncreq.WebhookOptions{Secrets: []string{vectorSecret}, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond},
	})
	for _, target := range []string{
		srv.URL,                                    // 127.0.0.1, where a receiver listens
		"http://localhost:" + port + "/",           // a name resolving to loopback
		"http://10.1.2.3:80/",                      // private
		"http://192.168.0.1/",                      // private
		"http://169.254.169.254/latest/meta-data/", // cloud metadata
		"http://[::1]:" + port + "/",               // IPv6 loopback
		"http://0.0.0.0:" + port + "/",             // unspecified
	} {
		t.Run(target, func(t *testing.T) {
			id := acceptWithCallback(t, b, target)
			var rec *asyncreq.Record
			require.Eventually(t, func() bool {
				r, err := b.Get(t.Context(), id)
				require.NoError(t, err)
				rec = r
				return callbackSettled(r)
			}, 10*time.Second, 5*time.Millisecond)
			assert.Equal(t, asyncreq.CallbackFailed, rec.Callback.State)
			assert.Equal(t, 1, rec.Callback.Attempts, "a refused address is not retried")
			assert.Contains(t, rec.Callback.LastError, "not a public address")
		})
	}
	assert.Empty(t, rc.calls(), "no webhook reached the loopback receiver")
}

func TestWebhookAllowLoopbackStillRefusesMetadata(t *testing.T) {
	b := newMemory(t)
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	startTestWorker(t, b, succeedWith("done"), &asyncreq.WorkerOptions{
		Webhooks: &asyncreq.WebhookOptions{Secrets: []string{vectorSecret}, AllowLoopback: true},
	})
	ok := acceptWithCallback(t, b, srv.URL+"/hook")
	meta := acceptWithCallback(t, b, "http://169.254.169.254/latest/meta-data/")
	private := acceptWithCallback(t, b, "http://10.0.0.1/")
	for id, want := range map[string]asyncreq.CallbackState{ok: asyncreq.CallbackDelivered, meta: asyncreq.CallbackFailed, private: asyncreq.CallbackFailed} {
		require.Eventually(t, func() bool {
			r, err := b.Get(t.Context(), id)
			require.NoError(t, err)
			return callbackSettled(r) && r.Callback.State == want
		}, 10*time.Second, 5*time.Millisecond, id)
	}
	assert.Len(t, rc.calls(), 1)
}

func TestSubmitCallbackURL(t *testing.T) {
	b := newMemory(t)
	off := newTestHandler(t, b, nil)
	rr := serveReq(t, off, http.MethodPost, "/", "x", "Callback-URL", "https://hooks.example.com/done")
	checkProblem(t, rr, http.StatusBadRequest)
	assert.Contains(t, rr.Body.String(), "does not send callbacks")
	records, _ := b.Len()
	assert.Zero(t, records, "a refused callback stores nothing")

	h := newTestHandler(t, b, &asyncreq.HandlerOptions{Callbacks: &asyncreq.CallbackPolicy{
		AllowedHosts: []string{"hooks.example.com", "*.example.net"},
	}})
	id := postJob(t, h, "x", "Callback-URL", "https://hooks.example.com/done?x=1")
	rec, err := b.Get(t.Context(), id)
	require.NoError(t, err)
	require.NotNil(t, rec.Callback)
	assert.Equal(t, "https://hooks.example.com/done?x=1", rec.Callback.URL)
	assert.Equal(t, "/"+id+"/status", rec.Callback.StatusURL)
	assert.Equal(t, "/"+id, rec.Callback.ResultURL)
	doc := readDoc(t, serveReq(t, h, http.MethodGet, "/"+id+"/status", ""))
	assert.Equal(t, &asyncreq.CallbackStatus{State: "waiting"}, doc.Callback)

	postJob(t, h, "x", "Callback-URL", "https://a.b.example.net/")
	for _, bad := range []string{
		"https://evil.example.org/",
		"https://example.net/",
		"ftp://hooks.example.com/",
		"/relative",
		"https://user:pw@hooks.example.com/",
		"https://hooks.example.com/#frag",
		"https://hooks.example.com/" + strings.Repeat("a", 3000),
	} {
		rr := serveReq(t, h, http.MethodPost, "/", "x", "Callback-URL", bad)
		checkProblem(t, rr, http.StatusBadRequest)
	}
	rr = serveReq(t, h, http.MethodPost, "/", "x", "Callback-URL", "https://hooks.example.com/a", "Callback-URL", "https://hooks.example.com/b")
	checkProblem(t, rr, http.StatusBadRequest)

	fn := newTestHandler(t, b, &asyncreq.HandlerOptions{Callbacks: &asyncreq.CallbackPolicy{
		Allow: func(u *url.URL) error {
			if u.Scheme != "https" {
				return errors.New("callbacks must use https")
			}
			return nil
		},
	}})
	postJob(t, fn, "x", "Callback-URL", "https://anything.example/")
	rr = serveReq(t, fn, http.MethodPost, "/", "x", "Callback-URL", "http://anything.example/")
	checkProblem(t, rr, http.StatusBadRequest)
	assert.Contains(t, rr.Body.String(), "callbacks must use https")
}

func TestStatusShowsCallbackDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		rc := &receiver{answer: []int{500}}
		h := newTestHandler(t, b, &asyncreq.HandlerOptions{Callbacks: &asyncreq.CallbackPolicy{AllowedHosts: []string{"hooks.example.com"}}})
		startTestWorker(t, b, succeedWith("done"), &asyncreq.WorkerOptions{
			Webhooks: &asyncreq.WebhookOptions{Secrets: []string{vectorSecret}, Transport: handlerTransport{rc}},
		})
		id := postJob(t, h, "x", "Callback-URL", "https://hooks.example.com/done")
		awaitRecord(t, b, id, func(r *asyncreq.Record) bool { return r.Callback.State == asyncreq.CallbackRetrying })
		doc := readDoc(t, serveReq(t, h, http.MethodGet, "/"+id+"/status", ""))
		assert.Equal(t, asyncreq.StateSucceeded, doc.Status, "polling works while the callback is retried")
		assert.Equal(t, &asyncreq.CallbackStatus{State: "retrying", Attempts: 1}, doc.Callback)
		awaitRecord(t, b, id, callbackSettled)
		doc = readDoc(t, serveReq(t, h, http.MethodGet, "/"+id+"/status", ""))
		assert.Equal(t, &asyncreq.CallbackStatus{State: "delivered", Attempts: 2}, doc.Callback)
		got := rc.calls()
		require.Len(t, got, 2)
		ev := checkSigned(t, got[1], vectorSecret)
		assert.Equal(t, "/"+id+"/status", ev.Data.StatusURL)
	})
}

func TestNewWorkerWebhookValidation(t *testing.T) {
	b := newMemory(t)
	for name, o := range map[string]*asyncreq.WorkerOptions{
		"no secret":        {Webhooks: &asyncreq.WebhookOptions{}},
		"malformed secret": {Webhooks: &asyncreq.WebhookOptions{Secrets: []string{"whsec_not base64"}}},
		"short key":        {Webhooks: &asyncreq.WebhookOptions{Secrets: []string{"whsec_c2hvcnQ="}}},
		"negative timeout": {Webhooks: &asyncreq.WebhookOptions{Secrets: []string{vectorSecret}, Timeout: -time.Second}},
		"backoff inverted": {Webhooks: &asyncreq.WebhookOptions{Secrets: []string{vectorSecret}, BackoffMin: time.Minute, BackoffMax: time.Second}},
		"timeout >= lease": {LeaseDuration: 5 * time.Second, Webhooks: &asyncreq.WebhookOptions{Secrets: []string{vectorSecret}}},
	} {
		_, err := asyncreq.NewWorker(b, succeedWith("x"), o)
		assert.Error(t, err, name)
	}
	_, err := asyncreq.NewWorker(b, succeedWith("x"), &asyncreq.WorkerOptions{Webhooks: &asyncreq.WebhookOptions{Secrets: []string{vectorSecret}}})
	assert.NoError(t, err)
}

func TestSubmitCallbackURLIsPartOfAnIdempotentRequest(t *testing.T) {
	b := newMemory(t)
	h := newTestHandler(t, b, &asyncreq.HandlerOptions{Callbacks: &asyncreq.CallbackPolicy{AllowedHosts: []string{"hooks.example.com"}}})
	id := postJob(t, h, "x", "Idempotency-Key", "k1", "Callback-URL", "https://hooks.example.com/a")
	assert.Equal(t, id, postJob(t, h, "x", "Idempotency-Key", "k1", "Callback-URL", "https://hooks.example.com/a"))
	rr := serveReq(t, h, http.MethodPost, "/", "x", "Idempotency-Key", "k1", "Callback-URL", "https://hooks.example.com/b")
	checkProblem(t, rr, http.StatusUnprocessableEntity)
	rr = serveReq(t, h, http.MethodPost, "/", "x", "Idempotency-Key", "k1")
	checkProblem(t, rr, http.StatusUnprocessableEntity)
}
