package asyncreq

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// This file is the delivery of completion callbacks as webhooks signed
// per the Standard Webhooks specification (https://www.standardwebhooks.com):
// the event, its signature, the SSRF-safe HTTP client that sends it, and
// the Worker's delivery with retries.
//
// A delivery is durable without anything a Store or Queue must add: the
// transition that makes a record final also makes its callback pending
// (in the same Store write), and the Worker keeps the request's queue
// entry until the callback is settled. It acks the entry once the
// receiver answered 2xx or the attempts are used up, and nacks it with a
// backoff after a failed attempt. A worker that dies after recording the
// outcome and before the delivery leaves the entry to run out; the next
// worker to take it finds the record final with its callback due, and
// delivers it. The delivery is therefore at least once: a receiver
// deduplicates by the webhook-id header, which is the same for every
// attempt of an event.

// WebhookOptions configures the delivery of completion callbacks (see
// HandlerOptions.Callbacks). A zero field means that field's default.
type WebhookOptions struct {
	// Secrets sign every webhook, each one written "whsec_" followed by
	// the base64 of the key (the "whsec_" prefix may be left out). Each
	// secret adds one signature to the webhook-signature header, so that
	// a secret can be rotated: sign with the old and the new one until
	// every receiver knows the new one. At least one is required.
	Secrets []string

	// Timeout bounds each delivery attempt, from dialing to the end of
	// the answer. It must be shorter than WorkerOptions.LeaseDuration: the
	// worker holds the request's lease while it delivers. The default is
	// 10s.
	Timeout time.Duration

	// MaxAttempts is the number of delivery attempts before a callback is
	// given up (its state becomes failed). The default is 8.
	MaxAttempts int

	// BackoffMin and BackoffMax bound the wait between attempts: after the
	// n-th failed one it is drawn uniformly from [BackoffMin,
	// min(BackoffMax, BackoffMin·2^n)]. The defaults are 5s and 1h.
	BackoffMin, BackoffMax time.Duration

	// AllowLoopback and AllowPrivate let webhooks reach loopback addresses
	// (127.0.0.0/8, ::1) and private, link-local, shared (100.64.0.0/10)
	// and unique local addresses. By default they are refused after DNS
	// resolution, as are the unspecified, multicast and broadcast
	// addresses and the cloud metadata endpoints whatever these say, so
	// that a client cannot make the server call its own network.
	AllowLoopback, AllowPrivate bool

	// Transport, if set, sends the webhooks in place of the default
	// transport, which dials with the address checks above. A Transport
	// given here is used as it is: the checks are then its own business.
	// Redirects are never followed either way.
	Transport http.RoundTripper
}

// The defaults of WebhookOptions.
const (
	defaultWebhookTimeout     = 10 * time.Second
	defaultWebhookAttempts    = 8
	defaultWebhookBackoffMin  = 5 * time.Second
	defaultWebhookBackoffMax  = time.Hour
	webhookUserAgent          = "asyncreq-webhook/1"
	maxWebhookResponseDrained = 4 << 10
)

// webhooks is the checked form of WebhookOptions a Worker delivers with.
type webhooks struct {
	opts   WebhookOptions
	keys   [][]byte
	client *http.Client
}

// newWebhooks checks o and builds its client.
func newWebhooks(o *WebhookOptions) (*webhooks, error) {
	c := *o
	if len(c.Secrets) == 0 {
		return nil, errors.New("asyncreq: WebhookOptions.Secrets must name at least one secret")
	}
	wh := &webhooks{}
	for i, s := range c.Secrets {
		k, err := ParseWebhookSecret(s)
		if err != nil {
			return nil, fmt.Errorf("asyncreq: WebhookOptions.Secrets[%d]: %w", i, err)
		}
		wh.keys = append(wh.keys, k)
	}
	switch {
	case c.Timeout < 0, c.BackoffMin < 0, c.BackoffMax < 0, c.MaxAttempts < 0:
		return nil, errors.New("asyncreq: WebhookOptions durations and MaxAttempts must not be negative")
	}
	if c.Timeout == 0 {
		c.Timeout = defaultWebhookTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = defaultWebhookAttempts
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = defaultWebhookBackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = max(defaultWebhookBackoffMax, c.BackoffMin)
	}
	if c.BackoffMax < c.BackoffMin {
		return nil, fmt.Errorf("asyncreq: WebhookOptions.BackoffMax (%s) must not be less than BackoffMin (%s)", c.BackoffMax, c.BackoffMin)
	}
	rt := c.Transport
	if rt == nil {
		rt = safeTransport(addressPolicy{loopback: c.AllowLoopback, private: c.AllowPrivate})
	}
	wh.client = &http.Client{
		Transport: rt,
		Timeout:   c.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	wh.opts = c
	return wh, nil
}

// ParseWebhookSecret returns the key of a Standard Webhooks secret:
// "whsec_" followed by the standard base64 of the key, or the base64
// alone. The key must be 24 to 64 bytes long.
func ParseWebhookSecret(secret string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	switch {
	case err != nil:
		return nil, errors.New("a webhook secret must be whsec_ followed by base64")
	case len(k) < 24 || len(k) > 64:
		return nil, fmt.Errorf("a webhook secret's key must be 24 to 64 bytes, got %d", len(k))
	}
	return k, nil
}

// WebhookSignature returns the Standard Webhooks signature of a webhook:
// "v1," followed by the base64 of the HMAC-SHA256, under key, of its id,
// its timestamp in Unix seconds and its body, joined by dots.
func WebhookSignature(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	_, _ = io.WriteString(m, id)
	_, _ = io.WriteString(m, ".")
	_, _ = io.WriteString(m, strconv.FormatInt(timestamp, 10))
	_, _ = io.WriteString(m, ".")
	_, _ = m.Write(body)
	var sum [sha256.Size]byte
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(sum[:0]))
}

// The event types of a completion callback.
const (
	EventSucceeded = "asyncreq.request.succeeded"
	EventFailed    = "asyncreq.request.failed"
	EventCanceled  = "asyncreq.request.canceled"
)

// WebhookEvent is the body of a completion callback.
type WebhookEvent struct {
	// Type is EventSucceeded, EventFailed or EventCanceled.
	Type string `json:"type"`
	// Timestamp is when the request reached its final state.
	Timestamp time.Time `json:"timestamp"`
	// Data is the request's status document.
	Data *StatusDocument `json:"data"`
}

// webhookID is the webhook-id of rec's completion event: the same for
// every attempt, so that a receiver can tell a repeat.
func webhookID(rec *Record) string { return "msg_" + rec.ID }

// webhookEvent returns the completion event of the final record rec.
func webhookEvent(rec *Record) ([]byte, error) {
	doc := statusDocumentAt(rec, rec.Callback.StatusURL, rec.Callback.ResultURL)
	doc.Callback = nil // how its own delivery goes is no news to the receiver
	ev := WebhookEvent{Type: "asyncreq.request." + string(rec.State), Timestamp: rec.UpdatedAt.UTC(), Data: &doc}
	return json.Marshal(ev)
}

// errWebhookRefused marks a delivery that no retry can make succeed.
var errWebhookRefused = errors.New("asyncreq: webhook refused")

// send makes one delivery attempt of rec's completion event at now.
func (wh *webhooks) send(ctx context.Context, rec *Record, now time.Time) error {
	body, err := webhookEvent(rec)
	if err != nil {
		return fmt.Errorf("%w: encoding the event: %v", errWebhookRefused, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rec.Callback.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errWebhookRefused, err)
	}
	id, ts := webhookID(rec), now.Unix()
	sigs := make([]string, len(wh.keys))
	for i, k := range wh.keys {
		sigs[i] = WebhookSignature(k, id, ts, body)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", webhookUserAgent)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", strings.Join(sigs, " "))
	resp, err := wh.client.Do(req)
	if err != nil {
		if ae := (*addressError)(nil); errors.As(err, &ae) {
			return fmt.Errorf("%w: %v", errWebhookRefused, ae)
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookResponseDrained))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the receiver answered %s", resp.Status)
	}
	return nil
}

// backoff returns the wait after the n-th failed delivery attempt.
func (wh *webhooks) backoff(n int) time.Duration {
	return jitteredBackoff(wh.opts.BackoffMin, wh.opts.BackoffMax, n)
}

// addressPolicy is which addresses a webhook may be sent to.
type addressPolicy struct{ loopback, private bool }

// addressError is a dial refused by the address policy.
type addressError struct{ addr netip.Addr }

func (e *addressError) Error() string {
	return "asyncreq: webhook to " + e.addr.String() + " refused: not a public address"
}

// metadataAddrs are the cloud metadata endpoints, refused whatever the
// policy allows.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack, ...
	netip.MustParseAddr("169.254.170.2"),   // AWS ECS task metadata
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("fd00:ec2::254"),   // AWS over IPv6
}

// sharedPrefix is the shared address space of carrier-grade NAT.
var sharedPrefix = netip.MustParsePrefix("100.64.0.0/10")

// allowed reports whether a webhook may be sent to a.
func (p addressPolicy) allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, m := range metadataAddrs {
		if a == m {
			return false
		}
	}
	switch {
	case !a.IsValid(), a.IsUnspecified(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return false
	case a.IsLoopback():
		return p.loopback
	case a.IsPrivate(), a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast(), sharedPrefix.Contains(a):
		return p.private
	}
	return true
}

// control is the net.Dialer Control function that refuses a connection
// to an address the policy does not allow. It runs after DNS resolution,
// on the address actually dialed, so that a name resolving to a private
// address (or rebinding to one) is refused too.
func (p addressPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("asyncreq: webhook dial to %q refused: %v", address, err)
	}
	if !p.allowed(ap.Addr()) {
		return &addressError{addr: ap.Addr()}
	}
	return nil
}

// safeTransport returns a transport that dials only the addresses p
// allows, and never through a proxy (which would dial for it).
func safeTransport(p addressPolicy) *http.Transport {
	d := &net.Dialer{Timeout: defaultWebhookTimeout, KeepAlive: 30 * time.Second, Control: p.control}
	return &http.Transport{
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: defaultWebhookTimeout,
		ExpectContinueTimeout: time.Second,
	}
}
