package asyncreq_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// credentialHeaders are request headers that carry a secret under a name
// other than Authorization or Cookie.
var credentialHeaders = []string{
	"X-Api-Key", "Api-Key", "X-Auth-Token", "X-Amz-Security-Token", "X-Csrf-Token", "X-Xsrf-Token",
	"Cf-Access-Client-Secret", "Stripe-Signature", "X-Hub-Signature-256", "Ocp-Apim-Subscription-Key",
	"X-Vault-Token", "Private-Token", "X-Session-Id", "X-Goog-Iap-Jwt-Assertion", "X-Shopify-Hmac-Sha256",
	"X-Client-Password", "Proxy-Authorization", "X_api_key",
}

// NewAsync's default keeps the end-to-end headers a handler needs and
// stores no credential: neither Authorization and Cookie nor a custom one
// like X-Api-Key. The wrapped handler learns the caller from
// OwnerFromContext instead.
func TestAsyncStoresNoCredentialsByDefault(t *testing.T) {
	b := newMemory(t)
	type seen struct {
		header http.Header
		owner  string
		ok     bool
	}
	seenc := make(chan seen, 1)
	a, err := asyncreq.NewAsync(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		owner, ok := asyncreq.OwnerFromContext(r.Context())
		seenc <- seen{header: r.Header.Clone(), owner: owner, ok: ok}
	}), b, &asyncreq.AsyncOptions{Handler: asyncreq.HandlerOptions{
		Owner: func(r *http.Request) (string, error) {
			if r.Header.Get("X-Api-Key") != "sk_live_123" {
				return "", errors.New("unknown key")
			}
			return "acct_42", nil
		},
	}})
	require.NoError(t, err)
	require.NoError(t, a.Start(t.Context()))
	t.Cleanup(func() { require.NoError(t, a.Stop(context.Background())) })

	hdr := []string{"X-Api-Key", "sk_live_123", "Authorization", "Bearer secret", "Cookie", "sid=secret",
		"X-Trace", "t1", "Accept-Language", "de", "X-Tenant", "north", "Prefer", "wait=10"}
	for _, name := range credentialHeaders[1:] {
		hdr = append(hdr, name, "secret-"+name)
	}
	rr := serveReq(t, a, http.MethodPost, "/", "x", hdr...)
	require.Equal(t, http.StatusOK, rr.Code, rr.Body.String())
	id := strings.TrimPrefix(rr.Header().Get("Content-Location"), "/")
	require.True(t, asyncreq.ValidID(id), rr.Header())

	rec, err := b.Get(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, http.Header{"X-Trace": {"t1"}, "Accept-Language": {"de"}, "X-Tenant": {"north"}}, rec.Header,
		"only the non-credential headers are stored")
	assert.Equal(t, "acct_42", rec.Owner)

	s := <-seenc
	s.header.Del("Content-Type")
	assert.Equal(t, rec.Header, s.header, "the handler sees what was stored")
	assert.True(t, s.ok)
	assert.Equal(t, "acct_42", s.owner, "the handler knows its caller without the credential")
}

// OwnerFromContext reports no owner outside a wrapped handler, and for a
// request recorded without one.
func TestOwnerFromContext(t *testing.T) {
	owner, ok := asyncreq.OwnerFromContext(context.Background())
	assert.False(t, ok)
	assert.Empty(t, owner)

	var got []string
	p := asyncreq.HandlerProcessor(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		owner, ok := asyncreq.OwnerFromContext(r.Context())
		if ok {
			got = append(got, owner)
		} else {
			got = append(got, "<none>")
		}
	}))
	_, err := p.Process(t.Context(), &asyncreq.Request{URL: "/", Owner: "bob"})
	require.NoError(t, err)
	_, err = p.Process(t.Context(), &asyncreq.Request{URL: "/"})
	require.NoError(t, err)
	assert.Equal(t, []string{"bob", "<none>"}, got)
}

// A wrapped handler's Set-Cookie is a credential: unless ReplaySetCookie
// asks for it to be replayed, it is not even stored with the result.
func TestAsyncStoresNoSetCookieByDefault(t *testing.T) {
	for _, replay := range []bool{false, true} {
		b := newMemory(t)
		a, err := asyncreq.NewAsync(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "session", Value: "s3cr3t", HttpOnly: true})
			w.Header().Set("X-Report", "1")
			_, _ = w.Write([]byte("done"))
		}), b, &asyncreq.AsyncOptions{Handler: asyncreq.HandlerOptions{ReplaySetCookie: replay}})
		require.NoError(t, err)
		require.NoError(t, a.Start(t.Context()))
		rr := serveReq(t, a, http.MethodPost, "/", "x", "Prefer", "wait=10")
		require.NoError(t, a.Stop(context.Background()))
		require.Equal(t, http.StatusOK, rr.Code, rr.Body.String())
		id := strings.TrimPrefix(rr.Header().Get("Content-Location"), "/")

		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err)
		require.NotNil(t, rec.Result)
		assert.Equal(t, "1", rec.Result.Header.Get("X-Report"))
		if replay {
			assert.Equal(t, []string{"session=s3cr3t; HttpOnly"}, rec.Result.Header["Set-Cookie"])
			assert.Equal(t, []string{"session=s3cr3t; HttpOnly"}, rr.Header()["Set-Cookie"])
		} else {
			assert.Empty(t, rec.Result.Header["Set-Cookie"], "the cookie was stored")
		}
	}
}
