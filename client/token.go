package client

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// tokenPrefix starts every resume token; the digit is the format version.
const tokenPrefix = "arq1."

// maxTokenLen bounds the tokens Resume accepts.
const maxTokenLen = 16 << 10

// TokenError is returned by Client.Resume for a token it cannot accept.
type TokenError struct {
	// Reason says what is wrong with the token.
	Reason string
	// Err is the underlying error, or nil.
	Err error
}

// Error implements error.
func (e *TokenError) Error() string {
	if e.Err != nil {
		return "client: bad resume token: " + e.Reason + ": " + e.Err.Error()
	}
	return "client: bad resume token: " + e.Reason
}

// Unwrap returns the underlying error.
func (e *TokenError) Unwrap() error { return e.Err }

// tokenData is what a resume token carries.
type tokenData struct {
	ID             string `json:"id,omitempty"`
	StatusURL      string `json:"s,omitempty"`
	ResultURL      string `json:"r,omitempty"`
	Origin         string `json:"o"`
	IdempotencyKey string `json:"k,omitempty"`
	Done           bool   `json:"d,omitempty"`
}

// ResumeToken returns an opaque string from which Client.Resume, in this
// process or another, makes an operation that continues where this one
// stands. The token holds the operation's URLs, not its headers or its
// result. An operation that finished on submit without a result URL to
// come back to returns ErrNotResumable.
func (op *Operation) ResumeToken() (string, error) {
	op.mu.Lock()
	t := tokenData{ID: op.id, Origin: op.origin, IdempotencyKey: op.idemKey}
	if op.statusURL != nil {
		t.StatusURL = op.statusURL.String()
	}
	if op.resultURL != nil {
		t.ResultURL = op.resultURL.String()
		// Done only matters when the status URL cannot tell it again.
		t.Done = op.done && op.err == nil
	}
	op.mu.Unlock()
	if t.StatusURL == "" && t.ResultURL == "" {
		return "", ErrNotResumable
	}
	data, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("client: encoding resume token: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString(data)
	if op.c.tokenKey != nil {
		return tokenPrefix + payload + "." + op.c.sign(payload), nil
	}
	return tokenPrefix + payload, nil
}

// sign returns the token signature of payload.
func (c *Client) sign(payload string) string {
	m := hmac.New(sha256.New, c.tokenKey)
	m.Write([]byte(tokenPrefix + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// decodeToken checks and decodes a resume token.
func (c *Client) decodeToken(token string) (*tokenData, error) {
	token = strings.TrimSpace(token)
	if len(token) > maxTokenLen {
		return nil, &TokenError{Reason: "too long"}
	}
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return nil, &TokenError{Reason: "unknown format (no " + tokenPrefix + " prefix)"}
	}
	payload, sig, signed := strings.Cut(rest, ".")
	if c.tokenKey != nil {
		if !signed {
			return nil, &TokenError{Reason: "not signed"}
		}
		if !hmac.Equal([]byte(sig), []byte(c.sign(payload))) {
			return nil, &TokenError{Reason: "signature does not match"}
		}
	}
	data, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, &TokenError{Reason: "not base64url", Err: err}
	}
	var t tokenData
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, &TokenError{Reason: "not a token payload", Err: err}
	}
	if t.StatusURL == "" && t.ResultURL == "" {
		return nil, &TokenError{Reason: "no status or result URL"}
	}
	for _, s := range []string{t.StatusURL, t.ResultURL} {
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil {
			return nil, &TokenError{Reason: "bad URL", Err: err}
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, &TokenError{Reason: fmt.Sprintf("URL %q is not an absolute http(s) URL", s)}
		}
	}
	if t.StatusURL == "" && !t.Done {
		return nil, &TokenError{Reason: "no status URL for an unfinished operation"}
	}
	o, err := url.Parse(t.Origin)
	if err != nil || o.Scheme == "" || o.Host == "" || originOf(o) != t.Origin {
		return nil, &TokenError{Reason: fmt.Sprintf("bad origin %q", t.Origin)}
	}
	return &t, nil
}
