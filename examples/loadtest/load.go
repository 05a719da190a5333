package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asyncreq/asyncreq"
)

// stats are the outcome of one phase: how many operations in how long,
// and their latencies.
type stats struct {
	n       int
	elapsed time.Duration
	lat     []time.Duration // sorted
	// cpu is the CPU time the server in another process used over the
	// phase (see cpu.go); 0 when unknown.
	cpu time.Duration
}

// newStats makes the stats of the latencies lat, collected per client,
// over elapsed.
func newStats(lat [][]time.Duration, elapsed time.Duration) stats {
	all := slices.Concat(lat...)
	slices.Sort(all)
	return stats{n: len(all), elapsed: elapsed, lat: all}
}

func (s stats) rate() float64 { return float64(s.n) / s.elapsed.Seconds() }

// cpuPer returns the server's CPU time per operation, or 0 when unknown.
func (s stats) cpuPer() time.Duration {
	if s.cpu == 0 || s.n == 0 {
		return 0
	}
	return s.cpu / time.Duration(s.n)
}

func (s stats) quantile(q float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	return s.lat[min(len(s.lat)-1, int(q*float64(len(s.lat))))]
}

// quantiles are the latencies every phase reports.
var quantiles = []struct {
	name string
	q    float64
}{{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"max", 1}}

func (s stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%8.0f req/s  (%d in %s; latency", s.rate(), s.n, s.elapsed.Round(time.Millisecond))
	sep := " "
	for _, q := range quantiles {
		fmt.Fprintf(&b, "%s%s %s", sep, q.name, s.quantile(q.q).Round(10*time.Microsecond))
		sep = ", "
	}
	b.WriteString(")")
	if c := s.cpuPer(); c > 0 {
		fmt.Fprintf(&b, "  server CPU %s a request", c.Round(100*time.Nanosecond))
	}
	return b.String()
}

// vs gives s as multiples of the bare handler's figures: its rate, and each
// latency quantile; the text names the bare handler.
func (s stats) vs(bare baseline) string {
	var b strings.Builder
	fmt.Fprintf(&b, "× %s: rate %.2f", bare.name, s.rate()/bare.rate())
	for _, q := range quantiles {
		fmt.Fprintf(&b, ", %s %.1f", q.name, float64(s.quantile(q.q))/float64(bare.quantile(q.q)))
	}
	if c, bc := s.cpuPer(), bare.cpuPer(); c > 0 && bc > 0 {
		fmt.Fprintf(&b, ", server CPU %.1f", float64(c)/float64(bc))
	}
	return b.String()
}

// errStop ends a client of clients without an error.
var errStop = errors.New("stop")

// clients runs op from conc concurrent clients, each until op answers
// errStop or fails, and returns the latencies that op answered with keep,
// one slice per client.
func clients(conc int, op func() (d time.Duration, keep bool, err error)) ([][]time.Duration, error) {
	lat := make([][]time.Duration, conc)
	errs := make([]error, conc)
	var wg sync.WaitGroup
	for i := range conc {
		wg.Go(func() {
			for {
				d, keep, err := op()
				if errors.Is(err, errStop) {
					return
				}
				if err != nil {
					errs[i] = err
					return
				}
				if keep {
					lat[i] = append(lat[i], d)
				}
			}
		})
	}
	wg.Wait()
	return lat, errors.Join(errs...)
}

// timed runs op from o.concurrency clients for o.duration after a
// one-second warm-up, whose operations are left out of the stats. With a
// meter, the stats carry the CPU time the server used from the end of the
// warm-up to the end of the run.
func timed(ctx context.Context, o options, m *cpuMeter, op func() (time.Duration, error)) (stats, error) {
	warm := time.Now().Add(time.Second)
	end := warm.Add(o.duration)
	var cpu time.Duration
	metered := make(chan struct{})
	mctx, stopMeter := context.WithCancel(ctx)
	defer stopMeter()
	go func() {
		defer close(metered)
		if m == nil || sleep(mctx, time.Until(warm)) != nil {
			return
		}
		w := m.begin(mctx)
		if sleep(mctx, time.Until(end)) == nil {
			cpu = w.end(mctx)
		}
	}()
	lat, err := clients(o.concurrency, func() (time.Duration, bool, error) {
		now := time.Now()
		if now.After(end) {
			return 0, false, errStop
		}
		d, err := op()
		return d, now.After(warm), err
	})
	if err != nil {
		stopMeter() // no figure for a run cut short
		<-metered
		return stats{}, err
	}
	<-metered
	st := newStats(lat, o.duration)
	st.cpu = cpu
	return st, nil
}

// drive serves h on loopback and posts to it from o.concurrency clients for
// o.duration after a one-second warm-up, expecting status want.
func drive(ctx context.Context, h http.Handler, o options, hdr http.Header, want int) (stats, error) {
	srv, u, err := serve(h)
	if err != nil {
		return stats{}, err
	}
	defer srv.Close()
	return postAt(ctx, o, u, nil, hdr, want)
}

// postAt posts to u from o.concurrency clients for o.duration after a
// one-second warm-up, expecting status want: how the handlers of this
// process and the servers of others alike are measured. m, if not nil,
// meters the server's CPU time.
func postAt(ctx context.Context, o options, u string, m *cpuMeter, hdr http.Header, want int) (stats, error) {
	client := newClient(o.concurrency)
	defer client.CloseIdleConnections()
	return timed(ctx, o, m, func() (time.Duration, error) {
		_, d, err := post(ctx, client, u, hdr, want)
		return d, err
	})
}

// submit posts n requests to u from conc clients and returns their
// latencies; it hands the status URL of each 202 to accepted, if not nil.
func submit(ctx context.Context, c *http.Client, u string, n, conc int, accepted func(*url.URL)) ([][]time.Duration, error) {
	var next atomic.Int64
	return clients(conc, func() (time.Duration, bool, error) {
		if next.Add(1) > int64(n) {
			return 0, false, errStop
		}
		resp, d, err := post(ctx, c, u, nil, http.StatusAccepted)
		if err == nil && accepted != nil {
			var loc *url.URL
			if loc, err = resp.Location(); err != nil {
				return 0, false, fmt.Errorf("POST %s: 202 without a status URL: %w", u, err)
			}
			accepted(loc)
		}
		return d, true, err
	})
}

var body = []byte("The quick brown fox jumps over the lazy dog.\nA second line.\n")

// do sends one request (with payload as text, if not nil) and reads the
// answer's body, keeping up to keep bytes of it. It returns the answer, the
// kept bytes, and the time until the body was read.
func do(ctx context.Context, c *http.Client, method, u string, hdr http.Header, payload []byte, keep int64) (*http.Response, []byte, time.Duration, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, 0, err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "text/plain")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, 0, err
	}
	defer resp.Body.Close()
	var kept []byte
	if keep > 0 {
		kept, err = io.ReadAll(io.LimitReader(resp.Body, keep))
	}
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%s %s: %w", method, u, err)
	}
	return resp, kept, time.Since(start), nil
}

// post submits body to u and checks that the answer is want.
func post(ctx context.Context, c *http.Client, u string, hdr http.Header, want int) (*http.Response, time.Duration, error) {
	resp, _, d, err := do(ctx, c, http.MethodPost, u, hdr, body, 0)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != want {
		return nil, 0, fmt.Errorf("POST answered %s, want %d", resp.Status, want)
	}
	return resp, d, nil
}

// maxStatus is the most of a status document pollStatus reads.
const maxStatus = 64 << 10

// polled is what one GET of a status URL told.
type polled struct {
	done   bool          // the request has finished (succeeded)
	result *url.URL      // its result URL, once done
	d      time.Duration // the GET's latency
	// created and finished are the status document's created_at and,
	// once done, its updated_at: when the server accepted the request
	// and when the worker recorded its outcome, by the server's clock.
	created, finished time.Time
}

// pollStatus GETs the status URL u once. A request that finished other
// than by succeeding is an error, as the load's processor never fails.
func pollStatus(ctx context.Context, c *http.Client, u *url.URL) (polled, error) {
	resp, doc, d, err := do(ctx, c, http.MethodGet, u.String(), nil, nil, maxStatus)
	if err != nil {
		return polled{}, err
	}
	var st struct {
		Status    asyncreq.State `json:"status"`
		CreatedAt time.Time      `json:"created_at"`
		UpdatedAt time.Time      `json:"updated_at"`
	}
	switch resp.StatusCode {
	case http.StatusSeeOther:
		result, err := resp.Location()
		if err != nil {
			return polled{}, fmt.Errorf("GET %s: 303 without a result URL: %w", u, err)
		}
		p := polled{done: true, result: result, d: d}
		// The 303's body is the status document; a server that sends
		// none leaves the times zero.
		if json.Unmarshal(doc, &st) == nil {
			p.created, p.finished = st.CreatedAt, st.UpdatedAt
		}
		return p, nil
	case http.StatusOK, http.StatusAccepted: // 202: the option for generic pollers
		if err := json.Unmarshal(doc, &st); err != nil {
			return polled{}, fmt.Errorf("GET %s: status document: %w", u, err)
		}
		if st.Status == asyncreq.StatePending || st.Status == asyncreq.StateRunning {
			return polled{d: d, created: st.CreatedAt}, nil
		}
		return polled{}, fmt.Errorf("GET %s: the request is %q: %s", u, st.Status, doc)
	}
	return polled{}, fmt.Errorf("GET %s answered %s", u, resp.Status)
}

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func serve(h http.Handler) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go func() { _ = srv.Serve(ln) }()
	return srv, "http://" + ln.Addr().String() + "/", nil
}

// newClient returns a client of conns keep-alive connections that answers
// redirects itself rather than following them.
func newClient(conns int) *http.Client {
	return &http.Client{
		Transport:     &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns},
		Timeout:       time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
