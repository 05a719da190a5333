// Command distributed runs asyncreq on many machines: API processes that
// accept requests and worker processes that run them, sharing one
// PostgreSQL database and nothing else.
//
//	distributed -role api    -addr :8080 -postgres postgres://...
//	distributed -role worker             -postgres postgres://...
//	distributed -role both   -addr :8080 -postgres postgres://...
//
// Start as many of each as the load needs, on as many machines. The API
// serves the asynchronous request-reply contract under /jobs/:
//
//	curl -i -X POST --data-binary 'hello' http://localhost:8080/jobs/
//	curl -i http://localhost:8080/jobs/{id}/status
//	curl -i http://localhost:8080/jobs/{id}
//
// The processor is deterministic so that results can be checked: the
// result of a request is the hex SHA-256 of its body, after -work of
// simulated work. A worker killed mid-request loses nothing: its leases
// run out after -lease and other workers run those requests again.
//
// The tables live in the schema -schema of the database, created and
// migrated at start (concurrent starts are safe). SIGINT or SIGTERM stops
// a process gracefully: the API finishes the requests it is answering and
// the worker hands back the requests it has not finished.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/postgres"
	"github.com/jackc/pgx/v5/pgxpool"
)

// config is the command line.
type config struct {
	role        string
	addr        string
	dsn         string
	schema      string
	queue       string
	concurrency int
	lease       time.Duration
	work        time.Duration
	poolSize    int
}

func main() {
	var c config
	flag.StringVar(&c.role, "role", "both", "what this process runs: api, worker or both")
	flag.StringVar(&c.addr, "addr", "127.0.0.1:8080", "address the API listens on (roles api and both)")
	flag.StringVar(&c.dsn, "postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL")
	flag.StringVar(&c.schema, "schema", "asyncreq", "PostgreSQL schema of the tables")
	flag.StringVar(&c.queue, "queue", "distributed", "queue name shared by the API and the workers")
	flag.IntVar(&c.concurrency, "concurrency", 16, "requests a worker runs at once")
	flag.DurationVar(&c.lease, "lease", 30*time.Second, "worker lease: how soon a dead worker's requests run again")
	flag.DurationVar(&c.work, "work", 10*time.Millisecond, "simulated work per request")
	flag.IntVar(&c.poolSize, "pool", 16, "PostgreSQL connections of this process")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, log); err != nil {
		fmt.Fprintln(os.Stderr, "distributed:", err)
		os.Exit(1)
	}
}

// process is the deterministic processor: the hex SHA-256 of the body.
func process(work time.Duration) asyncreq.ProcessorFunc {
	return func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		if work > 0 {
			t := time.NewTimer(work)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		sum := sha256.Sum256(req.Body)
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte(hex.EncodeToString(sum[:]))}, nil
	}
}

// run runs the role until ctx ends, then stops it gracefully.
func run(ctx context.Context, c config, log *slog.Logger) error {
	api, worker := c.role == "api" || c.role == "both", c.role == "worker" || c.role == "both"
	if !api && !worker {
		return fmt.Errorf("-role %q: want api, worker or both", c.role)
	}
	pcfg, err := pgxpool.ParseConfig(c.dsn)
	if err != nil {
		return fmt.Errorf("-postgres: %w", err)
	}
	pcfg.MaxConns = int32(c.poolSize)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Options{
		Schema:         c.schema,
		Queue:          c.queue,
		MigrateOnStart: true,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	defer store.Close()

	// Shutdown gets a context of its own: ctx has ended by then.
	const grace = 10 * time.Second
	if worker {
		w, err := asyncreq.NewWorker(store, store, process(c.work), &asyncreq.WorkerOptions{
			Concurrency:   c.concurrency,
			LeaseDuration: c.lease,
			Logger:        log,
		})
		if err != nil {
			return err
		}
		if err := w.Start(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			if err := w.Stop(sctx); err != nil {
				log.Warn("worker stop", "error", err)
			}
		}()
		fmt.Printf("worker started on queue %s\n", c.queue)
	}
	if !api {
		<-ctx.Done()
		return nil
	}

	h, err := asyncreq.NewHandler(store, store, &asyncreq.HandlerOptions{Logger: log})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/jobs/", http.StripPrefix("/jobs", h))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("api listening on http://%s/jobs/\n", ln.Addr())
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
