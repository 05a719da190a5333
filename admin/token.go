package admin

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file is Token: a shared secret that authorizes an operator as a
// bearer token, or through the session cookie of the login form.

// Token authorizes the requests that carry a secret: as
// "Authorization: Bearer SECRET" (for programs), or in the session cookie
// that the Handler's login form at {base}/login sets once the secret is
// typed into it (for browsers). Set it as Options.Token.
//
// The cookie is HttpOnly, SameSite=Strict, scoped to the Handler's path,
// Secure when the login came over TLS, and lasts 12 hours. It holds its
// expiry and an HMAC of it under a key derived from the secret, not the
// secret itself, so a new secret ends every session. Every comparison is
// constant-time.
type Token struct {
	sum [sha256.Size]byte // of the secret
	key []byte            // signs the session cookies
	now func() time.Time
}

// MinTokenLen is the shortest secret NewToken accepts.
const MinTokenLen = 16

// sessionTTL is how long a login lasts.
const sessionTTL = 12 * time.Hour

// sessionCookie is the name of the login's cookie.
const sessionCookie = "asyncreq_admin"

// NewToken returns a Token for secret, which must be at least MinTokenLen
// bytes long (a random one, such as 32 bytes from crypto/rand in hex).
func NewToken(secret string) (*Token, error) {
	if len(secret) < MinTokenLen {
		return nil, errors.New("admin: NewToken: the secret must be at least " + strconv.Itoa(MinTokenLen) + " bytes long")
	}
	k := sha256.Sum256([]byte("asyncreq admin session key\x00" + secret))
	return &Token{sum: sha256.Sum256([]byte(secret)), key: k[:], now: time.Now}, nil
}

// ErrUnauthorized is Token.Authorize's error for a request that carries
// neither the secret nor a valid session.
var ErrUnauthorized = errors.New("admin: a bearer token or a login session is required")

// Authorize returns nil when r carries the secret as a bearer token, or a
// session cookie of the login form that has not expired, and
// ErrUnauthorized otherwise.
func (t *Token) Authorize(r *http.Request) error {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, secret, ok := strings.Cut(auth, " ")
		if ok && strings.EqualFold(scheme, "Bearer") && t.matches(strings.TrimSpace(secret)) {
			return nil
		}
		return ErrUnauthorized
	}
	if c, err := r.Cookie(sessionCookie); err == nil && t.validSession(c.Value) {
		return nil
	}
	return ErrUnauthorized
}

// matches reports, in constant time, whether secret is the Token's.
func (t *Token) matches(secret string) bool {
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1
}

// session returns the value of a session cookie that expires at exp.
func (t *Token) session(exp time.Time) string {
	s := strconv.FormatInt(exp.Unix(), 10)
	return s + "." + t.sign(s)
}

func (t *Token) sign(s string) string {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte("session\x00" + s))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// validSession reports whether v is a session cookie this Token signed
// that has not expired.
func (t *Token) validSession(v string) bool {
	s, sig, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	if !hmac.Equal([]byte(sig), []byte(t.sign(s))) {
		return false
	}
	exp, err := strconv.ParseInt(s, 10, 64)
	return err == nil && t.now().Unix() < exp
}

// setSession sets the session cookie of a login on w.
func (t *Token) setSession(w http.ResponseWriter, r *http.Request, path string) {
	exp := t.now().Add(sessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: t.session(exp), Path: path, Expires: exp, MaxAge: int(sessionTTL.Seconds()),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

// clearSession removes the session cookie.
func clearSession(w http.ResponseWriter, r *http.Request, path string) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: path, MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}
