package asyncreq

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file is the HTTP headers the Handler reads and writes: the request
// headers kept with a request (KeepHeaders), Idempotency-Key, Prefer,
// Retry-After, and the RFC 9110 rules about headers and bodies that the
// Handler and HandlerProcessor share.

// headerKeeper picks the request headers HandlerOptions.KeepHeaders
// names, to be stored with a submitted request.
type headerKeeper struct {
	all   bool                // the list holds "*"
	names map[string]struct{} // the canonical names listed
}

// newHeaderKeeper returns the headerKeeper of a KeepHeaders list whose
// names are valid (see HandlerOptions.withDefaults).
func newHeaderKeeper(list []string) headerKeeper {
	k := headerKeeper{names: make(map[string]struct{}, len(list))}
	for _, name := range list {
		if name == "*" {
			k.all = true
			continue
		}
		k.names[http.CanonicalHeaderKey(name)] = struct{}{}
	}
	return k
}

// pick returns a copy of the headers of in that k keeps, or nil.
func (k headerKeeper) pick(in http.Header) http.Header {
	if !k.all && len(k.names) == 0 {
		return nil
	}
	var out http.Header
	for name, vs := range in {
		if _, listed := k.names[name]; !listed && !(k.all && keptByStar(name, in)) {
			continue
		}
		if out == nil {
			out = make(http.Header)
		}
		out[name] = append([]string(nil), vs...)
	}
	return out
}

// keptByStar reports whether the KeepHeaders entry "*" keeps header k.
//
// Besides the headers this handler interprets and those of the transfer,
// "*" leaves out every header that may carry a credential: Authorization,
// Cookie, and each header whose name, split into parts at '-' and '_',
// has a part that contains auth, bearer, token, secret, signature,
// password, passwd, credential, cookie, session, jwt, csrf, xsrf, hmac or
// key, or is sig, pass, pwd, otp, pin, sid or dpop (case-insensitively):
// X-Api-Key, Api-Key, X-Amz-Security-Token, X-CSRF-Token, X-Auth-User,
// Stripe-Signature, X-Hub-Signature-256, Ocp-Apim-Subscription-Key,
// Cf-Access-Client-Secret, X-Session-Id. Matching parts of names catches
// the vendors' variants of the usual names; a header left out by mistake
// is still kept when it is listed by name.
func keptByStar(k string, in http.Header) bool {
	switch k {
	case "Authorization", "Cookie", "Prefer", "Idempotency-Key", "Content-Length", "Content-Type", "Expect", "Host":
		return false
	}
	if hopByHop[k] || connectionListed(k, in) {
		return false
	}
	// One pass over the name, matching case-insensitively: c|0x20 is c in
	// lower case for an ASCII letter, and no other byte becomes one.
	has := func(i int, frag string) bool {
		if len(k)-i < len(frag) {
			return false
		}
		for j := 0; j < len(frag); j++ {
			if k[i+j]|0x20 != frag[j] {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(k); i++ {
		var secret bool
		switch k[i] | 0x20 {
		case 'a':
			secret = has(i, "auth")
		case 'b':
			secret = has(i, "bearer")
		case 'c':
			secret = has(i, "credential") || has(i, "cookie") || has(i, "csrf")
		case 'h':
			secret = has(i, "hmac")
		case 'j':
			secret = has(i, "jwt")
		case 'k':
			secret = has(i, "key")
		case 'p':
			secret = has(i, "password") || has(i, "passwd")
		case 's':
			secret = has(i, "secret") || has(i, "signature") || has(i, "session")
		case 't':
			secret = has(i, "token")
		case 'x':
			secret = has(i, "xsrf")
		}
		if secret {
			return false
		}
	}
	for rest := k; rest != ""; {
		part := rest
		if i := strings.IndexAny(rest, "-_"); i >= 0 {
			part, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if len(part) != 3 && len(part) != 4 {
			continue
		}
		for _, word := range [...]string{"sig", "pass", "pwd", "otp", "pin", "sid", "dpop"} {
			if strings.EqualFold(part, word) {
				return false
			}
		}
	}
	return true
}

// idempotencyKey returns the request's Idempotency-Key, unquoted if it is
// sent as a structured-field string, and whether it is well-formed.
func idempotencyKey(h http.Header) (string, bool) {
	vs := h.Values("Idempotency-Key")
	switch len(vs) {
	case 0:
		return "", true
	case 1:
	default:
		return "", false
	}
	k := strings.TrimSpace(vs[0])
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
	}
	if k == "" || len(k) > maxIdempotencyKeyLen {
		return "", false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e || k[i] == '"' || k[i] == '\\' {
			return "", false
		}
	}
	return k, true
}

// preferences are the RFC 7240 preferences the handler honours.
type preferences struct {
	wait         time.Duration
	respondAsync bool
}

// parsePrefer reads the Prefer headers. Preferences it does not know and
// values it cannot read are ignored, as RFC 7240 asks; the first of
// repeated preferences counts.
func parsePrefer(h http.Header) preferences {
	var p preferences
	seenWait := false
	for _, v := range h["Prefer"] {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			item, _, _ = strings.Cut(item, ";") // parameters are not used
			name, val, _ := strings.Cut(item, "=")
			name = strings.TrimSpace(name)
			val = strings.Trim(strings.TrimSpace(val), `"`)
			switch {
			case strings.EqualFold(name, "respond-async"):
				p.respondAsync = true
			case strings.EqualFold(name, "wait") && !seenWait:
				seenWait = true
				n, err := strconv.ParseUint(val, 10, 64)
				if err != nil {
					if errors.Is(err, strconv.ErrRange) {
						p.wait = time.Duration(1<<63 - 1)
					}
					continue
				}
				if n > uint64((1<<63-1)/time.Second) {
					p.wait = time.Duration(1<<63 - 1)
				} else {
					p.wait = time.Duration(n) * time.Second
				}
			}
		}
	}
	return p
}

// hopByHop lists the headers that describe one connection, not the
// message (RFC 9110 section 7.6.1).
var hopByHop = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// connectionListed reports whether the Connection header in h names k.
func connectionListed(k string, h http.Header) bool {
	for _, v := range h["Connection"] {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(f), k) {
				return true
			}
		}
	}
	return false
}

// validToken reports whether s is an RFC 9110 token, as header names are.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// bodyAllowed reports whether a response with the given status may have a
// body.
func bodyAllowed(code int) bool {
	return !(code >= 100 && code <= 199 || code == http.StatusNoContent || code == http.StatusNotModified)
}

// seconds formats d in whole seconds, rounded up.
func seconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
