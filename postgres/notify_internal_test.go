package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sends records what a notifier sent, and when each send began.
type sends struct {
	mu       sync.Mutex
	at       []time.Time
	payloads map[string]int
	sent     chan struct{} // has an element after each send
}

func newSends() *sends {
	return &sends{payloads: make(map[string]int), sent: make(chan struct{}, 1000)}
}

func (s *sends) exec(_ context.Context, payloads []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at = append(s.at, time.Now())
	for _, p := range payloads {
		s.payloads[p]++
	}
	s.sent <- struct{}{}
	return nil
}

func (s *sends) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at)
}

// TestNotifierSpacesSendsUnderLoad posts a change every 200µs: the sends are
// at least the gap apart, so there are about as many as gaps in the span,
// not one for each change or two, and every change is sent.
func TestNotifierSpacesSendsUnderLoad(t *testing.T) {
	const gap, span = 20 * time.Millisecond, 200 * time.Millisecond
	s := newSends()
	n := startNotifier(slog.New(slog.DiscardHandler), "ch", gap, s.exec)
	posted := 0
	for start := time.Now(); time.Since(start) < span; posted++ {
		n.post(fmt.Sprint("r", posted))
		time.Sleep(200 * time.Microsecond)
	}
	closed := time.Now()
	n.close() // sends what waits at once

	require.Len(t, s.payloads, posted, "every change is sent")
	for p, k := range s.payloads {
		require.Equal(t, 1, k, "%s sent once", p)
	}
	require.Greater(t, posted, 100)
	require.LessOrEqual(t, len(s.at), int(span/gap)+3, "sends for %d changes", posted)
	// The notifier times a send from when it starts it; exec stamps it a
	// moment later, and that moment varies with scheduling (a race-detector
	// run on two busy cores: 35µs). So the spacing seen here may fall short
	// of the gap by a little, never by a quarter of it as sends made for
	// every change or two would (200µs apart).
	for i := 1; i < len(s.at) && s.at[i].Before(closed); i++ {
		require.GreaterOrEqual(t, s.at[i].Sub(s.at[i-1]), gap-gap/4, "send %d began too soon after the one before", i)
	}
}

// TestNotifierSendsALoneChangeAtOnce: after a quiet spell longer than the
// gap, a change is sent without waiting for it.
func TestNotifierSendsALoneChangeAtOnce(t *testing.T) {
	const gap = 2 * time.Second
	s := newSends()
	n := startNotifier(slog.New(slog.DiscardHandler), "ch", gap, s.exec)
	defer n.close()
	start := time.Now()
	n.post("r1")
	<-s.sent
	require.Less(t, time.Since(start), gap/2, "the first change waited for the gap")
}

// TestNotifierCloseSendsWhatWaits: a change waiting for the gap to pass is
// sent at once when the notifier closes.
func TestNotifierCloseSendsWhatWaits(t *testing.T) {
	const gap = time.Minute
	s := newSends()
	n := startNotifier(slog.New(slog.DiscardHandler), "ch", gap, s.exec)
	n.post("r1")
	<-s.sent
	n.post("r2")
	start := time.Now()
	n.close()
	require.Less(t, time.Since(start), gap/2)
	require.Equal(t, 2, s.count())
	require.Equal(t, map[string]int{"r1": 1, "r2": 1}, s.payloads)
}
