package client

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// backoff counts the waits made without a Retry-After, for the exponential
// fallback.
type backoff struct{ n int }

// reset starts the exponential fallback over.
func (b *backoff) reset() { b.n = 0 }

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP-date
// (RFC 9110, section 10.2.3), relative to now. ok is false when the value
// is absent or malformed. A date in the past gives a zero delay.
func parseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return time.Duration(1<<63 - 1), true
			}
			return 0, false
		}
		if s > int64((1<<63-1)/time.Second) {
			return time.Duration(1<<63 - 1), true
		}
		return time.Duration(s) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// delay returns how long to wait before the next request, given the last
// answer's header (nil if there was none): its Retry-After if it has one,
// otherwise the next step of the exponential backoff; held between PollMin
// and PollMax, with jitter added.
func (c *Client) delay(h http.Header, b *backoff) time.Duration {
	var d time.Duration
	if ra, ok := parseRetryAfter(h.Get("Retry-After"), c.now()); ok {
		b.reset()
		d = ra
	} else {
		d = c.pollInitial
		for i := 0; i < b.n && d < c.pollMax; i++ {
			d *= 2
		}
		b.n++
	}
	d = min(max(d, c.pollMin), c.pollMax)
	if c.jitter > 0 {
		d += time.Duration(float64(d) * c.jitter * c.rand())
		d = min(d, c.pollMax)
	}
	return d
}

// retryDelay returns how long to wait before repeating a request that
// failed with err.
func (c *Client) retryDelay(err error, b *backoff) time.Duration {
	var re *ResponseError
	if errors.As(err, &re) {
		return c.delay(re.Header, b)
	}
	return c.delay(nil, b)
}
