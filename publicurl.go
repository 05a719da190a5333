package asyncreq

import (
	"fmt"
	"net/url"
	"strings"
)

// This file is HandlerOptions.PublicURL: the origin (and path prefix) that
// makes the URLs the Handler writes absolute.

// publicOrigin checks HandlerOptions.PublicURL and returns what the URLs
// the Handler writes start with: the scheme, the host and the escaped path
// without a trailing slash ("https://api.example.com/v1"). It is "" when
// raw is "".
func publicOrigin(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("asyncreq: HandlerOptions.PublicURL %q: %s", raw, why)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return bad("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("the scheme must be http or https")
	case u.Host == "" || u.Opaque != "":
		return bad("no host")
	case u.User != nil:
		return bad("user information is not allowed")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(raw, "?#"):
		return bad("a query or fragment is not allowed")
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/"), nil
}
