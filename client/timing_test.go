package client

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"3", 3 * time.Second, true},
		{" 7 ", 7 * time.Second, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"99999999999999999999", time.Duration(1<<63 - 1), true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},                  // in the past
		{now.Add(30 * time.Second).Format(time.RFC850), 30 * time.Second, true}, // obsolete form
		{now.Add(30 * time.Second).Format(time.ANSIC), 30 * time.Second, true},  // asctime
		{"Thu, 26 Nov 2026 25:00:00 GMT", 0, false},                             // malformed
	}
	for _, tc := range cases {
		got, ok := parseRetryAfter(tc.in, now)
		assert.Equal(t, tc.ok, ok, "parseRetryAfter(%q) ok", tc.in)
		assert.Equal(t, tc.want, got, "parseRetryAfter(%q)", tc.in)
	}
}

func TestDelayRetryAfterBounds(t *testing.T) {
	c, err := New(&Options{PollMin: 200 * time.Millisecond, PollMax: 10 * time.Second, PollInitial: time.Second, Jitter: -1})
	require.NoError(t, err)
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	var b backoff
	h := func(v string) http.Header { return http.Header{"Retry-After": {v}} }

	assert.Equal(t, 3*time.Second, c.delay(h("3"), &b), "seconds honoured")
	assert.Equal(t, 200*time.Millisecond, c.delay(h("0"), &b), "floor")
	assert.Equal(t, 200*time.Millisecond, c.delay(h(now.Add(-time.Minute).Format(http.TimeFormat)), &b), "date in the past waits the floor")
	assert.Equal(t, 5*time.Second, c.delay(h(now.Add(5*time.Second).Format(http.TimeFormat)), &b), "HTTP-date honoured")
	assert.Equal(t, 10*time.Second, c.delay(h("86400"), &b), "huge value capped")
	assert.Equal(t, 10*time.Second, c.delay(h("99999999999999999999"), &b), "overflowing value capped")
}

func TestDelayExponentialFallback(t *testing.T) {
	c, err := New(&Options{PollMin: 100 * time.Millisecond, PollMax: 5 * time.Second, PollInitial: 500 * time.Millisecond, Jitter: -1})
	require.NoError(t, err)
	var b backoff
	var got []time.Duration
	for range 6 {
		got = append(got, c.delay(nil, &b))
	}
	assert.Equal(t, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}, got)

	// A Retry-After starts the fallback over.
	assert.Equal(t, time.Second, c.delay(http.Header{"Retry-After": {"1"}}, &b))
	assert.Equal(t, 500*time.Millisecond, c.delay(nil, &b))
}

func TestDelayJitterOnlyAdds(t *testing.T) {
	c, err := New(&Options{PollMin: 100 * time.Millisecond, PollMax: 10 * time.Second, Jitter: 0.5})
	require.NoError(t, err)
	var b backoff
	c.rand = func() float64 { return 0 }
	assert.Equal(t, 2*time.Second, c.delay(http.Header{"Retry-After": {"2"}}, &b))
	c.rand = func() float64 { return 0.999999 }
	d := c.delay(http.Header{"Retry-After": {"2"}}, &b)
	assert.Greater(t, d, 2*time.Second+900*time.Millisecond)
	assert.LessOrEqual(t, d, 3*time.Second)
	// Jitter never goes past the ceiling.
	assert.Equal(t, 10*time.Second, c.delay(http.Header{"Retry-After": {"9"}}, &b))
}

func TestNewValidatesOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"PollMin":           {PollMin: -1},
		"PollMax":           {PollMax: -1},
		"PollInitial":       {PollInitial: -1},
		"LongPoll":          {LongPoll: -1},
		"MaxSubmitAttempts": {MaxSubmitAttempts: -1},
		"MaxBodyBytes":      {MaxBodyBytes: -1},
		"Jitter":            {Jitter: 2},
		"is below":          {PollMin: time.Second, PollMax: time.Millisecond},
		"TrustedOrigins":    {TrustedOrigins: []string{"not an origin"}},
	} {
		_, err := New(&o)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), name)
	}
	c, err := New(nil)
	require.NoError(t, err)
	assert.Equal(t, 100*time.Millisecond, c.pollMin)
	assert.Equal(t, time.Minute, c.pollMax)
	assert.Equal(t, 5, c.submitAttempts)
}
