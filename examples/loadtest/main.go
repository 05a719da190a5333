// Command loadtest measures asyncreq over loopback HTTP on this machine.
//
// Every figure in docs/benchmarks.md comes from it. Unless -url is set it starts
// the server it measures in this process, on 127.0.0.1, and drives it with
// -c concurrent keep-alive clients:
//
//	-mode accept    POST requests to the asyncreq handler on -backend (no
//	                worker) for -d
//	-mode drain     accept -n requests, then start a worker with a no-op
//	                processor and time until every one is done (jobs/s)
//	-mode e2e       POST with Prefer: wait for -d while a no-op worker runs;
//	                the answer is the final 200, so its latency is
//	                submit-to-done
//	-mode all       the three in turn
//	-mode mixed     -n requests submitted while the worker runs, with
//	                -pollers clients polling the status of each accepted
//	                request until it is done; jobs/s from the first submit
//	                to the last done, and the accepts' and polls' figures
//	-mode poll-e2e  for -d, each client submits, polls the status every
//	                -poll-interval (ignoring Retry-After), follows the 303
//	                and GETs the result; latency is submit-to-result
//	-mode scale     what retained finished requests cost: one store per
//	                count in -retained (e.g. 0,100k,1M), filled with that
//	                many copies of a request the worker finished, through
//	                the Store's Create; then, the stores taking turns for
//	                -rounds, mixed, poll-e2e, GETs of the status and of the
//	                result of random retained requests, and the purge of
//	                -expired expired requests (as the Worker purges, batch
//	                after batch) with the accepts' latency beside it and,
//	                before it, without it; a table of every round at the end
//
// Every run first measures a bare net/http handler, in this process, that
// answers 202 and stores nothing, and prints every figure also as a
// multiple of the bare one: the machine's speed moves by more than the
// code's effect. With -url the server measured runs in another process,
// which costs it rate by itself (two Go runtimes share the cores, and wake
// each other across processes: on two cores the bare handler served from
// another process reached 0.84 to 0.92 of its rate in this one). So with
// -url the run also measures the bare handler served by another process, a
// copy of the load program that it starts on a free port of 127.0.0.1 and
// stops after, through the same clients as -url, prints both, and takes
// every multiple to the one in another process ("× bare (another
// process)").
//
// The accept, drain and e2e modes open the backend as tuned in
// examples/internal/backend and run 32 workers; mixed, poll-e2e and scale
// open it with its package's default options (-defaults) and run 100.
// The scale mode gives each store a SQLite file, PostgreSQL schema or
// Redis key prefix of its own and removes it at the end.
//
// With -url, the accept, e2e, mixed and poll-e2e modes load an asyncreq
// endpoint of a server in another process instead, such as the example
// server (for accept, one started with -no-workers, so that no worker runs
// as in the accept mode's own process):
//
//	go run ./examples/server -addr 127.0.0.1:8090 -backend sqlite -sqlite-path /tmp/load.db -processor noop -concurrency 100 -defaults
//	go run ./examples/loadtest -url http://127.0.0.1:8090/jobs -mode mixed
//
// The load program then only sends HTTP: it sees a request done when its
// status says so.
//
// It sends traffic only to the loopback servers it starts, or to -url, and
// every loop is bounded by -d, -n or a time limit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/examples/internal/backend"
)

type options struct {
	mode         string
	url          string
	concurrency  int
	duration     time.Duration
	n            int // 0: the mode's default
	workers      int // 0: the mode's default
	pollers      int
	pollInterval time.Duration
	defaults     *bool // nil: the mode's default
	bk           backend.Config
	cpuprofile   string

	// -mode scale
	retained []int // retained finished requests per store, in the order measured
	rounds   int   // times each store is measured, alternating
	expired  int   // expired requests purged in the purge phase
	fillConc int   // concurrent Creates filling a store

	// Set by -mode scale for the phases it runs on a filled store.
	pre      *scaleStore    // the store to load instead of a fresh one
	accepted func(*url.URL) // sees the status URL of each request mixed submits
}

func main() {
	serveBareIfAsked()
	var o options
	var defaults bool
	flag.StringVar(&o.mode, "mode", "all", "accept, drain, e2e, all (the three), mixed or poll-e2e")
	flag.StringVar(&o.url, "url", "", "load the asyncreq endpoint at this `URL`, served by another process (-mode accept, e2e, mixed, poll-e2e; for accept, start the server with -no-workers); the ratios are then to the bare handler served by another process too")
	flag.IntVar(&o.concurrency, "c", 32, "concurrent clients")
	flag.DurationVar(&o.duration, "d", 10*time.Second, "how long each timed phase runs")
	flag.IntVar(&o.n, "n", 0, "requests to submit (-mode drain: default 20000, mixed: 10000)")
	flag.IntVar(&o.workers, "workers", 0, "worker concurrency (default 32 for drain and e2e, 100 for mixed and poll-e2e)")
	flag.IntVar(&o.pollers, "pollers", 4, "status pollers (-mode mixed)")
	flag.DurationVar(&o.pollInterval, "poll-interval", 5*time.Millisecond, "time between two polls of one request's status (-mode mixed, poll-e2e)")
	flag.BoolVar(&defaults, "defaults", false, "open the backend with its package's default options (default true for mixed and poll-e2e)")
	flag.StringVar(&o.bk.Name, "backend", "memory", "engine: "+backend.Names())
	flag.StringVar(&o.bk.SQLitePath, "sqlite-path", "", "SQLite file (default: a new temporary file)")
	flag.StringVar(&o.bk.Postgres, "postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL")
	flag.StringVar(&o.bk.Redis, "redis", "redis://127.0.0.1:6379/0", "Redis URL")
	flag.StringVar(&o.bk.NATS, "nats", "nats://127.0.0.1:4222", "NATS URL")
	flag.StringVar(&o.bk.AMQP, "amqp", "", "RabbitMQ URL: use a RabbitMQ queue with -backend as the Store")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write CPU profiles of this process in each asyncreq phase to `prefix`.MODE")
	retained := flag.String("retained", "0,100000", "`list` of retained finished requests to fill a store with, one store each (-mode scale)")
	flag.IntVar(&o.rounds, "rounds", 2, "times each store is measured, the stores taking turns (-mode scale)")
	flag.IntVar(&o.expired, "expired", 100000, "expired requests purged in the purge phase (-mode scale; 0 skips it)")
	flag.IntVar(&o.fillConc, "fill-c", 128, "concurrent Creates filling a store (-mode scale)")
	flag.Parse()
	var err error
	if o.retained, err = parseCounts(*retained); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: -retained:", err)
		os.Exit(2)
	}
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "defaults" {
			o.defaults = &defaults
		}
	})
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// realistic are the modes that measure traffic as a service sees it, with
// the backends' default options.
var realistic = map[string]bool{"mixed": true, "poll-e2e": true, "scale": true}

// forMode fills in what o leaves to mode m.
func (o options) forMode(m string) options {
	if o.workers == 0 {
		o.workers = 32
		if realistic[m] {
			o.workers = 100
		}
	}
	if o.n == 0 {
		o.n = 20000
		if m == "mixed" || m == "scale" {
			o.n = 10000
		}
	}
	o.bk.Defaults = realistic[m]
	if o.defaults != nil {
		o.bk.Defaults = *o.defaults
	}
	o.bk.Concurrency = o.workers
	return o
}

func run(ctx context.Context, o options) error {
	var modes []string
	switch o.mode {
	case "all":
		modes = []string{"accept", "drain", "e2e"}
	case "accept", "drain", "e2e", "mixed", "poll-e2e", "scale":
		modes = []string{o.mode}
	default:
		return fmt.Errorf("unknown -mode %q", o.mode)
	}
	if o.url != "" && (o.mode == "all" || o.mode == "drain" || o.mode == "scale") {
		return fmt.Errorf("-mode %s needs the server in this process: leave out -url", o.mode)
	}
	if o.concurrency < 1 || o.pollers < 1 || o.n < 0 || o.workers < 0 || o.duration <= 0 || o.pollInterval < 0 {
		return errors.New("-c and -pollers must be at least 1, -d positive, and -n, -workers and -poll-interval not negative")
	}
	if o.mode == "scale" && (len(o.retained) == 0 || o.rounds < 1 || o.expired < 0 || o.fillConc < 1) {
		return errors.New("-mode scale needs a -retained list, -rounds and -fill-c at least 1, and -expired not negative")
	}
	if o.url == "" && o.bk.Name == "sqlite" && o.bk.SQLitePath == "" {
		dir, err := os.MkdirTemp("", "asyncreq-loadtest")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.bk.SQLitePath = dir + "/load.db"
	}
	fmt.Printf("machine: %s/%s, %d CPUs (GOMAXPROCS %d), %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	if o.url != "" {
		fmt.Printf("target: %s (another process), %d clients\n", o.url, o.concurrency)
	} else {
		fmt.Printf("backend: %s", o.bk.Name)
		if o.bk.AMQP != "" {
			fmt.Print(" + RabbitMQ queue")
		}
		fmt.Printf(", %d clients\n", o.concurrency)
	}
	inProcess, err := drive(ctx, bareHandler, o, nil, http.StatusAccepted)
	if err != nil {
		return fmt.Errorf("bare handler: %w", err)
	}
	fmt.Printf("bare      net/http 202 (this process): %s\n", inProcess)
	bare := baseline{stats: inProcess, name: "bare"}
	if o.url != "" {
		// The server at -url runs in another process: so does the bare
		// handler that its figures are taken as multiples of.
		other, err := bareElsewhere(ctx, o)
		if err != nil {
			return fmt.Errorf("bare handler in another process: %w", err)
		}
		fmt.Printf("bare      net/http 202 (another process): %s  %s\n", other, other.vs(baseline{stats: inProcess, name: "bare (this process)"}))
		bare = baseline{stats: other, name: "bare (another process)"}
	}
	for _, m := range modes {
		var err error
		om := o.forMode(m)
		switch m {
		case "accept":
			err = runAccept(ctx, om, bare)
		case "drain":
			err = runDrain(ctx, om, bare)
		case "e2e":
			err = runE2E(ctx, om, bare)
		case "mixed":
			err = runMixed(ctx, om, bare)
		case "poll-e2e":
			err = runPollE2E(ctx, om, bare)
		case "scale":
			err = runScale(ctx, om, bare)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
	}
	return nil
}

// bareHandler answers a submit as asyncreq does, 202 with a Location and a
// status document, but stores nothing: what HTTP alone costs here.
var bareHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	id := asyncreq.NewID()
	w.Header().Set("Location", "/jobs/"+id+"/status")
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, `{"id":%q,"status":"pending"}`, id)
})

// describe names the backend o opens, and how.
func describe(o options) string {
	s := o.bk.Name
	if o.bk.AMQP != "" {
		s += " + RabbitMQ queue"
	}
	if o.bk.Defaults {
		return s + " with its package's default options"
	}
	return s + " as tuned in examples/internal/backend"
}

// endpoint opens a fresh asyncreq.Backend for one phase, with a handler on
// it; close the backend.Backend when done.
func endpoint(ctx context.Context, o options, phase string) (*backend.Backend, asyncreq.Backend, *asyncreq.Handler, error) {
	bk, err := backend.Open(ctx, o.bk)
	if err != nil {
		return nil, nil, nil, err
	}
	name := fmt.Sprintf("load_%s_%d", phase, time.Now().UnixNano())
	b, err := bk.Endpoint(ctx, name)
	if err == nil {
		var h *asyncreq.Handler
		if h, err = asyncreq.NewHandler(b, nil); err == nil {
			return bk, b, h, nil
		}
	}
	bk.Close()
	return nil, nil, nil, err
}

// target is the asyncreq endpoint a mode sends its load to.
type target struct {
	url  string
	desc string
	// acks counts the requests that this process's worker settled; nil
	// with -url.
	acks *ackCounter
	// cpu meters the server's CPU time: with -url only, since a server
	// in this process shares its CPU time with the load.
	cpu   *cpuMeter
	close func()
}

// openTarget returns the endpoint at -url, or serves a handler on -backend
// in this process with a worker of o.workers running a no-op processor.
// With count > 0 the worker's settled requests are counted up to count.
func openTarget(ctx context.Context, o options, phase string, count int) (*target, error) {
	if o.url != "" {
		m, err := newCPUMeter(o.url)
		if err != nil {
			return nil, err
		}
		return &target{url: o.url, desc: "the server's backend and worker", cpu: m, close: func() {}}, nil
	}
	var (
		bk  *backend.Backend // nil: o.pre's, which stays open
		b   asyncreq.Backend
		h   *asyncreq.Handler
		err error
	)
	if o.pre != nil {
		b, h = o.pre.b, o.pre.h
	} else if bk, b, h, err = endpoint(ctx, o, phase); err != nil {
		return nil, err
	}
	closeBackend := func() {
		if bk != nil {
			bk.Close()
		}
	}
	tg := &target{desc: fmt.Sprintf("%s, worker Concurrency %d", describe(o), o.workers)}
	if o.pre != nil {
		tg.desc += fmt.Sprintf(", %d retained requests", o.pre.n)
	}
	if count > 0 {
		b, tg.acks = countAcks(b, count)
	}
	w, err := asyncreq.NewWorker(b, noop(), &asyncreq.WorkerOptions{Concurrency: o.workers})
	if err == nil {
		err = w.Start(ctx)
	}
	if err != nil {
		closeBackend()
		return nil, err
	}
	srv, u, err := serve(h)
	tg.url = u
	tg.close = func() {
		if srv != nil {
			_ = srv.Close()
		}
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = w.Stop(stopCtx)
		closeBackend()
	}
	if err != nil {
		tg.close()
		return nil, err
	}
	return tg, nil
}

func runAccept(ctx context.Context, o options, bare baseline) error {
	if o.url != "" {
		return runAcceptAt(ctx, o, bare)
	}
	bk, _, h, err := endpoint(ctx, o, "accept")
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
	fmt.Printf("accept    asyncreq handler (%s): %s  %s\n", describe(o), st, st.vs(bare))
	return nil
}

// runAcceptAt measures the accepts of the endpoint at -url, served by
// another process, which should run no worker (the example server's
// -no-workers), as the in-process accept mode runs none.
func runAcceptAt(ctx context.Context, o options, bare baseline) error {
	m, err := newCPUMeter(o.url)
	if err != nil {
		return err
	}
	st, err := postAt(ctx, o, o.url, m, nil, http.StatusAccepted)
	if err != nil {
		return err
	}
	fmt.Printf("accept    asyncreq handler (the server's backend, in another process): %s  %s\n", st, st.vs(bare))
	return nil
}

func runDrain(ctx context.Context, o options, bare baseline) error {
	bk, b, h, err := endpoint(ctx, o, "drain")
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
	defer client.CloseIdleConnections()
	if _, err := submit(ctx, client, url, o.n, o.concurrency, nil); err != nil {
		return err
	}

	counted, acks := countAcks(b, o.n)
	w, err := asyncreq.NewWorker(counted, noop(), &asyncreq.WorkerOptions{Concurrency: o.workers})
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
	rate := float64(o.n) / elapsed.Seconds()
	fmt.Printf("drain     %d no-op requests with %d workers (%s) in %s: %.0f jobs/s  (%.2f × %s)\n", o.n, o.workers, describe(o), elapsed.Round(time.Millisecond), rate, rate/bare.rate(), bare.name)
	return nil
}

func runE2E(ctx context.Context, o options, bare baseline) error {
	st, desc, err := timedAt(ctx, o, "e2e", func(c *http.Client, u string) (time.Duration, error) {
		_, d, err := post(ctx, c, u, http.Header{"Prefer": {"wait=10"}}, http.StatusOK)
		return d, err
	})
	if err != nil {
		return err
	}
	fmt.Printf("e2e       submit-to-done (Prefer: wait; %s): %s  %s\n", desc, st, st.vs(bare))
	return nil
}

// timedAt opens the target of phase and runs op against its URL from
// o.concurrency clients for o.duration, after a warm-up; it returns the
// stats and the target's description.
func timedAt(ctx context.Context, o options, phase string, op func(c *http.Client, u string) (time.Duration, error)) (stats, string, error) {
	tg, err := openTarget(ctx, o, phase, 0)
	if err != nil {
		return stats{}, "", err
	}
	defer tg.close()
	client := newClient(o.concurrency)
	defer client.CloseIdleConnections()
	stop, err := profile(o, phase)
	if err != nil {
		return stats{}, "", err
	}
	defer stop()
	st, err := timed(ctx, o, tg.cpu, func() (time.Duration, error) { return op(client, tg.url) })
	return st, tg.desc, err
}

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

// noop is the processor of the worker the load program runs.
func noop() asyncreq.Processor {
	return asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")}, nil
	})
}

// ackCounter wraps a Queue to count settled requests (the worker acks only
// after the outcome is recorded) and to close done at the target.
type ackCounter struct {
	asyncreq.Queue
	n      atomic.Int64
	target int64
	done   chan struct{}
	at     time.Time // when the target was reached; read after done is closed
}

// count counts one settled request.
func (q *ackCounter) count() {
	if q.n.Add(1) == q.target {
		q.at = time.Now()
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

// countAcks wraps the worker's backend to count target settled requests,
// keeping the capabilities the worker looks for: a Completer stays one
// value, any other backend is paired with its Queue wrapped.
func countAcks(b asyncreq.Backend, target int) (asyncreq.Backend, *ackCounter) {
	ac := &ackCounter{Queue: b, target: int64(target), done: make(chan struct{})}
	if c, ok := b.(completer); ok {
		return completeCounter{completer: c, ac: ac}, ac
	}
	if bd, ok := b.(asyncreq.BatchDequeuer); ok {
		return asyncreq.Pair(b, batchAckCounter{ackCounter: ac, batch: bd}), ac
	}
	return asyncreq.Pair(b, ac), ac
}
