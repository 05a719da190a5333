package asyncreq

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// randomRecord makes a record with each field set or not at random, its
// strings drawn from runes that JSON writes in each of its ways.
func randomRecord(rng *rand.Rand) *Record {
	pieces := []string{"a", "Z", "0", " ", "<", ">", "&", `"`, `\`, "/", "\n", "\t", "\x00", "\x1f", "\x7f",
		"é", "世", "😀", "\u2028", "\u2029", "\xff", "\xe2\x82", "%", "=", "+"}
	str := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	bytes := func() []byte {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, rng.IntN(70))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	header := func() http.Header {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return http.Header{}
		}
		h := http.Header{}
		for range 1 + rng.IntN(20) {
			k := str()
			switch rng.IntN(5) {
			case 0:
				h[k] = nil
			case 1:
				h[k] = []string{}
			default:
				for range 1 + rng.IntN(3) {
					h[k] = append(h[k], str())
				}
			}
		}
		return h
	}
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("", 5*3600+1800), time.FixedZone("W", -7*3600), time.FixedZone("S", 59)}
	when := func() time.Time {
		switch rng.IntN(5) {
		case 0:
			return time.Time{}
		case 1:
			return time.Now() // with a monotonic reading
		}
		return time.Unix(rng.Int64N(250_000_000_000), rng.Int64N(1_000_000_000)*int64(rng.IntN(2))).In(zones[rng.IntN(len(zones))])
	}
	num := func() int {
		switch rng.IntN(3) {
		case 0:
			return 0
		case 1:
			return rng.IntN(1000) - 500
		}
		return int(rng.Int64()) // large, positive or negative
	}
	r := &Record{
		ID: str(), Owner: str(), IdempotencyKey: str(), BodyHash: str(),
		State: State(str()), Enqueued: rng.IntN(2) == 0,
		Method: str(), URL: str(), Header: header(), ContentType: str(), Body: bytes(),
		Attempts: num(), LeaseToken: str(), CancelRequested: rng.IntN(2) == 0,
		CreatedAt: when(), UpdatedAt: when(), ExpiresAt: when(),
		Retention: time.Duration(num()), TombstoneTTL: time.Duration(num()),
	}
	if rng.IntN(2) == 0 {
		r.Progress = &Progress{Percent: num(), Message: str()}
	}
	if rng.IntN(2) == 0 {
		r.Result = &Result{StatusCode: num(), ContentType: str(), Header: header(), Body: bytes()}
	}
	if rng.IntN(2) == 0 {
		r.Error = &Problem{Type: str(), Title: str(), Status: num(), Detail: str(), Instance: str()}
	}
	if rng.IntN(2) == 0 {
		r.Callback = &Callback{URL: str(), StatusURL: str(), ResultURL: str(), State: CallbackState(str()),
			Attempts: num(), LastError: str(), UpdatedAt: when()}
	}
	return r
}

func TestRecordBinaryIsJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		r := randomRecord(rng)
		want, err := json.Marshal(r)
		require.NoError(t, err)
		got, err := r.MarshalBinary()
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "record %d", i)

		var viaJSON, fast Record
		require.NoError(t, json.Unmarshal(got, &viaJSON))
		require.True(t, decodeRecordJSON(got, &fast), "record %d: %s", i, got)
		require.Equal(t, viaJSON, fast, "record %d: %s", i, got)

		var back Record
		require.NoError(t, back.UnmarshalBinary(got))
		require.Equal(t, viaJSON, back)
	}
}

func TestRecordBinaryEmptyObjects(t *testing.T) {
	r := &Record{Result: &Result{}, Error: &Problem{}, Progress: &Progress{}, Callback: &Callback{}}
	want, err := json.Marshal(r)
	require.NoError(t, err)
	got, err := r.MarshalBinary()
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got))
}

func TestRecordBinaryTimeJSONRefuses(t *testing.T) {
	for _, at := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600)),
	} {
		r := &Record{ID: "x", CreatedAt: at}
		_, want := json.Marshal(r)
		require.Error(t, want, "%v", at)
		_, err := r.MarshalBinary()
		assert.EqualError(t, err, want.Error())
	}
}

// TestRecordBinaryNil: a nil record encodes and decodes as encoding/json
// has it, without a panic.
func TestRecordBinaryNil(t *testing.T) {
	var r *Record
	got, err := r.MarshalBinary()
	require.NoError(t, err)
	assert.Equal(t, "null", string(got))
	err = r.UnmarshalBinary([]byte(`{"id":"a"}`))
	assert.EqualError(t, err, json.Unmarshal([]byte(`{"id":"a"}`), r).Error())
}

// TestRecordUnmarshalBinaryReplaces shows that UnmarshalBinary leaves
// nothing of what r held, on either path.
func TestRecordUnmarshalBinaryReplaces(t *testing.T) {
	for _, data := range []string{
		`{"id":"b","state":"pending","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`,
		`{"id": "b", "state":"pending", "created_at":"2026-01-01T00:00:00Z"}`, // not compact: encoding/json
	} {
		r := &Record{ID: "a", Owner: "o", Header: http.Header{"A": {"1"}}, Progress: &Progress{Percent: 5}}
		require.NoError(t, r.UnmarshalBinary([]byte(data)))
		assert.Equal(t, "b", r.ID)
		assert.Empty(t, r.Owner)
		assert.Nil(t, r.Header)
		assert.Nil(t, r.Progress)
	}
}

// TestDecodeRecordJSONLeavesTheRestToEncodingJSON lists input the fast
// path must not take, and checks that UnmarshalBinary still answers as
// json.Unmarshal does.
func TestDecodeRecordJSONLeavesTheRestToEncodingJSON(t *testing.T) {
	for _, data := range []string{
		`{"id":"a","id":"b"}`,                    // repeated key
		`{"ID":"a"}`,                             // another case
		`{"id":"a","future":1}`,                  // unknown key
		`{"id":null}`,                            // null
		`{"attempts":1.0}`,                       // not an integer
		`{"attempts":1e3}`,                       // not an integer
		`{"attempts":01}`,                        // not JSON
		`{"attempts":99999999999999999999}`,      // too large
		`{"id":"a"} `,                            // trailing space
		`{"id":"a"}x`,                            // trailing data
		`{"id":"a\u00"}`,                         // bad escape
		"{\"id\":\"a\x01\"}",                     // control character
		`{"body":"!!"}`,                          // not base64
		`{"created_at":"2026-13-01T00:00:00Z"}`,  // no such month
		`{"progress":{"percent":1,"percent":2}}`, // repeated key inside
		`{"header":{"A":["x",null]}}`,            // null in an array
		`{"enqueued":1}`,                         // not a bool
		`{"id":"a",}`,                            // not JSON
		`{"id":"a"`,                              // cut short
		`[]`,                                     // not an object
	} {
		var fast Record
		assert.False(t, decodeRecordJSON([]byte(data), &fast), data)
		var viaJSON, got Record
		want := json.Unmarshal([]byte(data), &viaJSON)
		err := got.UnmarshalBinary([]byte(data))
		if want != nil {
			assert.EqualError(t, err, want.Error(), data)
			continue
		}
		require.NoError(t, err, data)
		assert.Equal(t, viaJSON, got, data)
	}
}

// FuzzDecodeRecordJSON checks that whatever the fast path decodes, it
// decodes as encoding/json does.
func FuzzDecodeRecordJSON(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 40 {
		b, err := randomRecord(rng).MarshalBinary()
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"header":{"A":[],"B":null,"C":["\u003c"]},"body":""}`))
	f.Add([]byte(`{"url":"/a?b=1\u0026c=\ud83d\ude00\u00e9\/\t","header":{"\u00e9":["\"x\""]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var viaJSON, fast, got Record
		want := json.Unmarshal(data, &viaJSON)
		if decodeRecordJSON(data, &fast) {
			require.NoError(t, want, "the fast path decoded what encoding/json refuses")
			require.Equal(t, viaJSON, fast)
		}
		err := got.UnmarshalBinary(data)
		require.Equal(t, want == nil, err == nil)
		if err == nil {
			require.Equal(t, viaJSON, got)
		}
	})
}

// FuzzRecordMarshalBinary checks the encoding against json.Marshal with
// the fuzzer's strings and numbers.
func FuzzRecordMarshalBinary(f *testing.F) {
	f.Add("id", "k", "<&>", []byte("body"), int64(3), int64(1_700_000_000_000_000_000))
	f.Fuzz(func(t *testing.T, s1, s2, s3 string, body []byte, n, at int64) {
		when := time.Unix(0, at).In(time.FixedZone("", int(n%(30*3600))))
		r := &Record{
			ID: s1, Owner: s2, URL: s3, Body: body, Attempts: int(n), Retention: time.Duration(n),
			Header:    http.Header{s1: {s2, s3}, s3: nil},
			CreatedAt: when, UpdatedAt: when,
			Result: &Result{StatusCode: int(n), Header: http.Header{s2: {}}, Body: body},
			Error:  &Problem{Detail: s3},
		}
		want, wantErr := json.Marshal(r)
		got, err := r.MarshalBinary()
		require.Equal(t, wantErr == nil, err == nil)
		if err != nil {
			return
		}
		require.Equal(t, string(want), string(got))
		var viaJSON, fast Record
		require.NoError(t, json.Unmarshal(got, &viaJSON))
		if decodeRecordJSON(got, &fast) {
			require.Equal(t, viaJSON, fast)
		}
	})
}

// BenchmarkRecordBinary encodes and decodes a record as a backend stores a
// running request (its bodies apart), with encoding/json and with
// MarshalBinary and UnmarshalBinary.
func BenchmarkRecordBinary(b *testing.B) {
	now := time.Date(2026, 12, 5, 9, 41, 7, 123456789, time.UTC)
	r := (&Record{
		ID: "01JEDQ4M5Z8X4V2T6R1P0N9K7H3G2F", State: StateRunning, Method: http.MethodPost, URL: "/jobs?report=monthly&format=csv",
		Header:      http.Header{"Accept": {"application/json"}, "User-Agent": {"report-client/1.4"}, "Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
		ContentType: "application/json", Body: []byte(`{"month":"2026-11"}`), Attempts: 1, LeaseToken: "c2f6e9a0b1d34c5e8f7a6b5c4d3e2f1a",
		Progress:  &Progress{Percent: 40, Message: "reading rows"},
		CreatedAt: now, UpdatedAt: now.Add(3 * time.Millisecond), Retention: 24 * time.Hour, TombstoneTTL: 7 * 24 * time.Hour,
	}).WithoutBodies()
	data, err := json.Marshal(r)
	require.NoError(b, err)
	b.Run("op=marshal/codec=encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=marshal/codec=record", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.MarshalBinary(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=unmarshal/codec=encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got Record
			if err := json.Unmarshal(data, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=unmarshal/codec=record", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got Record
			if err := got.UnmarshalBinary(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
