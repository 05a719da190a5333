package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A run's throughput moves with the speed of the machine, which here
// changes by a factor of two within a day, and with how the two cores are
// shared between the load program, the server and its database. The CPU
// time a server spends per request moves much less, so every phase against
// a server in another process also reports it: the server's
// process_cpu_seconds_total, read from its Prometheus /metrics (the
// example server and the bare server both serve it) at the start and the
// end of the measured window, divided by the requests in it.

// cpuMetric is the Prometheus series of a process's CPU time in seconds,
// user and system.
const cpuMetric = "process_cpu_seconds_total"

// cpuReadWait bounds one read of a server's /metrics.
const cpuReadWait = 5 * time.Second

// maxMetrics is the most of a /metrics answer cpuMeter reads.
const maxMetrics = 4 << 20

// cpuMeter reads the CPU time of the server at one origin.
type cpuMeter struct {
	url    string // its /metrics
	client *http.Client
}

// newCPUMeter returns the meter of the server that serves target, an
// absolute URL.
func newCPUMeter(target string) (*cpuMeter, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("%q is not an absolute URL", target)
	}
	return &cpuMeter{
		url:    u.Scheme + "://" + u.Host + "/metrics",
		client: &http.Client{Timeout: cpuReadWait},
	}, nil
}

// errNoCPU is read's error when the server's metrics carry no CPU time.
var errNoCPU = errors.New("no " + cpuMetric + " in its /metrics")

// read returns the CPU time the server has used so far.
func (m *cpuMeter) read(ctx context.Context) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", m.url, resp.Status)
	}
	return parseCPU(bufio.NewScanner(io.LimitReader(resp.Body, maxMetrics)))
}

// parseCPU finds cpuMetric, without labels, in a Prometheus text
// exposition.
func parseCPU(sc *bufio.Scanner) (time.Duration, error) {
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), cpuMetric+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("%s %q is not a number of seconds", cpuMetric, rest)
		}
		return time.Duration(v * float64(time.Second)), nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errNoCPU
}

// cpuWindow reads a server's CPU time at the start and the end of a
// window; the zero cpuWindow (no meter) measures nothing.
type cpuWindow struct {
	m     *cpuMeter
	start time.Duration
	err   error
}

// begin reads the CPU time at the start of the window.
func (m *cpuMeter) begin(ctx context.Context) *cpuWindow {
	w := &cpuWindow{m: m}
	if m != nil {
		w.start, w.err = m.read(ctx)
	}
	return w
}

// end returns the CPU time the server used since begin, or 0 when it is
// unknown: no meter, or a read failed (the figure is left out, not the
// run).
func (w *cpuWindow) end(ctx context.Context) time.Duration {
	if w == nil || w.m == nil || w.err != nil {
		return 0
	}
	now, err := w.m.read(ctx)
	if err != nil || now < w.start {
		return 0
	}
	return max(now-w.start, time.Nanosecond)
}
