// Command server is the bundled asyncreq example: a text-report service
// served three ways.
//
//	/jobs     a Processor that turns a text document into a JSON report,
//	          reporting progress while it works (asynchronous)
//	/report   the same report as an ordinary synchronous http.Handler
//	/reports  that synchronous handler made asynchronous by asyncreq.NewAsync
//	/admin/   the operator's dashboard and API over both (package admin),
//	          with -admin-token only
//
// Run it with `go run ./examples/server` from the repository root. By default
// it keeps its requests in an SQLite file, so a restart loses nothing; see
// -backend for the other engines.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/admin"
	"github.com/asyncreq/asyncreq/examples/internal/backend"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	addr       string
	workTime   time.Duration
	backend    string
	sqlitePath string
	postgres   string
	redis      string
	nats       string
	amqp       string
	verbose    bool
	// processor, concurrency and defaults make the server a load target.
	processor   string
	concurrency int
	defaults    bool
	// noWorkers serves the handlers without running their workers: the
	// accepted requests wait in the queue (the load program's accept mode).
	noWorkers bool
	// publicURL and genericPollers serve generic pollers such as the
	// Azure SDK's (docs/azure.md).
	publicURL      string
	genericPollers bool
	// webhookSecret enables completion callbacks on /jobs, signed with it.
	webhookSecret        string
	webhookAllowLoopback bool
	// adminToken mounts the admin at /admin/; failWord makes /jobs fail a
	// request once, for trying the admin's Retry.
	adminToken string
	failWord   string
	// adminSampleInterval is the admin's SampleInterval (0: its default).
	adminSampleInterval time.Duration
	// otlpEndpoint, or the OTEL_EXPORTER_OTLP_* environment, turns on
	// exporting traces over OTLP/HTTP.
	otlpEndpoint string
	// cpuProfile, when set, is the file a CPU profile of the whole run is
	// written to, for finding where the time goes under load.
	cpuProfile string
	// memProfile, when set, is the file a profile of the allocations of
	// the whole run is written to at shutdown.
	memProfile string
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.StringVar(&c.addr, "addr", ":8080", "address to listen on")
	fs.DurationVar(&c.workTime, "work-time", 3*time.Second, "simulated processing time of one report")
	fs.StringVar(&c.backend, "backend", "sqlite", "where requests are kept: "+backend.Names())
	fs.StringVar(&c.sqlitePath, "sqlite-path", "asyncreq.db", "SQLite database file (-backend sqlite)")
	fs.StringVar(&c.postgres, "postgres", envOr("ASYNCREQ_POSTGRES", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL (-backend postgres)")
	fs.StringVar(&c.redis, "redis", envOr("ASYNCREQ_REDIS", "redis://127.0.0.1:6379/0"), "Redis URL (-backend redis)")
	fs.StringVar(&c.nats, "nats", envOr("ASYNCREQ_NATS", "nats://127.0.0.1:4222"), "NATS URL (-backend nats)")
	fs.StringVar(&c.amqp, "amqp", "", "RabbitMQ URL: if set, the queue is RabbitMQ and -backend keeps the records")
	fs.BoolVar(&c.verbose, "v", false, "log every step of the workers")
	fs.StringVar(&c.processor, "processor", "report", "what /jobs runs: report, or noop (answers \"ok\" at once, for load tests)")
	fs.IntVar(&c.concurrency, "concurrency", 8, "requests each endpoint's worker runs at once")
	fs.BoolVar(&c.noWorkers, "no-workers", false, "run no worker: requests are accepted and left in the queue, for measuring accepts alone (the load program's -mode accept -url)")
	fs.BoolVar(&c.defaults, "defaults", false, "open the backend with its package's default options, as the load program's mixed and poll-e2e modes do")
	fs.StringVar(&c.publicURL, "public-url", "", "absolute URL clients reach the server at (such as https://api.example.com); makes every URL the server writes absolute")
	fs.BoolVar(&c.genericPollers, "generic-pollers", false, "answer the status URL as generic pollers (the Azure SDK's) expect: 202 while running, the outcome when finished")
	fs.StringVar(&c.webhookSecret, "webhook-secret", os.Getenv("ASYNCREQ_WEBHOOK_SECRET"), "`secret` (whsec_...) that signs completion webhooks: a POST /jobs may then name a Callback-URL")
	fs.BoolVar(&c.webhookAllowLoopback, "webhook-allow-loopback", false, "let webhooks reach loopback addresses (127.0.0.1, ::1), for trying them out locally")
	fs.StringVar(&c.adminToken, "admin-token", os.Getenv("ASYNCREQ_ADMIN_TOKEN"), "`token` (16 bytes or more) that serves the operator's admin at /admin/: sent as \"Authorization: Bearer TOKEN\", or typed into its login form")
	fs.StringVar(&c.failWord, "fail-word", "", "a /jobs request whose body contains this `word` fails the first time it runs, and succeeds when retried (from the admin, say)")
	fs.StringVar(&c.otlpEndpoint, "otlp-endpoint", "", "export traces over OTLP/HTTP to `host:port` (plain HTTP, path /v1/traces) or to an http:// or https:// URL; "+
		"when empty, the OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT environment variable, if set, turns exporting on")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the run, from start to shutdown, to `file`")
	fs.StringVar(&c.memProfile, "memprofile", "", "write a profile of the run's allocations to `file` at shutdown")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if _, err := otlpOptions(c.otlpEndpoint); err != nil {
		return c, err
	}
	return c, nil
}

// startCPUProfile starts a CPU profile written to path; the function it
// returns stops it and closes the file.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// writeAllocsProfile writes the profile of every allocation since the
// program started to path.
func writeAllocsProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("allocation profile: %w", err)
	}
	return f.Close()
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(args []string) error {
	cfg, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	level := slog.LevelInfo
	if cfg.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if cfg.cpuProfile != "" {
		stopProfile, err := startCPUProfile(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	if cfg.memProfile != "" {
		defer func() {
			if err := writeAllocsProfile(cfg.memProfile); err != nil {
				logger.Error("writing the allocation profile", "err", err)
			}
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	app, err := newApp(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer app.close()

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	// waits ends when the server starts shutting down, and with it every
	// long poll (Prefer: wait), which then answers at once with the state
	// it has (a 202 for a submit, the status document for a poll): a wait
	// may last maxWait, longer than the shutdown budget.
	waits, endWaits := context.WithCancel(context.Background())
	defer endWaits()
	srv := &http.Server{
		Handler:           endWaitsOnShutdown(waits, app.handler),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Long enough for the longest Prefer: wait the handlers allow.
		WriteTimeout: 2*maxWait + 10*time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(endWaits)
	// The end of the signal context starts the workers' graceful stop at
	// once, while the HTTP server drains (see stopTimeout); app.stop then
	// waits for it.
	if err := app.start(ctx); err != nil {
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String(), "backend", cfg.backend, "processor", cfg.processor, "work_time", cfg.workTime, "concurrency", cfg.concurrency,
		"tracing", app.tracing)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return errors.Join(err, app.stop())
	case <-ctx.Done():
	}
	stop() // a second signal now ends the process at once
	logger.Info("shutting down")
	return errors.Join(shutdownHTTP(srv), app.stop())
}

// shutdownHTTP stops accepting connections, ends the long polls, and waits
// up to httpShutdownBudget for the requests in flight; those still running
// then have their connections closed. A request the Handler had accepted
// has been answered by then, or is recorded and runs anyway.
func shutdownHTTP(srv *http.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), httpShutdownBudget)
	defer cancel()
	err := srv.Shutdown(ctx)
	if err != nil {
		_ = srv.Close()
	}
	return err
}

// endWaitsOnShutdown ends the context of each request that asks to wait
// (Prefer: wait=N) when waits ends, so that a long poll answers at once
// instead of holding the server's shutdown for up to maxWait. Other
// requests keep their context, and finish.
func endWaitsOnShutdown(waits context.Context, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !asksToWait(r.Header) {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(waits, cancel)()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// asksToWait reports whether h carries a wait preference. It need not be
// exact: a request taken for one only has its wait cut short at shutdown.
func asksToWait(h http.Header) bool {
	for _, v := range h.Values("Prefer") {
		if strings.Contains(strings.ToLower(v), "wait") {
			return true
		}
	}
	return false
}

const (
	// maxWait caps Prefer: wait on every endpoint of the example.
	maxWait = 30 * time.Second
	// httpShutdownBudget bounds the wait for HTTP requests in flight at
	// shutdown, and workerStopBudget the wait for running requests after
	// it; the work still running then is handed back, to run again at the
	// next start. Together they stay within the 30s a process manager such
	// as Kubernetes usually grants after SIGTERM (a hung backend adds up
	// to leaseDuration: the hand-back writes are bounded by it).
	httpShutdownBudget = 10 * time.Second
	workerStopBudget   = 15 * time.Second
	// stopTimeout is the workers' StopTimeout: the signal that ends their
	// Start context stops their fetching at once, and the requests they
	// run get both budgets to finish before they are handed back.
	stopTimeout = httpShutdownBudget + workerStopBudget
	// leaseDuration is how long a worker holds a request between two
	// extensions of its lease.
	leaseDuration = 10 * time.Second
)

// app is the example's handlers and the workers behind them.
type app struct {
	mux *http.ServeMux
	// handler is mux, inside a server span per request when tracing is on.
	handler http.Handler
	tracing bool
	jobs    *asyncreq.Endpoint
	async   *asyncreq.Async
	admin   *admin.Handler // nil without -admin-token
	closer  func()
	// noWorkers leaves the workers of jobs and async stopped.
	noWorkers bool
}

func newApp(ctx context.Context, cfg config, logger *slog.Logger) (*app, error) {
	proc, err := jobsProcessor(cfg)
	if err != nil {
		return nil, err
	}
	bk, err := backend.Open(ctx, backend.Config{
		Name:        cfg.backend,
		SQLitePath:  cfg.sqlitePath,
		Postgres:    cfg.postgres,
		Redis:       cfg.redis,
		NATS:        cfg.nats,
		AMQP:        cfg.amqp,
		Lease:       leaseDuration,
		Concurrency: cfg.concurrency,
		Defaults:    cfg.defaults,
		Logger:      logger,
	})
	if err != nil {
		return nil, err
	}
	var tp *sdktrace.TracerProvider
	if cfg.otlpEndpoint != "" || otlpEnvSet() {
		if tp, err = newTracing(ctx, cfg.otlpEndpoint); err != nil {
			bk.Close()
			return nil, err
		}
	}
	tel, err := newTelemetry(tp)
	if err != nil {
		bk.Close()
		return nil, err
	}
	a := &app{mux: http.NewServeMux(), tracing: tp != nil, closer: func() { tel.close(); bk.Close() }, noWorkers: cfg.noWorkers}
	a.handler = a.mux
	if tp != nil {
		a.handler = traced(a.mux, tp)
	}
	fail := func(err error) (*app, error) {
		a.closer()
		return nil, err
	}
	const maxBody = 1 << 20

	jobsBackend, err := bk.Endpoint(ctx, "jobs")
	if err != nil {
		return fail(err)
	}
	jobsHooks, err := tel.hooks("jobs", jobsBackend)
	if err != nil {
		return fail(err)
	}
	a.jobs, err = asyncreq.NewEndpoint(jobsBackend, proc, &asyncreq.EndpointOptions{
		Handler: asyncreq.HandlerOptions{
			// Mounted at /jobs as it is: the Handler strips its BasePath
			// itself, with no copy of the request as http.StripPrefix
			// makes.
			BasePath:     "/jobs",
			MaxBodyBytes: maxBody,
			MaxWait:      maxWait,
			Validate:     validateReport,
			Logger:       logger,
			PublicURL:    cfg.publicURL,
			// The mode for generic pollers (docs/azure.md).
			AcceptedWhilePending: cfg.genericPollers,
			Hooks:                jobsHooks,
			Callbacks:            cfg.callbacks(),
		},
		Worker: asyncreq.WorkerOptions{
			Concurrency: cfg.concurrency,
			// A short lease, so that requests a killed server was running
			// are picked up again soon after it restarts.
			LeaseDuration: leaseDuration,
			StopTimeout:   stopTimeout,
			Logger:        logger,
			Hooks:         jobsHooks,
			Webhooks:      cfg.webhooks(),
		},
	})
	if err != nil {
		return fail(err)
	}

	sync := reportHandler(cfg.workTime, maxBody)
	reportsBackend, err := bk.Endpoint(ctx, "reports")
	if err != nil {
		return fail(err)
	}
	reportsHooks, err := tel.hooks("reports", reportsBackend)
	if err != nil {
		return fail(err)
	}
	a.async, err = asyncreq.NewAsync(sync, reportsBackend, &asyncreq.AsyncOptions{
		Handler: asyncreq.HandlerOptions{BasePath: "/reports", MaxBodyBytes: maxBody, MaxWait: maxWait, Logger: logger,
			PublicURL: cfg.publicURL, AcceptedWhilePending: cfg.genericPollers, Hooks: reportsHooks},
		Worker: asyncreq.WorkerOptions{Concurrency: cfg.concurrency, LeaseDuration: leaseDuration, StopTimeout: stopTimeout, Logger: logger, Hooks: reportsHooks},
	})
	if err != nil {
		return fail(err)
	}

	a.mux.Handle("/jobs", a.jobs)
	a.mux.Handle("/jobs/", a.jobs)
	a.mux.Handle("/report", sync)
	a.mux.Handle("GET /metrics", tel.handler)
	a.mux.Handle("/reports", a.async)
	a.mux.Handle("/reports/", a.async)
	text := usage
	if cfg.adminToken != "" {
		if a.admin, err = newAdmin(cfg, logger, map[string]asyncreq.Backend{"jobs": jobsBackend, "reports": reportsBackend}); err != nil {
			return fail(err)
		}
		a.mux.Handle("/admin/", http.StripPrefix("/admin", a.admin))
		text += adminUsage
	}
	a.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, text)
	})
	return a, nil
}

// newAdmin is the operator's admin over the example's queues, for the
// holder of cfg.adminToken.
func newAdmin(cfg config, logger *slog.Logger, queues map[string]asyncreq.Backend) (*admin.Handler, error) {
	tok, err := admin.NewToken(cfg.adminToken)
	if err != nil {
		return nil, fmt.Errorf("-admin-token: %w", err)
	}
	return admin.New(admin.Options{Queues: queues, Token: tok, Logger: logger, SampleInterval: cfg.adminSampleInterval})
}

const usage = `asyncreq example server

  POST /jobs      a text document -> 202 Accepted, Location: /jobs/{id}/status
  GET  /jobs/{id}/status  200 while it runs, 303 See Other when done
  GET  /jobs/{id}         the JSON report once done
  POST /report    the same report, synchronously
  POST /reports   /report made asynchronous by asyncreq.NewAsync
  GET  /metrics   Prometheus metrics (docs/observability.md); traces go over
                  OTLP with -otlp-endpoint host:4318

Try: curl -i -X POST --data-binary @README.md localhost:8080/jobs
`

const adminUsage = `
  GET  /admin/    the operator's dashboard (log in with the -admin-token)
  GET  /admin/api/queues  its JSON API (Authorization: Bearer TOKEN; docs/admin.md)
`

func (a *app) start(ctx context.Context) error {
	if !a.noWorkers {
		if err := a.jobs.Start(ctx); err != nil {
			return err
		}
		if err := a.async.Start(ctx); err != nil {
			return err
		}
	}
	if a.admin != nil {
		return a.admin.Start(ctx)
	}
	return nil
}

// stop stops both workers at once, each within workerStopBudget.
func (a *app) stop() error {
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, w := range []interface{ Stop(context.Context) error }{a.jobs, a.async} {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), workerStopBudget)
			defer cancel()
			if err := w.Stop(ctx); err != nil {
				errs[i] = fmt.Errorf("worker stop: %w", err)
			}
		})
	}
	wg.Wait()
	if a.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), workerStopBudget)
		defer cancel()
		errs = append(errs, a.admin.Stop(ctx))
	}
	return errors.Join(errs...)
}

func (a *app) close() { a.closer() }

// callbacks is the Callback-URL policy of /jobs: any host when webhooks are
// signed (the worker still refuses private and loopback addresses, see
// webhooks), none otherwise.
func (c config) callbacks() *asyncreq.CallbackPolicy {
	if c.webhookSecret == "" {
		return nil
	}
	return &asyncreq.CallbackPolicy{Allow: func(*url.URL) error { return nil }}
}

// webhooks is how /jobs' worker sends completion webhooks, or nil.
func (c config) webhooks() *asyncreq.WebhookOptions {
	if c.webhookSecret == "" {
		return nil
	}
	// Each attempt must fit in the short lease the delivery holds.
	return &asyncreq.WebhookOptions{Secrets: []string{c.webhookSecret}, AllowLoopback: c.webhookAllowLoopback, Timeout: leaseDuration / 2}
}
