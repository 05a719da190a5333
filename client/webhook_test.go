package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

// The Standard Webhooks test vector (standard-webhooks/standard-webhooks,
// libraries/go/webhook_test.go).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	vectorWrongSig  = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
)

func vectorHeader(sig string) http.Header {
	return http.Header{
		"Webhook-Id":        {vectorID},
		"Webhook-Timestamp": {strconv.Itoa(vectorTimestamp)},
		"Webhook-Signature": {sig},
	}
}

func TestVerifyWebhookVector(t *testing.T) {
	at := func(d time.Duration) *WebhookVerifier {
		return &WebhookVerifier{Secrets: []string{vectorSecret}, Now: func() time.Time { return time.Unix(vectorTimestamp, 0).Add(d) }}
	}
	body := []byte(vectorBody)
	assert.NoError(t, at(0).Verify(vectorHeader(vectorSignature), body))
	assert.NoError(t, at(DefaultWebhookTolerance).Verify(vectorHeader(vectorSignature), body))
	assert.NoError(t, at(-DefaultWebhookTolerance).Verify(vectorHeader(vectorSignature), body))
	assert.NoError(t, at(0).Verify(vectorHeader(strings.Join([]string{vectorWrongSig, "v2," + vectorSignature[3:], vectorSignature, vectorWrongSig}, " ")), body),
		"one matching signature among several")
	noPrefix := &WebhookVerifier{Secrets: []string{strings.TrimPrefix(vectorSecret, "whsec_")}, Now: at(0).Now}
	assert.NoError(t, noPrefix.Verify(vectorHeader(vectorSignature), body))
	rotated := &WebhookVerifier{Secrets: []string{"whsec_c2Vjb25kLXNlY3JldC1vZi0yNC1ieXRlcyE=", vectorSecret}, Now: at(0).Now}
	assert.NoError(t, rotated.Verify(vectorHeader(vectorSignature), body))

	for name, c := range map[string]struct {
		v      *WebhookVerifier
		header http.Header
		body   string
		want   error
	}{
		"wrong signature":  {at(0), vectorHeader(vectorWrongSig), vectorBody, ErrWebhookSignature},
		"v2 scheme":        {at(0), vectorHeader("v2," + vectorSignature[3:]), vectorBody, ErrWebhookSignature},
		"changed body":     {at(0), vectorHeader(vectorSignature), `{"test": 2432232315}`, ErrWebhookSignature},
		"too old":          {at(DefaultWebhookTolerance + time.Second), vectorHeader(vectorSignature), vectorBody, ErrWebhookTimestamp},
		"too new":          {at(-DefaultWebhookTolerance - time.Second), vectorHeader(vectorSignature), vectorBody, ErrWebhookTimestamp},
		"other secret":     {&WebhookVerifier{Secrets: []string{"whsec_c2Vjb25kLXNlY3JldC1vZi0yNC1ieXRlcyE="}, Now: at(0).Now}, vectorHeader(vectorSignature), vectorBody, ErrWebhookSignature},
		"no id":            {at(0), http.Header{"Webhook-Timestamp": {"1614265330"}, "Webhook-Signature": {vectorSignature}}, vectorBody, ErrWebhookHeaders},
		"no timestamp":     {at(0), http.Header{"Webhook-Id": {vectorID}, "Webhook-Signature": {vectorSignature}}, vectorBody, ErrWebhookHeaders},
		"no signature":     {at(0), http.Header{"Webhook-Id": {vectorID}, "Webhook-Timestamp": {"1614265330"}}, vectorBody, ErrWebhookHeaders},
		"bad timestamp":    {at(0), http.Header{"Webhook-Id": {vectorID}, "Webhook-Timestamp": {"soon"}, "Webhook-Signature": {vectorSignature}}, vectorBody, ErrWebhookHeaders},
		"malformed secret": {&WebhookVerifier{Secrets: []string{"whsec_%%%"}, Now: at(0).Now}, vectorHeader(vectorSignature), vectorBody, ErrWebhook},
	} {
		err := c.v.Verify(c.header, []byte(c.body))
		assert.ErrorIs(t, err, c.want, name)
		assert.ErrorIs(t, err, ErrWebhook, name)
	}

	// VerifyWebhook checks against the clock: the vector is years old.
	assert.ErrorIs(t, VerifyWebhook(vectorSecret, vectorHeader(vectorSignature), body), ErrWebhookTimestamp)
	key, err := asyncreq.ParseWebhookSecret(vectorSecret)
	require.NoError(t, err)
	now := time.Now().Unix()
	h := vectorHeader(asyncreq.WebhookSignature(key, vectorID, now, body))
	h.Set("Webhook-Timestamp", strconv.FormatInt(now, 10))
	assert.NoError(t, VerifyWebhook(vectorSecret, h, body))
}

func TestWebhookHandlerReceivesCompletion(t *testing.T) {
	b := memory.New(nil)
	defer b.Close()
	type got struct {
		id string
		ev *asyncreq.WebhookEvent
	}
	var mu sync.Mutex
	var events []got
	fail := true
	recv := httptest.NewServer(WebhookHandler(&WebhookVerifier{Secrets: []string{vectorSecret}},
		func(_ context.Context, id string, ev *asyncreq.WebhookEvent) error {
			mu.Lock()
			defer mu.Unlock()
			if fail {
				fail = false
				return errors.New("database down")
			}
			events = append(events, got{id, ev})
			return nil
		}))
	defer recv.Close()

	h, err := asyncreq.NewHandler(b, &asyncreq.HandlerOptions{Callbacks: &asyncreq.CallbackPolicy{AllowedHosts: []string{"127.0.0.1"}}})
	require.NoError(t, err)
	srv := httptest.NewServer(http.StripPrefix("/jobs", h))
	defer srv.Close()
	w, err := asyncreq.NewWorker(b, asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{Body: []byte("ok")}, nil
	}), &asyncreq.WorkerOptions{Webhooks: &asyncreq.WebhookOptions{
		Secrets: []string{vectorSecret}, AllowLoopback: true, BackoffMin: 10 * time.Millisecond, BackoffMax: 10 * time.Millisecond,
	}})
	require.NoError(t, err)
	require.NoError(t, w.Start(t.Context()))
	defer func() { assert.NoError(t, w.Stop(context.Background())) }()

	req, err := http.NewRequest(http.MethodPost, srv.URL+"/jobs", strings.NewReader("x"))
	require.NoError(t, err)
	req.Header.Set("Callback-URL", recv.URL+"/hook")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) == 1
	}, 10*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, asyncreq.EventSucceeded, events[0].ev.Type)
	assert.Equal(t, "msg_"+events[0].ev.Data.ID, events[0].id)
	assert.Equal(t, "/jobs/"+events[0].ev.Data.ID, events[0].ev.Data.ResultURL)
}

func TestWebhookHandlerRefusals(t *testing.T) {
	called := false
	h := WebhookHandler(&WebhookVerifier{Secrets: []string{vectorSecret}}, func(context.Context, string, *asyncreq.WebhookEvent) error {
		called = true
		return nil
	})
	key, err := asyncreq.ParseWebhookSecret(vectorSecret)
	require.NoError(t, err)
	signed := func(body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		now := time.Now().Unix()
		r.Header.Set("webhook-id", "msg_1")
		r.Header.Set("webhook-timestamp", strconv.FormatInt(now, 10))
		r.Header.Set("webhook-signature", asyncreq.WebhookSignature(key, "msg_1", now, []byte(body)))
		return r
	}
	for name, c := range map[string]struct {
		r    *http.Request
		code int
	}{
		"get":       {httptest.NewRequest(http.MethodGet, "/", nil), http.StatusMethodNotAllowed},
		"unsigned":  {httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{}`)), http.StatusUnauthorized},
		"not event": {signed(`{"test": 1}`), http.StatusBadRequest},
		"too large": {signed(strings.Repeat(" ", maxWebhookBody+1)), http.StatusRequestEntityTooLarge},
		"tampered": {func() *http.Request {
			r := signed(`{"type":"x","data":{}}`)
			r.Header.Set("webhook-id", "msg_2")
			return r
		}(), http.StatusUnauthorized},
	} {
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, c.r)
		assert.Equal(t, c.code, rr.Code, name)
	}
	assert.False(t, called)
}
