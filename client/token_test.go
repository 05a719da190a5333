package client

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func acceptedServer(t *testing.T) string {
	t.Helper()
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/jobs/0J7Q4ZK2XHD8Q6M5R3W1T9YV0C/status")
		writeJSON(w, http.StatusAccepted, `{"id":"0J7Q4ZK2XHD8Q6M5R3W1T9YV0C","status":"pending"}`)
	}))
	return srv.URL
}

func TestResumeTokenRoundTrip(t *testing.T) {
	base := acceptedServer(t)
	c := newTestClient(t, nil)
	op, err := c.Submit(t.Context(), http.MethodPost, base+"/jobs", nil, &SubmitOptions{IdempotencyKey: "k1"})
	require.NoError(t, err)
	tok, err := op.ResumeToken()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(tok, tokenPrefix))

	other := newTestClient(t, &Options{Header: http.Header{"Authorization": {"Bearer x"}}})
	op2, err := other.Resume(tok)
	require.NoError(t, err)
	assert.Equal(t, op.ID(), op2.ID())
	assert.Equal(t, op.StatusURL(), op2.StatusURL())
	assert.Equal(t, "k1", op2.IdempotencyKey())
	assert.False(t, op2.Done())
	assert.Equal(t, op.origin, op2.origin, "credentials go to the same origin after resuming")
	assert.Equal(t, "Bearer x", op2.header.Get("Authorization"), "the resuming client's headers are sent")

	tok2, err := op2.ResumeToken()
	require.NoError(t, err)
	assert.Equal(t, tok, tok2)
}

func TestResumeTokenSigned(t *testing.T) {
	base := acceptedServer(t)
	signer := newTestClient(t, &Options{TokenKey: []byte("k")})
	op, err := signer.Submit(t.Context(), http.MethodPost, base, nil, nil)
	require.NoError(t, err)
	tok, err := op.ResumeToken()
	require.NoError(t, err)

	_, err = signer.Resume(tok)
	require.NoError(t, err)

	other := newTestClient(t, &Options{TokenKey: []byte("other")})
	_, err = other.Resume(tok)
	var te *TokenError
	require.ErrorAs(t, err, &te)
	assert.Contains(t, te.Reason, "signature")

	// An unsigned client can still read a signed token.
	plain := newTestClient(t, nil)
	_, err = plain.Resume(tok)
	require.NoError(t, err)

	// A signing client refuses unsigned tokens.
	unsigned, err := mustSubmit(t, plain, base).ResumeToken()
	require.NoError(t, err)
	_, err = signer.Resume(unsigned)
	require.ErrorAs(t, err, &te)
	assert.Equal(t, "not signed", te.Reason)

	// Tampering with the payload breaks the signature.
	payload, sig, _ := strings.Cut(strings.TrimPrefix(tok, tokenPrefix), ".")
	data, err := base64.RawURLEncoding.DecodeString(payload)
	require.NoError(t, err)
	evil := strings.Replace(string(data), "127.0.0.1", "127.0.0.2", -1)
	_, err = signer.Resume(tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(evil)) + "." + sig)
	require.ErrorAs(t, err, &te)
}

func mustSubmit(t *testing.T, c *Client, url string) *Operation {
	t.Helper()
	op, err := c.Submit(t.Context(), http.MethodPost, url, nil, nil)
	require.NoError(t, err)
	return op
}

func TestResumeBadTokens(t *testing.T) {
	c := newTestClient(t, nil)
	enc := func(s string) string { return tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for name, tok := range map[string]string{
		"empty":             "",
		"no prefix":         "hello",
		"other version":     "arq9.e30",
		"not base64":        tokenPrefix + "!!!",
		"not json":          enc("nope"),
		"no urls":           enc(`{"o":"http://a:80"}`),
		"relative url":      enc(`{"s":"/jobs/1/status","o":"http://a:80"}`),
		"ftp url":           enc(`{"s":"ftp://a/x","o":"http://a:80"}`),
		"bad origin":        enc(`{"s":"http://a/x","o":"http://a"}`),
		"no origin":         enc(`{"s":"http://a/x"}`),
		"unfinished result": enc(`{"r":"http://a/x","o":"http://a:80"}`),
		"too long":          tokenPrefix + strings.Repeat("A", maxTokenLen),
	} {
		_, err := c.Resume(tok)
		var te *TokenError
		require.ErrorAs(t, err, &te, name)
		assert.NotEmpty(t, te.Error(), name)
	}
	op, err := c.Resume(enc(`{"r":"http://a/x","o":"http://a:80","d":true}`))
	require.NoError(t, err)
	assert.True(t, op.Done())
}
