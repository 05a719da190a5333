package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// runMixed submits o.n requests from o.concurrency clients while the worker
// runs, and o.pollers clients poll the status of every accepted request
// until it is done. It reports jobs/s from the first submit to the last
// done, and the accepts and polls as they ran beside each other.
func runMixed(ctx context.Context, o options, bare baseline) error {
	_, err := mixed(ctx, o, bare)
	return err
}

// mixedFigures are what a mixed run measured.
type mixedFigures struct {
	rate    float64 // jobs/s, first submit to the last done
	accepts stats
	polls   stats
	cpu     time.Duration // the server's CPU time over the phase; 0: unknown
}

// mixed runs and prints a mixed phase and returns its figures.
func mixed(ctx context.Context, o options, bare baseline) (mixedFigures, error) {
	var fig mixedFigures
	tg, err := openTarget(ctx, o, "mixed", o.n)
	if err != nil {
		return fig, err
	}
	defer tg.close()
	fmt.Printf("mixed     %d requests from %d clients, %d status pollers (every %s), %s\n", o.n, o.concurrency, o.pollers, o.pollInterval, tg.desc)
	stop, err := profile(o, "mixed")
	if err != nil {
		return fig, err
	}
	defer stop()

	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	submitters, pollers := newClient(o.concurrency), newClient(o.pollers)
	defer submitters.CloseIdleConnections()
	defer pollers.CloseIdleConnections()
	tr := newTracker(o.n, o.pollInterval)
	cpu := tg.cpu.begin(ctx)
	start := time.Now()
	type pollOutcome struct {
		lat [][]time.Duration
		err error
	}
	pollDone := make(chan pollOutcome, 1)
	go func() {
		lat, err := tr.poll(ctx, pollers, o.pollers)
		pollDone <- pollOutcome{lat, err}
	}()
	add := tr.add
	if o.accepted != nil {
		add = func(u *url.URL) { o.accepted(u); tr.add(u) }
	}
	acceptLat, err := submit(ctx, submitters, tg.url, o.n, o.concurrency, add)
	accepted := time.Since(start)
	if err != nil {
		cancel()
		<-pollDone
		return fig, err
	}
	p := <-pollDone
	if p.err != nil {
		return fig, fmt.Errorf("%d of %d requests seen done: %w", o.n-int(tr.left.Load()), o.n, p.err)
	}
	// What the server spent on each request: its accept, its polls, its
	// claim and outcome.
	fig.cpu = cpu.end(ctx)

	done := func(how string, from, at time.Time) {
		d := at.Sub(from)
		rate := float64(o.n) / d.Seconds()
		if fig.rate == 0 {
			fig.rate = rate
		}
		fmt.Printf("mixed     done, first submit to %-19s %8.0f jobs/s  (in %s; %.2f × %s)\n", how+":", rate, d.Round(time.Millisecond), rate/bare.rate(), bare.name)
	}
	if tg.acks != nil {
		// The outcome is visible a moment before its ack.
		select {
		case <-tg.acks.done:
			done("last ack", start, tg.acks.at)
		case <-time.After(10 * time.Second):
			return fig, fmt.Errorf("every request was seen done, but only %d of %d acked after 10s more", tg.acks.n.Load(), o.n)
		}
	}
	if !tr.unknown {
		// What the worker did, free of the pollers' pace: from the first
		// request's acceptance to the last outcome, both as the server
		// recorded them, so that no clock but the server's is involved.
		done("last outcome (server)", tr.first, tr.finished)
	}
	done("last seen done", start, tr.last)
	accepts := newStats(acceptLat, accepted)
	fig.accepts = accepts
	fmt.Printf("mixed     accepts:      %s  %s\n", accepts, accepts.vs(bare))
	polls := newStats(p.lat, tr.last.Sub(start))
	fig.polls = polls
	fmt.Printf("mixed     status polls: %s  %s\n", polls, polls.vs(bare))
	if fig.cpu > 0 {
		per := fig.cpu / time.Duration(o.n)
		vs := ""
		if bc := bare.cpuPer(); bc > 0 {
			vs = fmt.Sprintf("; %.1f × %s", float64(per)/float64(bc), bare.name)
		}
		fmt.Printf("mixed     server CPU:   %s a request, polls included (%s for %d%s)\n", per.Round(100*time.Nanosecond), fig.cpu.Round(10*time.Millisecond), o.n, vs)
	}
	if polls.n == o.n {
		// No poll found a request still to do: the worker was never behind
		// the pollers, so they set when the last was seen done.
		fmt.Printf("mixed     every request was done at its first poll: the pollers' pace set the last-seen-done figure (try more -pollers)\n")
	}
	return fig, nil
}

// tracker holds the status URLs of accepted requests until pollers have
// seen each of them done.
type tracker struct {
	todo     chan pending // never full: it has room for every request
	interval time.Duration
	left     atomic.Int64
	all      chan struct{} // closed when left reaches 0
	last     time.Time     // when the last was seen done; read after all is closed

	mu sync.Mutex
	// first and finished are the earliest acceptance and the latest
	// outcome among the requests seen done, by the server's clock (the
	// status documents' created_at and updated_at); zero when a document
	// lacked them.
	first, finished time.Time
	unknown         bool // a done request's document had no times
}

// span widens the server-clock span by a done request's times.
func (t *tracker) span(created, finished time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if created.IsZero() || finished.IsZero() {
		t.unknown = true
		return
	}
	if t.first.IsZero() || created.Before(t.first) {
		t.first = created
	}
	if finished.After(t.finished) {
		t.finished = finished
	}
}

// pending is a request not yet seen done, and when to poll it next.
type pending struct {
	status *url.URL
	due    time.Time
}

func newTracker(n int, interval time.Duration) *tracker {
	t := &tracker{todo: make(chan pending, n), interval: interval, all: make(chan struct{})}
	t.left.Store(int64(n))
	return t
}

// add hands the tracker an accepted request's status URL, to poll at once.
func (t *tracker) add(status *url.URL) { t.todo <- pending{status: status} }

// poll runs conc pollers until every request is seen done, taking the
// requests in turn and each at most every t.interval.
func (t *tracker) poll(ctx context.Context, c *http.Client, conc int) ([][]time.Duration, error) {
	return clients(conc, func() (time.Duration, bool, error) {
		var p pending
		select {
		case <-t.all:
			return 0, false, errStop
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case p = <-t.todo:
		}
		if err := sleep(ctx, time.Until(p.due)); err != nil {
			return 0, false, err
		}
		st, err := pollStatus(ctx, c, p.status)
		if err != nil {
			return 0, false, err
		}
		if !st.done {
			p.due = time.Now().Add(t.interval)
			t.todo <- p
			return st.d, true, nil
		}
		t.span(st.created, st.finished)
		if t.left.Add(-1) == 0 {
			t.last = time.Now()
			close(t.all)
		}
		return st.d, true, nil
	})
}

// runPollE2E measures submit-to-result as a client that polls sees it:
// o.concurrency clients in a closed loop each submit, poll the status every
// o.pollInterval (ignoring Retry-After), follow the 303 and GET the result.
func runPollE2E(ctx context.Context, o options, bare baseline) error {
	_, err := pollE2E(ctx, o, bare)
	return err
}

// pollE2E runs and prints a poll-e2e phase and returns its figures.
func pollE2E(ctx context.Context, o options, bare baseline) (stats, error) {
	st, desc, err := timedAt(ctx, o, "poll-e2e", func(c *http.Client, u string) (time.Duration, error) {
		return submitToResult(ctx, c, u, o.pollInterval)
	})
	if err != nil {
		return stats{}, err
	}
	fmt.Printf("poll-e2e  submit, poll every %s, GET the result (%s)\n", o.pollInterval, desc)
	fmt.Printf("poll-e2e  submit-to-result: %s  %s\n", st, st.vs(bare))
	return st, nil
}

// resultWait bounds how long submitToResult polls one request.
const resultWait = time.Minute

// submitToResult submits one request to u, polls its status every interval
// from then on until it is done, and GETs its result; it returns the time
// from the submit to the result.
func submitToResult(ctx context.Context, c *http.Client, u string, interval time.Duration) (time.Duration, error) {
	start := time.Now()
	resp, _, err := post(ctx, c, u, nil, http.StatusAccepted)
	if err != nil {
		return 0, err
	}
	status, err := resp.Location()
	if err != nil {
		return 0, fmt.Errorf("POST %s: 202 without a status URL: %w", u, err)
	}
	for {
		if time.Since(start) > resultWait {
			return 0, fmt.Errorf("%s: not done after %s", status, resultWait)
		}
		if err := sleep(ctx, interval); err != nil {
			return 0, err
		}
		p, err := pollStatus(ctx, c, status)
		if err != nil {
			return 0, err
		}
		if !p.done {
			continue
		}
		result := p.result
		resp, _, _, err := do(ctx, c, http.MethodGet, result.String(), nil, nil, 0)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET %s answered %s, want 200", result, resp.Status)
		}
		return time.Since(start), nil
	}
}
