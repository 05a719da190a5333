package asyncreqtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// testCase is one case of the kit: a subtest whose name names the contract
// it checks. run makes its own fresh instance from the factory.
type testCase struct {
	name string
	run  func(t *testing.T, ctx context.Context)
}

// group is a named set of cases, run as one level of subtests.
type group struct {
	name  string
	cases []testCase
}

// runGroups runs every case of every group under a watchdog.
func runGroups(t *testing.T, cfg config, groups []group) {
	t.Helper()
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, c := range g.cases {
				runCase(t, cfg, c.name, c.run)
			}
		})
	}
}

// testTime returns the current time with a sub-microsecond part below
// half a microsecond, so that a Store that rounds to microseconds and one
// that truncates keep the same instant, in a zone other than UTC.
func testTime() time.Time {
	zone := time.FixedZone("UTC+02:30", 2*60*60+30*60)
	return time.Now().Truncate(time.Microsecond).Add(321 * time.Nanosecond).In(zone)
}

// bodyHash is the hex SHA-256 of body: a value of the form of the
// handler's request fingerprints (Record.BodyHash), which Stores keep as
// an opaque string.
func bodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// newRecord returns a pending record with a new id, as the handler creates
// one, with the given owner and idempotency key.
func newRecord(owner, key string) *asyncreq.Record {
	now := testTime()
	body := []byte("asyncreqtest body " + asyncreq.NewID())
	return &asyncreq.Record{
		ID:             asyncreq.NewID(),
		Owner:          owner,
		IdempotencyKey: key,
		BodyHash:       bodyHash(body),
		State:          asyncreq.StatePending,
		Method:         http.MethodPost,
		URL:            "/jobs/",
		ContentType:    "text/plain; charset=utf-8",
		Body:           body,
		CreatedAt:      now,
		UpdatedAt:      now,
		Retention:      time.Hour,
		TombstoneTTL:   time.Hour,
	}
}

// fullRecord returns a record with every field set to a value other than
// its zero value, including bytes that are not UTF-8, repeated header
// values and times in a zone other than UTC. Durations are whole
// milliseconds.
func fullRecord() *asyncreq.Record {
	now := testTime()
	body := []byte{0x00, 0x01, 0xfe, 0xff, '{', '"', '\\', '}', 0xc3, 0x28, '\n'}
	return &asyncreq.Record{
		ID:             asyncreq.NewID(),
		Owner:          "tenant/é 1",
		IdempotencyKey: "key:" + asyncreq.NewID(),
		BodyHash:       bodyHash(body),
		State:          asyncreq.StateSucceeded,
		Enqueued:       true,
		Method:         http.MethodPut,
		URL:            "/jobs/?q=a%20b&r=%C3%A9",
		Header: http.Header{
			"Accept-Language": {"en", "fr;q=0.8"},
			"X-Trace-Id":      {"abc-123"},
		},
		ContentType:     "application/octet-stream",
		Body:            body,
		Attempts:        3,
		LeaseToken:      asyncreq.NewID(),
		CancelRequested: true,
		Progress:        &asyncreq.Progress{Percent: 40, Message: "résumé, step 2/5"},
		Result: &asyncreq.Result{
			StatusCode:  http.StatusCreated,
			ContentType: "image/png",
			Header:      http.Header{"X-Result": {"1", "2"}, "Cache-Control": {"max-age=60"}},
			Body:        []byte{0x89, 'P', 'N', 'G', 0x00, 0xff},
		},
		Error: &asyncreq.Problem{
			Type:     "https://example.com/problems/teapot",
			Title:    "I'm a teapot",
			Status:   http.StatusTeapot,
			Detail:   "the \"pot\" is <short> & stout",
			Instance: "/jobs/x",
		},
		CreatedAt:    now.Add(-90 * time.Second),
		UpdatedAt:    now,
		Retention:    90*time.Minute + 250*time.Millisecond,
		TombstoneTTL: 49 * time.Hour,
		ExpiresAt:    now.Add(time.Hour),
		Callback: &asyncreq.Callback{
			URL:       "https://hooks.example.com/done?for=é%201",
			StatusURL: "/jobs/x/status",
			ResultURL: "/jobs/x",
			State:     asyncreq.CallbackRetrying,
			Attempts:  2,
			LastError: "the receiver answered 503 Service Unavailable",
			UpdatedAt: now.Add(-time.Second),
		},
	}
}

// normalize returns a copy of r for comparison: times at microsecond
// precision in UTC, and empty headers and bodies as nil.
func normalize(r *asyncreq.Record) *asyncreq.Record {
	if r == nil {
		return nil
	}
	c := r.Clone()
	c.CreatedAt = normTime(c.CreatedAt)
	c.UpdatedAt = normTime(c.UpdatedAt)
	c.ExpiresAt = normTime(c.ExpiresAt)
	if c.Callback != nil {
		c.Callback.UpdatedAt = normTime(c.Callback.UpdatedAt)
	}
	if len(c.Header) == 0 {
		c.Header = nil
	}
	if len(c.Body) == 0 {
		c.Body = nil
	}
	if c.Result != nil {
		if len(c.Result.Header) == 0 {
			c.Result.Header = nil
		}
		if len(c.Result.Body) == 0 {
			c.Result.Body = nil
		}
	}
	return c
}

func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Microsecond).UTC()
}

// requireSameRecord fails t unless got holds what want holds (see
// normalize).
func requireSameRecord(t *testing.T, want, got *asyncreq.Record, msgAndArgs ...any) {
	t.Helper()
	require.NotNil(t, got, msgAndArgs...)
	require.Equal(t, normalize(want), normalize(got), msgAndArgs...)
}

// mutate changes, in place, every piece of memory that r shares through
// slices, maps and pointers, and its plain fields.
func mutate(r *asyncreq.Record) {
	if r == nil {
		return
	}
	for i := range r.Body {
		r.Body[i] ^= 0xff
	}
	for k, vs := range r.Header {
		for i := range vs {
			vs[i] = "mutated"
		}
		r.Header[k] = vs
	}
	if r.Header != nil {
		r.Header.Set("X-Mutated", "1")
	}
	if r.Progress != nil {
		r.Progress.Percent = 99
		r.Progress.Message = "mutated"
	}
	if r.Result != nil {
		for i := range r.Result.Body {
			r.Result.Body[i] ^= 0xff
		}
		for _, vs := range r.Result.Header {
			for i := range vs {
				vs[i] = "mutated"
			}
		}
		if r.Result.Header != nil {
			r.Result.Header.Set("X-Mutated", "1")
		}
		r.Result.StatusCode = 599
	}
	if r.Error != nil {
		r.Error.Detail = "mutated"
	}
	r.Attempts += 1000
	r.State = asyncreq.StateFailed
}

// randomBytes returns n pseudo-random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{'a', 's', 'y', 'n', 'c'})
	_, _ = r.Read(b)
	return b
}

// errFromFn is returned by Update functions to check that Update returns it.
type errFromFn struct{ id string }

func (e *errFromFn) Error() string { return fmt.Sprintf("asyncreqtest: update of %s refused", e.id) }
