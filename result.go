package asyncreq

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// This file is the result route (GET {id}): the replay of a result with
// its status, headers and ETag, conditional requests, and what the result
// URL answers before the request is done or when it failed.

// serveResult serves GET and HEAD /{id}.
func (h *Handler) serveResult(w http.ResponseWriter, r *http.Request, st *reqState) {
	rec, ok := h.lookup(w, r, st)
	if !ok {
		return
	}
	h.served(r, "result", rec)
	h.writeOutcome(w, r, rec, st)
}

// writeOutcome answers with what the result URL serves for rec: the result,
// the failure, or 404 while it is not finished.
func (h *Handler) writeOutcome(w http.ResponseWriter, r *http.Request, rec *Record, st *reqState) {
	switch rec.State {
	case StateSucceeded:
		h.writeResult(w, r, rec)
	case StateFailed, StateCanceled:
		if rec.Owner != "" {
			w.Header().Set("Cache-Control", "private")
		}
		sendProblem(w, r, failureProblem(rec), http.StatusInternalServerError)
	default:
		statusURL := st.statusURL(rec.ID)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Retry-After", h.retryAfter)
		p := servedProblem(newProblem(http.StatusNotFound,
			"the request is "+string(rec.State)+"; its result is not available yet; see "+statusURL), http.StatusNotFound)
		writeProblem(w, r, &pendingProblem{Problem: *p, StatusURL: statusURL})
	}
}

// writeResult serves a succeeded request's result with its status code,
// Content-Type, the headers it may carry, and a strong ETag. The result of
// an owned record is private: no shared cache may keep it for another.
func (h *Handler) writeResult(w http.ResponseWriter, r *http.Request, rec *Record) {
	res := rec.Result
	if res == nil {
		res = &Result{}
	}
	hdr := w.Header()
	for k, vs := range res.Header {
		k = http.CanonicalHeaderKey(k)
		if notReplayed(k, res.Header) || k == "Set-Cookie" && !h.opts.ReplaySetCookie {
			continue
		}
		if k == "Vary" {
			hdr[k] = append(hdr[k], vs...)
			continue
		}
		hdr[k] = append([]string(nil), vs...)
	}
	if rec.Owner != "" {
		hdr["Cache-Control"] = privateCacheControl(hdr["Cache-Control"])
	}
	ctype := res.ContentType
	if ctype == "" {
		ctype = res.Header.Get("Content-Type")
	}
	// A Content-Type key without a value asks for no type at all, as it
	// does in net/http; otherwise a missing type is sniffed.
	_, untyped := res.Header[http.CanonicalHeaderKey("Content-Type")]
	untyped = untyped && ctype == ""
	if ctype == "" && !untyped && len(res.Body) > 0 {
		ctype = http.DetectContentType(res.Body)
	}
	if ctype != "" {
		hdr.Set("Content-Type", ctype)
	} else {
		hdr["Content-Type"] = nil
	}
	etag := resultETag(res, ctype)
	hdr.Set("ETag", etag)

	code := res.StatusCode
	switch {
	case code == 0:
		code = http.StatusOK
	case code < 200 || code > 999:
		h.log.LogAttrs(r.Context(), slog.LevelError, "asyncreq: result has an invalid status code; serving 500",
			slog.String("id", rec.ID), slog.Int("status", code))
		for k := range hdr {
			delete(hdr, k)
		}
		sendError(w, r, http.StatusInternalServerError, "the result cannot be served")
		return
	}
	// If-None-Match is evaluated for GET and HEAD only: on a submit
	// answered with its result (Prefer: wait) it is a precondition on the
	// collection, not on this result.
	if code >= 200 && code < 300 && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		etagMatch(r.Header.Get("If-None-Match"), etag) {
		for _, k := range []string{"Content-Type", "Content-Length", "Content-Language", "Content-Encoding"} {
			hdr.Del(k)
		}
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if !bodyAllowed(code) {
		w.WriteHeader(code)
		return
	}
	hdr.Set("Content-Length", strconv.Itoa(len(res.Body)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(res.Body)
	}
}

// privateCacheControl returns the Cache-Control of a result that only its
// owner may see: the result's own directives (cc) without those that let
// a shared cache store it (public, s-maxage, and private with field names,
// which leaves the other fields shareable), and with private added unless
// private or no-store is there already.
func privateCacheControl(cc []string) []string {
	var out []string
	private := false
	for _, v := range cc {
		for _, d := range splitDirectives(v) {
			name, arg, hasArg := strings.Cut(d, "=")
			switch name = strings.ToLower(strings.TrimSpace(name)); {
			case name == "public", name == "s-maxage", name == "private" && hasArg && strings.TrimSpace(arg) != "":
				continue
			case name == "private", name == "no-store":
				private = true
			}
			out = append(out, d)
		}
	}
	if !private {
		out = append(out, "private")
	}
	return []string{strings.Join(out, ", ")}
}

// splitDirectives splits a Cache-Control value at the commas outside
// quoted strings and trims the directives, leaving out empty ones.
func splitDirectives(v string) []string {
	var out []string
	quoted, escaped, start := false, false, 0
	add := func(end int) {
		if d := strings.TrimSpace(v[start:end]); d != "" {
			out = append(out, d)
		}
		start = end + 1
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			add(i)
		}
	}
	add(len(v))
	return out
}

// resultETag returns a strong entity tag of the result's representation:
// its content type and body.
func resultETag(res *Result, ctype string) string {
	s := sha256.New()
	_, _ = io.WriteString(s, ctype)
	_, _ = s.Write([]byte{0})
	_, _ = s.Write(res.Body)
	var sum [sha256.Size]byte
	return `"` + hex.EncodeToString(s.Sum(sum[:0])[:16]) + `"`
}

// etagMatch reports whether an If-None-Match value matches etag, by the weak
// comparison RFC 9110 prescribes for If-None-Match.
func etagMatch(inm, etag string) bool {
	for inm != "" {
		var tag string
		tag, inm, _ = strings.Cut(inm, ",")
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			return true
		}
		tag = strings.TrimPrefix(tag, "W/")
		if tag == etag {
			return true
		}
	}
	return false
}

// notReplayed reports whether the result header k is left out when a
// result is served: hop-by-hop headers (with those named by Connection) and
// the headers the handler sets itself. (Set-Cookie is left out too unless
// HandlerOptions.ReplaySetCookie is set; see writeResult.)
func notReplayed(k string, h http.Header) bool {
	switch k {
	case "Content-Length", "Content-Type", "Etag", "Date":
		return true
	}
	return hopByHop[k] || connectionListed(k, h)
}
