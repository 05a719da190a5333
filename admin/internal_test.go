package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

func TestSamplerStartStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := memory.New(nil)
		h, err := New(Options{Queues: map[string]asyncreq.Backend{"jobs": b}, InsecureNoAuth: true, SampleInterval: time.Second, Samples: 3})
		require.NoError(t, err)
		require.False(t, h.sampling())

		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		require.NoError(t, h.Start(ctx))
		require.NoError(t, h.Start(ctx), "a second Start does nothing")
		require.True(t, h.sampling())
		synctest.Wait()
		require.Len(t, h.queues[0].samples.samples(), 1, "a sample at once")

		require.NoError(t, b.Enqueue(ctx, asyncreq.NewID(), 0))
		time.Sleep(5*time.Second + time.Millisecond)
		synctest.Wait()
		s := h.queues[0].samples.samples()
		require.Len(t, s, 3, "the ring keeps Samples")
		require.True(t, s[0].at.Before(s[1].at) && s[1].at.Before(s[2].at), "oldest first")
		require.EqualValues(t, 1, s[2].pending)
		require.InDelta(t, 5, s[2].oldest, 1)
		require.EqualValues(t, 0, s[2].finished)

		require.NoError(t, h.Stop(t.Context()))
		require.NoError(t, h.Stop(t.Context()), "a second Stop")
		require.False(t, h.sampling())
		require.ErrorIs(t, h.Start(ctx), errStopped)
	})
}

func TestSamplerStopBeforeStart(t *testing.T) {
	h, err := New(Options{Queues: map[string]asyncreq.Backend{"jobs": memory.New(nil)}, InsecureNoAuth: true})
	require.NoError(t, err)
	require.NoError(t, h.Stop(t.Context()))
	require.ErrorIs(t, h.Start(t.Context()), errStopped, "as http.Server after Shutdown")
	require.False(t, h.sampling())
}

func TestSamplerEndsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := New(Options{Queues: map[string]asyncreq.Backend{"jobs": memory.New(nil)}, InsecureNoAuth: true})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		require.NoError(t, h.Start(ctx))
		cancel()
		synctest.Wait()
		require.False(t, h.sampling())
		require.NoError(t, h.Stop(t.Context()))
	})
}

func TestChartsFromSamples(t *testing.T) {
	t0 := time.Now().Add(-time.Minute)
	r := newRing(4)
	require.Nil(t, r.throughput())
	for i, s := range []sample{
		{at: t0, finished: 10, pending: 3, oldest: 2},
		{at: t0.Add(10 * time.Second), finished: 30, pending: 1, oldest: 0.5},
		{at: t0.Add(20 * time.Second), finished: 5, pending: 0, oldest: 0}, // a purge
		{at: t0.Add(30 * time.Second), finished: 45, pending: -1, oldest: -1},
		{at: t0.Add(40 * time.Second), finished: 65, pending: 2, oldest: 7},
	} {
		r.add(s)
		require.Len(t, r.samples(), min(i+1, 4))
	}
	require.NotNil(t, r.throughput())
	require.InDelta(t, 2.0, *r.throughput(), 1e-9)

	cs := charts(r.samples())
	require.Len(t, cs, 2)
	tput, lat := cs[0], cs[1]
	require.Len(t, tput.points, 3)
	require.Equal(t, []float64{0, 4, 2}, []float64{tput.points[0].v, tput.points[1].v, tput.points[2].v})
	require.Len(t, lat.points, 3, "a sample without the figure has no point")

	svg := string(tput.svg())
	require.True(t, strings.HasPrefix(svg, `<svg class="chart"`))
	require.Contains(t, svg, `<polyline class="chart-line" points="`)
	require.Contains(t, svg, ">5/s<", "the axis tops at a round number")
	require.NotContains(t, svg, "style=")
	empty := string(chart{title: "<b>"}.svg())
	require.Contains(t, empty, "no samples yet")
	require.Contains(t, empty, "&lt;b&gt;")

	for d, want := range map[time.Duration]string{
		0: "0s", 1400 * time.Microsecond: "1ms", 140 * time.Millisecond: "140ms", 1449 * time.Millisecond: "1.4s",
		42 * time.Second: "42s", 61 * time.Second: "1m01s", 90 * time.Minute: "1h30m", 50 * time.Hour: "2d",
	} {
		require.Equal(t, want, formatSpan(d), d)
	}
	require.Equal(t, 1.0, niceCeil(0))
	require.Equal(t, 5.0, niceCeil(4))
	require.Equal(t, 20.0, niceCeil(11))
	require.Equal(t, 0.5, niceCeil(0.31))
}

func TestTokenSessionExpires(t *testing.T) {
	tok, err := NewToken("0123456789abcdef")
	require.NoError(t, err)
	now := time.Now()
	tok.now = func() time.Time { return now }
	w := httptest.NewRecorder()
	tok.setSession(w, httptest.NewRequest(http.MethodPost, "/login", nil), "/")
	c := w.Result().Cookies()[0]

	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(c)
	require.NoError(t, tok.Authorize(r))
	now = now.Add(sessionTTL + time.Second)
	require.ErrorIs(t, tok.Authorize(r), ErrUnauthorized)

	// Another secret's sessions and tampered ones are refused.
	now = now.Add(-sessionTTL)
	other, err := NewToken("fedcba9876543210")
	require.NoError(t, err)
	other.now = tok.now
	require.ErrorIs(t, other.Authorize(r), ErrUnauthorized)
	exp, sig, _ := strings.Cut(c.Value, ".")
	for _, v := range []string{"", exp, exp + ".", "1" + exp + "." + sig, exp + "." + sig + "A"} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})
		require.ErrorIs(t, tok.Authorize(r), ErrUnauthorized, v)
	}

	// A bearer token: the secret, or nothing.
	for auth, ok := range map[string]bool{
		"Bearer 0123456789abcdef": true, "bearer 0123456789abcdef": true, "Bearer 0123456789abcdeF": false,
		"Basic 0123456789abcdef": false, "Bearer": false,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", auth)
		r.AddCookie(c) // a bad Authorization header is not saved by a good cookie
		if ok {
			require.NoError(t, tok.Authorize(r), auth)
		} else {
			require.ErrorIs(t, tok.Authorize(r), ErrUnauthorized, auth)
		}
	}
}
