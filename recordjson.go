package asyncreq

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is the encoding of Record.MarshalBinary and UnmarshalBinary:
// JSON, byte for byte what encoding/json gives, written and read without
// reflection. Backends encode a record at every write and decode it at
// every read, so the reflection of encoding/json was a large share of
// their CPU. Whatever the fast paths do not handle goes to encoding/json.

// appendRecordJSON appends to b what json.Marshal(r) gives. It reports
// false when it cannot: a time that encoding/json refuses to encode (its
// year outside 0 to 9999, say), so that the caller asks json.Marshal for its
// error.
func appendRecordJSON(b []byte, r *Record) ([]byte, bool) {
	ok := true
	b = append(b, `{"id":`...)
	b = appendJSONString(b, r.ID)
	b = appendStringField(b, `,"owner":`, r.Owner)
	b = appendStringField(b, `,"idempotency_key":`, r.IdempotencyKey)
	b = appendStringField(b, `,"body_hash":`, r.BodyHash)
	b = append(b, `,"state":`...)
	b = appendJSONString(b, string(r.State))
	if r.Enqueued {
		b = append(b, `,"enqueued":true`...)
	}
	b = appendStringField(b, `,"method":`, r.Method)
	b = appendStringField(b, `,"url":`, r.URL)
	if len(r.Header) > 0 {
		b = append(b, `,"header":`...)
		b = appendHeaderJSON(b, r.Header)
	}
	b = appendStringField(b, `,"content_type":`, r.ContentType)
	if len(r.Body) > 0 {
		b = append(b, `,"body":`...)
		b = appendBase64JSON(b, r.Body)
	}
	b = appendIntField(b, `,"attempts":`, int64(r.Attempts))
	b = appendStringField(b, `,"lease_token":`, r.LeaseToken)
	if r.CancelRequested {
		b = append(b, `,"cancel_requested":true`...)
	}
	if r.Progress != nil {
		b = appendProgressJSON(append(b, `,"progress":`...), r.Progress)
	}
	if res := r.Result; res != nil {
		b = append(b, `,"result":{`...)
		n := len(b)
		b = appendIntField(b, `,"status_code":`, int64(res.StatusCode))
		b = appendStringField(b, `,"content_type":`, res.ContentType)
		if len(res.Header) > 0 {
			b = append(b, `,"header":`...)
			b = appendHeaderJSON(b, res.Header)
		}
		if len(res.Body) > 0 {
			b = append(b, `,"body":`...)
			b = appendBase64JSON(b, res.Body)
		}
		b = closeObject(b, n)
	}
	if r.Error != nil {
		b = appendProblemJSON(append(b, `,"error":`...), r.Error)
	}
	b = append(b, `,"created_at":`...)
	b, ok = appendJSONTime(b, r.CreatedAt, ok)
	b = append(b, `,"updated_at":`...)
	b, ok = appendJSONTime(b, r.UpdatedAt, ok)
	b = appendIntField(b, `,"retention":`, int64(r.Retention))
	b = appendIntField(b, `,"tombstone_ttl":`, int64(r.TombstoneTTL))
	if !r.ExpiresAt.IsZero() {
		b = append(b, `,"expires_at":`...)
		b, ok = appendJSONTime(b, r.ExpiresAt, ok)
	}
	if cb := r.Callback; cb != nil {
		b = append(b, `,"callback":{"url":`...)
		b = appendJSONString(b, cb.URL)
		b = appendStringField(b, `,"status_url":`, cb.StatusURL)
		b = appendStringField(b, `,"result_url":`, cb.ResultURL)
		b = appendStringField(b, `,"state":`, string(cb.State))
		b = appendIntField(b, `,"attempts":`, int64(cb.Attempts))
		b = appendStringField(b, `,"last_error":`, cb.LastError)
		if !cb.UpdatedAt.IsZero() {
			b = append(b, `,"updated_at":`...)
			b, ok = appendJSONTime(b, cb.UpdatedAt, ok)
		}
		b = append(b, '}')
	}
	return append(b, '}'), ok
}

// appendProgressJSON appends p as encoding/json writes it.
func appendProgressJSON(b []byte, p *Progress) []byte {
	b = append(b, `{"percent":`...)
	b = strconv.AppendInt(b, int64(p.Percent), 10)
	b = appendStringField(b, `,"message":`, p.Message)
	return append(b, '}')
}

// appendProblemJSON appends p as encoding/json writes it.
func appendProblemJSON(b []byte, p *Problem) []byte {
	b = append(b, '{')
	n := len(b)
	b = appendStringField(b, `,"type":`, p.Type)
	b = appendStringField(b, `,"title":`, p.Title)
	b = appendIntField(b, `,"status":`, int64(p.Status))
	b = appendStringField(b, `,"detail":`, p.Detail)
	b = appendStringField(b, `,"instance":`, p.Instance)
	return closeObject(b, n)
}

// appendStringField appends name and s, unless s is empty (omitempty).
func appendStringField(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONString(append(b, name...), s)
}

// appendIntField appends name and n, unless n is zero (omitempty).
func appendIntField(b []byte, name string, n int64) []byte {
	if n == 0 {
		return b
	}
	return strconv.AppendInt(append(b, name...), n, 10)
}

// closeObject ends an object whose fields, each written with a leading
// comma, began at b[n:] (just after its "{"): the first field's comma
// goes.
func closeObject(b []byte, n int) []byte {
	if len(b) > n {
		b = append(b[:n], b[n+1:]...)
	}
	return append(b, '}')
}

// appendBase64JSON appends p as encoding/json writes a []byte.
func appendBase64JSON(b, p []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

// appendHeaderJSON appends h as encoding/json writes a map: keys sorted,
// a nil value as null.
func appendHeaderJSON(b []byte, h http.Header) []byte {
	var buf [16]string
	keys := buf[:0]
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		vs := h[k]
		if vs == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, '[')
		for j, v := range vs {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, v)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendJSONTime appends t as time.Time.MarshalJSON writes it, and reports
// ok false when MarshalJSON would fail.
func appendJSONTime(b []byte, t time.Time, ok bool) ([]byte, bool) {
	b = append(b, '"')
	n := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	// The checks of MarshalJSON: a year of exactly four digits, and a
	// zone offset of less than 24 hours.
	switch {
	case len(b)-n < 5 || b[n+4] != '-':
		ok = false
	case b[len(b)-1] != 'Z':
		c := b[len(b)-6]
		if '0' <= c && c <= '9' || 10*(b[len(b)-5]-'0')+(b[len(b)-4]-'0') >= 24 {
			ok = false
		}
	}
	return append(b, '"'), ok
}

// decodeRecordJSON decodes data into r as json.Unmarshal would into a zero
// Record, and reports false, with r unchanged, where it does not know the
// answer: anything but the compact JSON of appendRecordJSON (whitespace,
// unknown or repeated keys, null where a value was expected, a number
// that is not an integer), for encoding/json to decode.
func decodeRecordJSON(data []byte, r *Record) bool {
	var rec Record
	c := jsonCursor{b: data}
	ok := c.fields(recordKeys, func(i int) bool {
		switch i {
		case 0:
			return c.str(&rec.ID)
		case 1:
			return c.str(&rec.Owner)
		case 2:
			return c.str(&rec.IdempotencyKey)
		case 3:
			return c.str(&rec.BodyHash)
		case 4:
			return c.str((*string)(&rec.State))
		case 5:
			return c.bool(&rec.Enqueued)
		case 6:
			return c.str(&rec.Method)
		case 7:
			return c.str(&rec.URL)
		case 8:
			return c.header(&rec.Header)
		case 9:
			return c.str(&rec.ContentType)
		case 10:
			return c.bytes(&rec.Body)
		case 11:
			return c.int(&rec.Attempts)
		case 12:
			return c.str(&rec.LeaseToken)
		case 13:
			return c.bool(&rec.CancelRequested)
		case 14:
			rec.Progress = new(Progress)
			return c.progress(rec.Progress)
		case 15:
			rec.Result = new(Result)
			return c.result(rec.Result)
		case 16:
			rec.Error = new(Problem)
			return c.problem(rec.Error)
		case 17:
			return c.time(&rec.CreatedAt)
		case 18:
			return c.time(&rec.UpdatedAt)
		case 19:
			return c.int64((*int64)(&rec.Retention))
		case 20:
			return c.int64((*int64)(&rec.TombstoneTTL))
		case 21:
			return c.time(&rec.ExpiresAt)
		default:
			rec.Callback = new(Callback)
			return c.callback(rec.Callback)
		}
	})
	if !ok || c.i != len(data) {
		return false
	}
	*r = rec
	return true
}

// recordKeys are the JSON names of Record's fields, in the order of
// decodeRecordJSON's cases.
var recordKeys = []string{
	"id", "owner", "idempotency_key", "body_hash", "state", "enqueued",
	"method", "url", "header", "content_type", "body", "attempts",
	"lease_token", "cancel_requested", "progress", "result", "error",
	"created_at", "updated_at", "retention", "tombstone_ttl", "expires_at",
	"callback",
}

// jsonCursor reads compact JSON from b at i. Each method reads one value
// and reports false when it finds what it does not handle.
type jsonCursor struct {
	b []byte
	i int
}

// object reads an object, calling field for each key with the cursor at
// its value; key is raw as scanString says.
func (c *jsonCursor) object(field func(key []byte, raw bool) bool) bool {
	if !c.next('{') {
		return false
	}
	if c.next('}') {
		return true
	}
	for {
		key, raw, ok := c.scanString()
		if !ok || !c.next(':') || !field(key, raw) {
			return false
		}
		if c.next(',') {
			continue
		}
		return c.next('}')
	}
}

// fields reads an object of a struct whose JSON names are keys, calling
// value with the index of each key; a key not in keys, repeated or written
// with an escape stops it.
func (c *jsonCursor) fields(keys []string, value func(i int) bool) bool {
	var seen uint32
	return c.object(func(key []byte, raw bool) bool {
		i := slices.Index(keys, string(key))
		if raw || i < 0 || seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		return value(i)
	})
}

// next skips the byte b if it comes next.
func (c *jsonCursor) next(b byte) bool {
	if c.i < len(c.b) && c.b[c.i] == b {
		c.i++
		return true
	}
	return false
}

// plain reads a string without escapes and returns its bytes, which alias
// c.b. It reports false for a string with an escape, a control character
// or bytes that are not UTF-8, which encoding/json reads otherwise.
func (c *jsonCursor) plain() ([]byte, bool) {
	s, raw, ok := c.scanString()
	if !ok || raw {
		return nil, false
	}
	return s, true
}

// scanString reads a string: its contents, and raw true when they hold an
// escape or bytes that are not valid UTF-8, and so must be unquoted by
// encoding/json (s is then the quoted string).
func (c *jsonCursor) scanString() (s []byte, raw, ok bool) {
	if !c.next('"') {
		return nil, false, false
	}
	start := c.i
	ascii := true
	for c.i < len(c.b) {
		switch b := c.b[c.i]; {
		case b == '"':
			s = c.b[start:c.i]
			c.i++
			if raw || !ascii && !utf8.Valid(s) {
				return c.b[start-1 : c.i], true, true
			}
			return s, false, true
		case b == '\\':
			raw = true
			c.i += 2
		case b < 0x20:
			return nil, false, false
		default:
			if b >= utf8.RuneSelf {
				ascii = false
			}
			c.i++
		}
	}
	return nil, false, false
}

// str reads a string into s.
func (c *jsonCursor) str(s *string) bool {
	b, raw, ok := c.scanString()
	if !ok {
		return false
	}
	if raw {
		*s, ok = unquote(b)
		return ok
	}
	*s = string(b)
	return true
}

// unquote unquotes the JSON string q as encoding/json does.
func unquote(q []byte) (string, bool) {
	if s, ok := unescape(q[1 : len(q)-1]); ok {
		return s, true
	}
	var s string
	err := json.Unmarshal(q, &s)
	return s, err == nil
}

// jsonEscapes maps the letter of each of JSON's one-letter escapes to the
// byte it stands for.
var jsonEscapes = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// unescape decodes the escapes of the JSON string contents b, and reports
// false for what it leaves to encoding/json: an escaped surrogate, bytes
// that are not UTF-8, an escape that is not JSON's.
func unescape(b []byte) (string, bool) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return "", false
			}
			out = append(out, b[i:i+size]...)
			i += size
			continue
		case c != '\\':
			out = append(out, c)
			i++
			continue
		case i+1 == len(b):
			return "", false
		}
		if c := jsonEscapes[b[i+1]]; c != 0 {
			out = append(out, c)
			i += 2
			continue
		}
		if b[i+1] != 'u' || i+6 > len(b) {
			return "", false
		}
		v, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16)
		if err != nil || utf16.IsSurrogate(rune(v)) {
			return "", false
		}
		out = utf8.AppendRune(out, rune(v))
		i += 6
	}
	return string(out), true
}

// bytes reads a base64 string into p, as encoding/json does.
func (c *jsonCursor) bytes(p *[]byte) bool {
	s, ok := c.plain()
	if !ok {
		return false
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(b, s)
	if err != nil {
		return false
	}
	*p = b[:n]
	return true
}

// time reads a time as time.Time.UnmarshalJSON does.
func (c *jsonCursor) time(t *time.Time) bool {
	start := c.i
	if _, ok := c.plain(); !ok {
		return false
	}
	return t.UnmarshalJSON(c.b[start:c.i]) == nil
}

// bool reads true or false.
func (c *jsonCursor) bool(v *bool) bool {
	switch {
	case c.literal("true"):
		*v = true
	case c.literal("false"):
		*v = false
	default:
		return false
	}
	return true
}

// literal skips s if it comes next.
func (c *jsonCursor) literal(s string) bool {
	if len(c.b)-c.i >= len(s) && string(c.b[c.i:c.i+len(s)]) == s {
		c.i += len(s)
		return true
	}
	return false
}

// int64 reads an integer as JSON writes one: an optional minus, then 0 or
// digits not starting with 0.
func (c *jsonCursor) int64(n *int64) bool {
	start := c.i
	c.next('-')
	digits := c.i
	for c.i < len(c.b) && '0' <= c.b[c.i] && c.b[c.i] <= '9' {
		c.i++
	}
	switch {
	case c.i == digits, c.b[digits] == '0' && c.i > digits+1:
		return false
	case c.i < len(c.b) && (c.b[c.i] == '.' || c.b[c.i] == 'e' || c.b[c.i] == 'E'):
		return false
	}
	v, err := strconv.ParseInt(string(c.b[start:c.i]), 10, 64)
	if err != nil {
		return false
	}
	*n = v
	return true
}

// int reads an integer into an int.
func (c *jsonCursor) int(n *int) bool {
	var v int64
	if !c.int64(&v) || int64(int(v)) != v {
		return false
	}
	*n = int(v)
	return true
}

// header reads an object of string arrays, as encoding/json reads an
// http.Header: [] is an empty slice, null a nil one.
func (c *jsonCursor) header(h *http.Header) bool {
	m := make(http.Header)
	ok := c.object(func(key []byte, raw bool) bool {
		k := string(key)
		if raw {
			var ok bool
			if k, ok = unquote(key); !ok {
				return false
			}
		}
		if c.literal("null") {
			m[k] = nil
			return true
		}
		if !c.next('[') {
			return false
		}
		vs := []string{}
		if !c.next(']') {
			for {
				var v string
				if !c.str(&v) {
					return false
				}
				vs = append(vs, v)
				if c.next(',') {
					continue
				}
				if !c.next(']') {
					return false
				}
				break
			}
		}
		m[k] = vs
		return true
	})
	if ok {
		*h = m
	}
	return ok
}

var (
	progressKeys = []string{"percent", "message"}
	resultKeys   = []string{"status_code", "content_type", "header", "body"}
	problemKeys  = []string{"type", "title", "status", "detail", "instance"}
	callbackKeys = []string{"url", "status_url", "result_url", "state", "attempts", "last_error", "updated_at"}
)

func (c *jsonCursor) progress(p *Progress) bool {
	return c.fields(progressKeys, func(i int) bool {
		if i == 0 {
			return c.int(&p.Percent)
		}
		return c.str(&p.Message)
	})
}

func (c *jsonCursor) result(r *Result) bool {
	return c.fields(resultKeys, func(i int) bool {
		switch i {
		case 0:
			return c.int(&r.StatusCode)
		case 1:
			return c.str(&r.ContentType)
		case 2:
			return c.header(&r.Header)
		default:
			return c.bytes(&r.Body)
		}
	})
}

func (c *jsonCursor) problem(p *Problem) bool {
	return c.fields(problemKeys, func(i int) bool {
		switch i {
		case 0:
			return c.str(&p.Type)
		case 1:
			return c.str(&p.Title)
		case 2:
			return c.int(&p.Status)
		case 3:
			return c.str(&p.Detail)
		default:
			return c.str(&p.Instance)
		}
	})
}

func (c *jsonCursor) callback(cb *Callback) bool {
	return c.fields(callbackKeys, func(i int) bool {
		switch i {
		case 0:
			return c.str(&cb.URL)
		case 1:
			return c.str(&cb.StatusURL)
		case 2:
			return c.str(&cb.ResultURL)
		case 3:
			return c.str((*string)(&cb.State))
		case 4:
			return c.int(&cb.Attempts)
		case 5:
			return c.str(&cb.LastError)
		default:
			return c.time(&cb.UpdatedAt)
		}
	})
}
