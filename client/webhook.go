package client

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/asyncreq/asyncreq"
)

// This file is the receiving end of asyncreq's completion callbacks:
// webhooks signed per the Standard Webhooks specification, verified here
// before their event is trusted.

// Errors of webhook verification. Each error VerifyWebhook returns wraps
// ErrWebhook and one of the others.
var (
	// ErrWebhook is what every verification failure wraps.
	ErrWebhook = errors.New("client: webhook not verified")
	// ErrWebhookHeaders: the webhook-id, webhook-timestamp or
	// webhook-signature header is missing or malformed.
	ErrWebhookHeaders = errors.New("missing or malformed webhook headers")
	// ErrWebhookTimestamp: the webhook-timestamp is further from now than
	// the tolerance, so the webhook may be a replay.
	ErrWebhookTimestamp = errors.New("webhook timestamp outside the tolerance")
	// ErrWebhookSignature: no signature matches a secret.
	ErrWebhookSignature = errors.New("no webhook signature matches")
)

// DefaultWebhookTolerance is how far a webhook's timestamp may be from
// the receiver's clock, either way.
const DefaultWebhookTolerance = 5 * time.Minute

// maxWebhookBody bounds the body WebhookHandler reads.
const maxWebhookBody = 1 << 20

// WebhookVerifier verifies webhooks signed per the Standard Webhooks
// specification. The zero value verifies nothing: set Secrets.
type WebhookVerifier struct {
	// Secrets are the secrets a webhook may be signed with, each
	// "whsec_" followed by the base64 of the key. Several allow a secret
	// to be rotated: a webhook is accepted when one of its signatures
	// matches one of them.
	Secrets []string
	// Tolerance is how far the webhook-timestamp may be from Now, either
	// way. The default is DefaultWebhookTolerance.
	Tolerance time.Duration
	// Now returns the current time. The default is time.Now.
	Now func() time.Time
}

// VerifyWebhook verifies a webhook received with header and body against
// secret ("whsec_" followed by the base64 of the key): that its
// webhook-timestamp is within DefaultWebhookTolerance of now and that one
// of the signatures in webhook-signature is the HMAC-SHA256 of its id,
// timestamp and body under secret, compared in constant time. body must
// be the bytes received, before any decoding.
func VerifyWebhook(secret string, header http.Header, body []byte) error {
	return (&WebhookVerifier{Secrets: []string{secret}}).Verify(header, body)
}

// Verify verifies a webhook as VerifyWebhook does, against every secret.
func (v *WebhookVerifier) Verify(header http.Header, body []byte) error {
	id := header.Get("webhook-id")
	tsText := header.Get("webhook-timestamp")
	sigs := header.Get("webhook-signature")
	if id == "" || tsText == "" || sigs == "" {
		return fmt.Errorf("%w: %w", ErrWebhook, ErrWebhookHeaders)
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %w: webhook-timestamp %q", ErrWebhook, ErrWebhookHeaders, tsText)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultWebhookTolerance
	}
	if d := now().Unix() - ts; d > int64(tol/time.Second) || -d > int64(tol/time.Second) {
		return fmt.Errorf("%w: %w", ErrWebhook, ErrWebhookTimestamp)
	}
	if len(v.Secrets) == 0 {
		return fmt.Errorf("%w: no secret to verify with", ErrWebhook)
	}
	for _, s := range v.Secrets {
		key, err := asyncreq.ParseWebhookSecret(s)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrWebhook, err)
		}
		want := []byte(asyncreq.WebhookSignature(key, id, ts, body))
		for sig := range strings.FieldsSeq(sigs) {
			if hmac.Equal([]byte(sig), want) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: %w", ErrWebhook, ErrWebhookSignature)
}

// WebhookHandler returns an http.Handler that receives asyncreq's
// completion callbacks: it reads a POST's body (up to 1 MiB), verifies it
// with v, decodes the event and calls fn with it and its webhook-id, which
// is the same for every delivery of one event (a delivery is at least
// once: use it to ignore repeats).
//
// It answers 204 when fn returns nil, 500 when fn fails (the sender tries
// again later), 401 to a webhook that fails verification, 400 to a body
// that is no event, 413 to a larger body and 405 to other methods.
func WebhookHandler(v *WebhookVerifier, fn func(ctx context.Context, id string, ev *asyncreq.WebhookEvent) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "webhooks are POSTed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
		if err != nil {
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				http.Error(w, "webhook body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "webhook body could not be read", http.StatusBadRequest)
			return
		}
		if err := v.Verify(r.Header, body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev asyncreq.WebhookEvent
		if err := json.Unmarshal(body, &ev); err != nil || ev.Type == "" || ev.Data == nil {
			http.Error(w, "the webhook body is no asyncreq event", http.StatusBadRequest)
			return
		}
		if err := fn(r.Context(), r.Header.Get("webhook-id"), &ev); err != nil {
			http.Error(w, "the webhook could not be handled", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
