package asyncreq

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePrefer(t *testing.T) {
	for _, tc := range []struct {
		in    []string
		wait  time.Duration
		async bool
	}{
		{nil, 0, false},
		{[]string{"respond-async"}, 0, true},
		{[]string{"Respond-Async, WAIT=10"}, 10 * time.Second, true},
		{[]string{`wait="7"`}, 7 * time.Second, false},
		{[]string{"wait=5; foo=bar, return=minimal"}, 5 * time.Second, false},
		{[]string{"wait=3", "wait=9"}, 3 * time.Second, false},
		{[]string{"wait=-1"}, 0, false},
		{[]string{"wait=1.5"}, 0, false},
		{[]string{"wait="}, 0, false},
		{[]string{"wait=99999999999999999999"}, 1<<63 - 1, false},
		{[]string{"wait=9223372037"}, 1<<63 - 1, false},
		{[]string{"wait=9223372036"}, 9223372036 * time.Second, false},
		{[]string{" , ,;;=,"}, 0, false},
	} {
		h := http.Header{"Prefer": tc.in}
		p := parsePrefer(h)
		assert.Equal(t, tc.wait, p.wait, "%q", tc.in)
		assert.Equal(t, tc.async, p.respondAsync, "%q", tc.in)
	}
}

func TestEtagMatch(t *testing.T) {
	const tag = `"abc"`
	for inm, want := range map[string]bool{
		`"abc"`:          true,
		`W/"abc"`:        true,
		`"x", "abc"`:     true,
		`*`:              true,
		`"abcd"`:         false,
		`abc`:            false,
		``:               false,
		`"x",,W/"y"`:     false,
		` "abc" , "def"`: true,
	} {
		assert.Equal(t, want, etagMatch(inm, tag), inm)
	}
}

func TestRoutable(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/x": true, "/x/status": true,
		"": false, "x": false, "//": false, "/x/": false, "/x/status/": false,
		"/x/y": false, "/./status": false, "/../status": false, "/.": false,
	} {
		assert.Equal(t, want, routable(p), p)
	}
}

func TestIdempotencyKeyForms(t *testing.T) {
	for in, want := range map[string]string{
		"abc":           "abc",
		`"abc"`:         "abc",
		" abc ":         "abc",
		"8e03978e-40d5": "8e03978e-40d5",
	} {
		got, ok := idempotencyKey(http.Header{"Idempotency-Key": {in}})
		require.True(t, ok, in)
		assert.Equal(t, want, got)
	}
	for _, in := range []string{"", `""`, "a\x00b", "\xff", `a"b`, string(make([]byte, 256))} {
		_, ok := idempotencyKey(http.Header{"Idempotency-Key": {in}})
		assert.False(t, ok, "%q", in)
	}
	got, ok := idempotencyKey(http.Header{})
	require.True(t, ok)
	assert.Empty(t, got)
}

func TestKeptHeaders(t *testing.T) {
	in := http.Header{
		"Accept":          {"text/plain"},
		"X-Trace":         {"t"},
		"Authorization":   {"Bearer x"},
		"Cookie":          {"c=1"},
		"Prefer":          {"wait=5"},
		"Idempotency-Key": {"k"},
		"Content-Type":    {"text/plain"},
		"Content-Length":  {"5"},
		"Connection":      {"X-Private"},
		"X-Private":       {"p"},
		"Te":              {"trailers"},
	}
	newH := func(keep ...string) *Handler {
		h, err := NewHandler(stubBackend{}, &HandlerOptions{KeepHeaders: keep})
		require.NoError(t, err)
		return h
	}
	assert.Nil(t, newH().keeper.pick(in))
	assert.Equal(t, http.Header{"X-Trace": {"t"}}, newH("x-trace", "X-Missing").keeper.pick(in))
	assert.Equal(t, http.Header{"Accept": {"text/plain"}, "X-Trace": {"t"}}, newH("*").keeper.pick(in))
	assert.Equal(t, http.Header{"Accept": {"text/plain"}, "X-Trace": {"t"}, "Authorization": {"Bearer x"}},
		newH("*", "authorization").keeper.pick(in))

	// The kept header is a copy.
	out := newH("*").keeper.pick(in)
	out["Accept"][0] = "changed"
	assert.Equal(t, "text/plain", in.Get("Accept"))
}

// stubBackend is a Store and Queue that is never called.
type stubBackend struct {
	Store
	Queue
}

// FuzzStatusDocumentEncoding checks that the hand-written encoding of the
// status document is byte for byte what encoding/json writes.
func FuzzStatusDocumentEncoding(f *testing.F) {
	for _, s := range []string{"", "plain", `"quoted" \ back`, "<b>&amp;</b>", "\x00\x01\b\f\n\r\t\x1f\x7f", "\xff\xfe", "é ü 日本", "\u2028\u2029", "a\xc3"} {
		f.Add(s, s, 42, int64(1700000000123456789))
	}
	f.Fuzz(func(t *testing.T, msg, url string, n int, nanos int64) {
		at := time.Unix(0, nanos).UTC()
		docs := []*StatusDocument{
			{ID: url, Status: State(msg), CreatedAt: at, UpdatedAt: at, Attempts: n, StatusURL: url},
			{
				ID: "X", Status: StateFailed, CreatedAt: at, UpdatedAt: at.Add(time.Second), Attempts: -n,
				Progress:  &Progress{Percent: n, Message: msg},
				StatusURL: url, ResultURL: url + "/r",
				Error:     &Problem{Type: "about:blank", Title: msg, Status: n, Detail: msg, Instance: url},
				ExpiresAt: at.Add(time.Hour),
			},
			{ID: "Y", Progress: &Progress{Percent: n}, CreatedAt: at.In(time.FixedZone("x", 3600)), ExpiresAt: at.Add(-time.Hour)},
		}
		for _, d := range docs {
			want, werr := json.Marshal(d)
			got, gerr := appendStatusDocument(nil, d)
			if werr != nil || gerr != nil {
				require.Equal(t, werr != nil, gerr != nil, "both fail or neither: %v / %v", werr, gerr)
				continue
			}
			require.Equal(t, string(want), string(got))
		}
	})
}
