package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load of -load, in four equal phases of -d: /jobs gets 10 submits a
// second, then 40, then 100 (more than the example server's worker runs
// with -work-time 50ms -concurrency 4, 80 a second, so its queue grows),
// then 5 while the queue drains; /reports gets 5 a second throughout.
// Among /jobs' submits, every 20th repeats the one before with its
// Idempotency-Key (a replay), every 25th is larger than the server's 1 MiB
// limit (413) and every 30th is empty (422).
var jobsRates = [4]float64{10, 40, 100, 5}

const (
	reportsRate = 5
	maxInFlight = 64
)

// loadReport counts the submits sent and their answers.
type loadReport struct {
	sent, skipped int64
	byStatus      map[int]int64
	errors        int64
}

func (r loadReport) String() string {
	return fmt.Sprintf("%d submits sent (%d skipped: %d in flight), answers by status %v, %d transport errors",
		r.sent, r.skipped, maxInFlight, r.byStatus, r.errors)
}

// sendLoad sends the load to server for d, or until ctx ends, and waits
// for the answers in flight.
func sendLoad(ctx context.Context, server string, d time.Duration) loadReport {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: maxInFlight}}
	defer client.CloseIdleConnections()
	var (
		mu        sync.Mutex
		rep       = loadReport{byStatus: map[int]int64{}}
		inFlight  = make(chan struct{}, maxInFlight)
		wg        sync.WaitGroup
		transport atomic.Int64
	)
	send := func(path string, body []byte, key string) {
		select {
		case inFlight <- struct{}{}:
		default:
			mu.Lock()
			rep.skipped++
			mu.Unlock()
			return
		}
		mu.Lock()
		rep.sent++
		mu.Unlock()
		wg.Go(func() {
			defer func() { <-inFlight }()
			req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, server+path, bytes.NewReader(body))
			if err != nil {
				transport.Add(1)
				return
			}
			req.Header.Set("Content-Type", "text/plain")
			if key != "" {
				req.Header.Set("Idempotency-Key", key)
			}
			resp, err := client.Do(req)
			if err != nil {
				transport.Add(1)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			rep.byStatus[resp.StatusCode]++
			mu.Unlock()
		})
	}

	doc := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), 20)
	tooLarge := bytes.Repeat([]byte("x"), 1<<20+1)
	start := time.Now()
	var jobs, reports int
	var lastKey string
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-tick.C:
			el := now.Sub(start)
			if el >= d {
				break loop
			}
			phase := min(int(4*el/d), 3)
			// Submits due so far in this phase, beyond those of the
			// phases before it.
			due := 0.0
			for p := range phase {
				due += jobsRates[p] * (d / 4).Seconds()
			}
			due += jobsRates[phase] * (el - time.Duration(phase)*d/4).Seconds()
			for ; float64(jobs) < due; jobs++ {
				n := jobs + 1
				switch {
				case n%25 == 0:
					send("/jobs", tooLarge, "")
				case n%30 == 0:
					send("/jobs", nil, "")
				case n%20 == 0 && lastKey != "":
					send("/jobs", doc, lastKey)
				default:
					lastKey = "load-" + strconv.Itoa(n)
					send("/jobs", doc, lastKey)
				}
			}
			for ; float64(reports) < reportsRate*el.Seconds(); reports++ {
				send("/reports", doc, "")
			}
		}
	}
	wg.Wait()
	rep.errors = transport.Load()
	return rep
}
