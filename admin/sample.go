package admin

import (
	"context"
	"errors"
	"sync"
	"time"
)

// This file is the sampling behind the dashboard's charts: a ring of
// samples per queue, and the goroutine that fills them while the Handler
// is started.

// sample is how a queue stood at one time. A figure the backend cannot
// tell is -1.
type sample struct {
	at       time.Time
	finished int64   // records in a final state (Lister)
	pending  int64   // due entries (QueueStater)
	oldest   float64 // oldest pending age in seconds (QueueStater)
}

// ring keeps the last samples of a queue. It is safe for concurrent use.
type ring struct {
	mu   sync.Mutex
	buf  []sample
	next int
	full bool
}

func newRing(n int) *ring { return &ring{buf: make([]sample, n)} }

func (r *ring) add(s sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// samples returns the samples, oldest first.
func (r *ring) samples() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]sample(nil), r.buf[:r.next]...)
	}
	return append(append([]sample(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

// throughput returns the requests per second that reached a final state
// between the last two samples, or nil when there are not two with
// counts.
func (r *ring) throughput() *float64 {
	s := r.samples()
	if len(s) < 2 {
		return nil
	}
	v, ok := rate(s[len(s)-2], s[len(s)-1])
	if !ok {
		return nil
	}
	return &v
}

// rate returns the finished requests per second from a to b. A count
// that fell (a purge) reads as 0.
func rate(a, b sample) (float64, bool) {
	dt := b.at.Sub(a.at).Seconds()
	if a.finished < 0 || b.finished < 0 || dt <= 0 {
		return 0, false
	}
	return float64(max(b.finished-a.finished, 0)) / dt, true
}

// take samples q at now; a figure that cannot be read is -1.
func (h *Handler) take(ctx context.Context, q *queue, now time.Time) sample {
	s := sample{at: now, finished: -1, pending: -1, oldest: -1}
	if q.lister != nil {
		if c, err := q.lister.CountStates(ctx); err == nil {
			s.finished = c.Succeeded + c.Failed + c.Canceled
		} else if ctx.Err() == nil {
			h.logRead(ctx, q, "sampling the counts", err)
		}
	}
	if q.stater != nil {
		if st, err := q.stater.QueueStats(ctx); err == nil {
			s.pending = st.Pending
			s.oldest = st.OldestPendingAge().Seconds()
		} else if ctx.Err() == nil {
			h.logRead(ctx, q, "sampling the queue statistics", err)
		}
	}
	return s
}

// sampleAll samples every queue once, each read bounded by the interval.
func (h *Handler) sampleAll(ctx context.Context) {
	for _, q := range h.queues {
		qctx, cancel := context.WithTimeout(ctx, h.opts.SampleInterval)
		q.samples.add(h.take(qctx, q, time.Now()))
		cancel()
	}
}

// sampler runs the sampling goroutine of a started Handler.
type sampler struct {
	h      *Handler
	mu     sync.Mutex
	state  int                // 0 new, 1 started, 2 stopped
	cancel context.CancelFunc // ends the goroutine; nil before Start
	done   chan struct{}      // closed when it ended; nil before Start
}

func (s *sampler) init(h *Handler) { s.h = h }

// errStopped is Start's error after Stop.
var errStopped = errors.New("admin: Start after Stop")

// Start starts sampling every queue each Options.SampleInterval for the
// dashboard's charts, until ctx ends or Stop is called. Each sample costs
// a CountStates call (when the queue's Store is an asyncreq.Lister) and a
// QueueStats call (when its Queue is an asyncreq.QueueStater) per queue;
// see each backend's package documentation for what those cost. Start
// returns at once; a second call does nothing, and a call after Stop
// returns an error.
func (h *Handler) Start(ctx context.Context) error {
	s := &h.sampler
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case 1:
		return nil
	case 2:
		return errStopped
	}
	s.state = 1
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.run(ctx)
	return nil
}

func (s *sampler) run(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.h.opts.SampleInterval)
	defer t.Stop()
	for {
		s.h.sampleAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stop stops the sampling and waits for it to end, or for ctx to end, in
// which case it returns ctx.Err(). It is safe to call before Start and
// more than once.
func (h *Handler) Stop(ctx context.Context) error {
	s := &h.sampler
	s.mu.Lock()
	s.state = 2
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sampling reports whether the Handler samples its queues.
func (h *Handler) sampling() bool {
	h.sampler.mu.Lock()
	state, done := h.sampler.state, h.sampler.done
	h.sampler.mu.Unlock()
	if state != 1 {
		return false
	}
	select {
	case <-done:
		return false // its context ended
	default:
		return true
	}
}
