// Command loadtest measures asyncreq over loopback HTTP on this machine.
//
// Every figure in the README comes from it. It starts the servers it
// measures in this process, on 127.0.0.1, and drives them with -c
// concurrent keep-alive clients for -d:
//
//	-mode accept  POST requests to the asyncreq handler on -backend (no
//	              worker), and to a bare net/http handler that answers 202
//	              and stores nothing; prints both rates and their ratio
//	-mode drain   accept -n requests, then start a worker with a no-op
//	              processor and time until every one is done (jobs/s)
//	-mode e2e     POST with Prefer: wait while a no-op worker runs; the
//	              answer is the final 200, so its latency is submit-to-done
//	-mode all     the three in turn
//
// It sends traffic only to the loopback servers it starts, and every loop
// is bounded by -d or -n.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/examples/internal/backend"
)

type options struct {
	mode        string
	concurrency int
	duration    time.Duration
	n           int
	workers     int
	bk          backend.Config
	cpuprofile  string
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "all", "accept, drain, e2e or all")
	flag.IntVar(&o.concurrency, "c", 32, "concurrent clients")
	flag.DurationVar(&o.duration, "d", 10*time.Second, "how long each timed phase runs")
	flag.IntVar(&o.n, "n", 20000, "requests to drain (-mode drain)")
	flag.IntVar(&o.workers, "workers", 32, "worker concurrency (-mode drain and e2e)")
	flag.StringVar(&o.bk.Name, "backend", "memory", "engine: "+backend.Names())
	flag.StringVar(&o.bk.SQLitePath, "sqlite-path", "", "SQLite file (default: a new temporary file)")
	flag.StringVar(&o.bk.Postgres, "postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL")
	flag.StringVar(&o.bk.Redis, "redis", "redis://127.0.0.1:6379/0", "Redis URL")
	flag.StringVar(&o.bk.NATS, "nats", "nats://127.0.0.1:4222", "NATS URL")
	flag.StringVar(&o.bk.AMQP, "amqp", "", "RabbitMQ URL: use a RabbitMQ queue with -backend as the Store")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write CPU profiles of the asyncreq phases to `prefix`.accept, .drain and .e2e")
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	o.bk.Concurrency = o.workers
	if o.bk.Name == "sqlite" && o.bk.SQLitePath == "" {
		dir, err := os.MkdirTemp("", "asyncreq-loadtest")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.bk.SQLitePath = dir + "/load.db"
	}
	fmt.Printf("machine: %s/%s, %d CPUs (GOMAXPROCS %d), %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Printf("backend: %s", o.bk.Name)
	if o.bk.AMQP != "" {
		fmt.Print(" + RabbitMQ queue")
	}
	fmt.Printf(", %d clients\n", o.concurrency)
	var modes []string
	switch o.mode {
	case "all":
		modes = []string{"accept", "drain", "e2e"}
	case "accept", "drain", "e2e":
		modes = []string{o.mode}
	default:
		return fmt.Errorf("unknown -mode %q", o.mode)
	}
	for _, m := range modes {
		var err error
		switch m {
		case "accept":
			err = runAccept(ctx, o)
		case "drain":
			err = runDrain(ctx, o)
		case "e2e":
			err = runE2E(ctx, o)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
	}
	return nil
}

// endpoint opens a fresh Store and Queue for one phase, with a handler on
// them; close the Backend when done.
func endpoint(ctx context.Context, o options, phase string) (*backend.Backend, asyncreq.Store, asyncreq.Queue, *asyncreq.Handler, error) {
	bk, err := backend.Open(ctx, o.bk)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	name := fmt.Sprintf("load_%s_%d", phase, time.Now().UnixNano())
	store, queue, err := bk.Pair(ctx, name)
	if err == nil {
		var h *asyncreq.Handler
		if h, err = asyncreq.NewHandler(store, queue, nil); err == nil {
			return bk, store, queue, h, nil
		}
	}
	bk.Close()
	return nil, nil, nil, nil, err
}

func runAccept(ctx context.Context, o options) error {
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := asyncreq.NewID()
		w.Header().Set("Location", "/jobs/"+id+"/status")
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"id":%q,"status":"pending"}`, id)
	})
	bareStats, err := drive(ctx, bare, o, nil, http.StatusAccepted)
	if err != nil {
		return err
	}
	fmt.Printf("accept  bare net/http 202:  %s\n", bareStats)

	bk, _, _, h, err := endpoint(ctx, o, "accept")
	if err != nil {
		return err
	}
	defer bk.Close()
	stop, err := profile(o, "accept")
	if err != nil {
		return err
	}
	st, err := drive(ctx, h, o, nil, http.StatusAccepted)
	stop()
	if err != nil {
		return err
	}
	fmt.Printf("accept  asyncreq handler:   %s\n", st)
	fmt.Printf("accept  ratio asyncreq/bare: %.2f\n", st.rate()/bareStats.rate())
	return nil
}

func runDrain(ctx context.Context, o options) error {
	bk, store, queue, h, err := endpoint(ctx, o, "drain")
	if err != nil {
		return err
	}
	defer bk.Close()
	srv, url, err := serve(h)
	if err != nil {
		return err
	}
	defer srv.Close()
	client := newClient(o.concurrency)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(o.n) {
				if _, err := post(ctx, client, url, nil, http.StatusAccepted); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}

	store, counted, acks := countAcks(store, queue, o.n)
	w, err := asyncreq.NewWorker(store, counted, noop(), &asyncreq.WorkerOptions{Concurrency: o.workers})
	if err != nil {
		return err
	}
	stop, err := profile(o, "drain")
	if err != nil {
		return err
	}
	defer stop()
	start := time.Now()
	if err := w.Start(ctx); err != nil {
		return err
	}
	limit := time.NewTimer(10 * time.Minute)
	defer limit.Stop()
	select {
	case <-acks.done:
	case <-limit.C:
		_ = w.Stop(ctx)
		return fmt.Errorf("only %d of %d requests were done after 10 minutes", acks.n.Load(), o.n)
	}
	elapsed := time.Since(start)
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.Stop(stopCtx); err != nil {
		return err
	}
	fmt.Printf("drain   %d no-op requests with %d workers in %s: %.0f jobs/s\n", o.n, o.workers, elapsed.Round(time.Millisecond), float64(o.n)/elapsed.Seconds())
	return nil
}

func runE2E(ctx context.Context, o options) error {
	bk, store, queue, h, err := endpoint(ctx, o, "e2e")
	if err != nil {
		return err
	}
	defer bk.Close()
	w, err := asyncreq.NewWorker(store, queue, noop(), &asyncreq.WorkerOptions{Concurrency: o.workers})
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = w.Stop(stopCtx)
	}()
	stop, err := profile(o, "e2e")
	if err != nil {
		return err
	}
	st, err := drive(ctx, h, o, http.Header{"Prefer": {"wait=10"}}, http.StatusOK)
	stop()
	if err != nil {
		return err
	}
	fmt.Printf("e2e     submit-to-done (Prefer: wait): %s\n", st)
	return nil
}

// noop is the processor of the drain and e2e phases.
// profile starts a CPU profile of phase when -cpuprofile is set; the
// function it returns stops it.
func profile(o options, phase string) (stop func(), err error) {
	if o.cpuprofile == "" {
		return func() {}, nil
	}
	f, err := os.Create(o.cpuprofile + "." + phase)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

func noop() asyncreq.Processor {
	return asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")}, nil
	})
}

// stats are the outcome of one timed phase.
type stats struct {
	n        int
	elapsed  time.Duration
	quantile func(q float64) time.Duration
}

func (s stats) rate() float64 { return float64(s.n) / s.elapsed.Seconds() }

func (s stats) String() string {
	return fmt.Sprintf("%8.0f req/s  (%d in %s; latency p50 %s, p99 %s)",
		s.rate(), s.n, s.elapsed.Round(time.Millisecond),
		s.quantile(0.50).Round(10*time.Microsecond), s.quantile(0.99).Round(10*time.Microsecond))
}

// drive serves h on loopback and posts to it from o.concurrency clients for
// o.duration after a one-second warm-up, expecting status want.
func drive(ctx context.Context, h http.Handler, o options, hdr http.Header, want int) (stats, error) {
	srv, url, err := serve(h)
	if err != nil {
		return stats{}, err
	}
	defer srv.Close()
	client := newClient(o.concurrency)
	defer client.CloseIdleConnections()

	warm := time.Now().Add(time.Second)
	end := warm.Add(o.duration)
	lat := make([][]time.Duration, o.concurrency)
	errs := make([]error, o.concurrency)
	var wg sync.WaitGroup
	for i := range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				now := time.Now()
				if now.After(end) {
					return
				}
				d, err := post(ctx, client, url, hdr, want)
				if err != nil {
					errs[i] = err
					return
				}
				if now.After(warm) {
					lat[i] = append(lat[i], d)
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return stats{}, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return stats{
		n:       len(all),
		elapsed: o.duration,
		quantile: func(q float64) time.Duration {
			if len(all) == 0 {
				return 0
			}
			return all[min(len(all)-1, int(q*float64(len(all))))]
		},
	}, nil
}

var body = []byte("The quick brown fox jumps over the lazy dog.\nA second line.\n")

func post(ctx context.Context, c *http.Client, url string, hdr http.Header, want int) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "text/plain")
	for k, v := range hdr {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != want {
		return 0, fmt.Errorf("POST answered %s, want %d", resp.Status, want)
	}
	return d, nil
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

func newClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns},
		Timeout:   time.Minute,
	}
}

// ackCounter wraps a Queue to count settled requests (the worker acks only
// after the outcome is recorded) and to close done at the target.
type ackCounter struct {
	asyncreq.Queue
	n      atomic.Int64
	target int64
	done   chan struct{}
}

// count counts one settled request.
func (q *ackCounter) count() {
	if q.n.Add(1) == q.target {
		close(q.done)
	}
}

func (q *ackCounter) Ack(ctx context.Context, l *asyncreq.Lease) error {
	err := q.Queue.Ack(ctx, l)
	if err == nil {
		q.count()
	}
	return err
}

// batchAckCounter keeps the wrapped Queue's batch dequeue visible.
type batchAckCounter struct {
	*ackCounter
	batch asyncreq.BatchDequeuer
}

func (q batchAckCounter) DequeueBatch(ctx context.Context, limit int, ttl time.Duration) ([]*asyncreq.Lease, error) {
	return q.batch.DequeueBatch(ctx, limit, ttl)
}

// completer is a backend that is Store and Queue in one value and writes
// outcomes with their Acks in one step.
type completer interface {
	asyncreq.Store
	asyncreq.Queue
	asyncreq.BatchDequeuer
	asyncreq.Watcher
	asyncreq.Completer
}

// completeCounter wraps a completer, as both Store and Queue, so that the
// worker still sees one value and uses Complete; it counts the Completes
// that settled a request, and the Acks.
type completeCounter struct {
	completer
	ac *ackCounter
}

func (b completeCounter) Complete(ctx context.Context, l *asyncreq.Lease, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	rec, err := b.completer.Complete(ctx, l, fn)
	if err == nil && rec.State.Final() {
		b.ac.count()
	}
	return rec, err
}

func (b completeCounter) Ack(ctx context.Context, l *asyncreq.Lease) error {
	err := b.completer.Ack(ctx, l)
	if err == nil {
		b.ac.count()
	}
	return err
}

// countAcks wraps the worker's store and queue to count target settled
// requests, keeping the capabilities the worker looks for.
func countAcks(s asyncreq.Store, q asyncreq.Queue, target int) (asyncreq.Store, asyncreq.Queue, *ackCounter) {
	ac := &ackCounter{Queue: q, target: int64(target), done: make(chan struct{})}
	if c, ok := q.(completer); ok && any(s) == any(q) {
		cc := completeCounter{completer: c, ac: ac}
		return cc, cc, ac
	}
	if b, ok := q.(asyncreq.BatchDequeuer); ok {
		return s, batchAckCounter{ackCounter: ac, batch: b}, ac
	}
	return s, ac, ac
}
