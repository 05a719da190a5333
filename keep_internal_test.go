package asyncreq

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

// "*" keeps the headers a handler works with and leaves out every header
// named like a credential.
func TestKeptByStarLeavesOutCredentials(t *testing.T) {
	for _, k := range []string{
		"Authorization", "Proxy-Authorization", "Cookie",
		"X-Api-Key", "Api-Key", "Apikey", "X-Apikey", "Ocp-Apim-Subscription-Key", "X_api_key",
		"X-Auth-Token", "X-Access-Token", "X-Amz-Security-Token", "X-Vault-Token", "Private-Token",
		"X-Csrf-Token", "X-Xsrf-Token", "Csrf-Token",
		"Cf-Access-Client-Secret", "X-Client-Secret",
		"Stripe-Signature", "X-Hub-Signature-256", "X-Slack-Signature", "X-Sig",
		"X-Shopify-Hmac-Sha256", "X-Goog-Iap-Jwt-Assertion", "X-Session-Id", "X-Sid",
		"X-Password", "X-Db-Passwd", "X-Pass", "X-Otp", "Dpop", "X-Bearer", "X-Credentials",
		"X-Auth-User", "X-Forwarded-Cookie",
	} {
		assert.False(t, keptByStar(http.CanonicalHeaderKey(k), nil), k)
	}
	for _, k := range []string{
		"Accept", "Accept-Language", "Accept-Encoding", "User-Agent", "X-Trace", "Traceparent", "Tracestate",
		"Baggage", "X-Request-Id", "X-Correlation-Id", "X-Forwarded-For", "X-Forwarded-Proto", "Forwarded",
		"Origin", "Referer", "If-Match", "X-Tenant", "Content-Language", "Cache-Control", "Sec-Fetch-Site",
	} {
		assert.True(t, keptByStar(http.CanonicalHeaderKey(k), nil), k)
	}
	// A name "*" leaves out is still kept when listed.
	h, err := NewHandler(stubBackend{}, &HandlerOptions{KeepHeaders: []string{"*", "X-Api-Key"}})
	assert.NoError(t, err)
	assert.Equal(t, http.Header{"X-Api-Key": {"k"}, "Accept": {"a"}},
		h.keeper.pick(http.Header{"X-Api-Key": {"k"}, "Accept": {"a"}, "X-Auth-Token": {"t"}}))

	// It runs on every submit: no allocation.
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		keptByStar("Ocp-Apim-Subscription-Key", nil)
		keptByStar("X-Correlation-Id", nil)
	}))
}
