// Command distributed runs asyncreq on many machines: API processes that
// accept requests and worker processes that run them, sharing one database
// (PostgreSQL by default, or SQLite, Redis, NATS: -backend) and nothing
// else.
//
//	distributed -role api    -addr :8080 -postgres postgres://...
//	distributed -role worker             -postgres postgres://...
//	distributed -role both   -addr :8080 -postgres postgres://...
//	distributed -role worker -backend sqlite -sqlite-path /shared/asyncreq.db
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
// simulated work, served with a Run-Id header naming the run that made it.
// A worker killed mid-request loses nothing: its leases run out after
// -lease and other workers run those requests again. With -runlog, each
// run appends a line to a file when it starts and when it finishes, so
// that a check from outside can count runs (examples/chaos does).
//
// PostgreSQL tables live in the schema -schema, created and migrated at
// start (concurrent starts are safe); Redis keys start with -prefix.
// SIGINT or SIGTERM stops a process gracefully: the API finishes the
// requests it is answering and the worker hands back the requests it has
// not finished.
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
	"github.com/asyncreq/asyncreq/examples/internal/backend"
)

// config is the command line.
type config struct {
	role        string
	addr        string
	bk          backend.Config
	queue       string
	concurrency int
	lease       time.Duration
	work        time.Duration
	runlog      string
}

func main() {
	var c config
	flag.StringVar(&c.role, "role", "both", "what this process runs: api, worker or both")
	flag.StringVar(&c.addr, "addr", "127.0.0.1:8080", "address the API listens on (roles api and both)")
	flag.StringVar(&c.bk.Name, "backend", "postgres", "the database the processes share: "+backend.Names())
	flag.StringVar(&c.bk.Postgres, "postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL")
	flag.StringVar(&c.bk.Schema, "schema", "asyncreq", "PostgreSQL schema of the tables")
	flag.IntVar(&c.bk.PostgresConns, "pool", 16, "PostgreSQL connections of this process")
	flag.StringVar(&c.bk.Redis, "redis", "redis://127.0.0.1:6379/0", "Redis URL")
	flag.StringVar(&c.bk.RedisPrefix, "prefix", "asyncreq:", "prefix of the Redis keys")
	flag.StringVar(&c.bk.SQLitePath, "sqlite-path", "asyncreq.db", "SQLite database file, shared by the processes of one machine")
	flag.StringVar(&c.bk.NATS, "nats", "nats://127.0.0.1:4222", "NATS URL")
	flag.StringVar(&c.queue, "queue", "distributed", "queue name shared by the API and the workers")
	flag.IntVar(&c.concurrency, "concurrency", 16, "requests a worker runs at once")
	flag.DurationVar(&c.lease, "lease", 30*time.Second, "worker lease: how soon a dead worker's requests run again")
	flag.DurationVar(&c.work, "work", 10*time.Millisecond, "simulated work per request")
	flag.StringVar(&c.runlog, "runlog", "", "file to append a line to as each run starts and finishes")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, log); err != nil {
		fmt.Fprintln(os.Stderr, "distributed:", err)
		os.Exit(1)
	}
}

// runLog appends one line per event of a run to a file shared by the
// processes: "start RUN ID SHA256" when a run starts and "done RUN ID
// SHA256" when it returns its result. Each line is one write to a file
// opened for appending, so lines of concurrent writers, in this process
// or another, do not mix. A nil runLog writes nothing.
type runLog struct{ f *os.File }

func (l *runLog) note(event, run, id, sum string) error {
	if l == nil {
		return nil
	}
	_, err := l.f.WriteString(event + " " + run + " " + id + " " + sum + "\n")
	return err
}

// process is the deterministic processor: the hex SHA-256 of the body,
// with the id of the run in the Run-Id header.
func process(work time.Duration, runs *runLog) asyncreq.ProcessorFunc {
	return func(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
		sum := sha256.Sum256(req.Body)
		hexSum := hex.EncodeToString(sum[:])
		run := asyncreq.NewID()
		if err := runs.note("start", run, req.ID, hexSum); err != nil {
			return nil, err
		}
		if work > 0 {
			t := time.NewTimer(work)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		if err := runs.note("done", run, req.ID, hexSum); err != nil {
			return nil, err
		}
		return &asyncreq.Result{
			ContentType: "text/plain",
			Header:      http.Header{"Run-Id": {run}},
			Body:        []byte(hexSum),
		}, nil
	}
}

// run runs the role until ctx ends, then stops it gracefully.
func run(ctx context.Context, c config, log *slog.Logger) error {
	api, worker := c.role == "api" || c.role == "both", c.role == "worker" || c.role == "both"
	if !api && !worker {
		return fmt.Errorf("-role %q: want api, worker or both", c.role)
	}
	c.bk.Lease, c.bk.Concurrency, c.bk.Logger = c.lease, c.concurrency, log
	bk, err := backend.Open(ctx, c.bk)
	if err != nil {
		return err
	}
	defer bk.Close()
	b, err := bk.Endpoint(ctx, c.queue)
	if err != nil {
		return err
	}

	// Shutdown gets a context of its own: ctx has ended by then.
	const grace = 10 * time.Second
	if worker {
		var runs *runLog
		if c.runlog != "" {
			f, err := os.OpenFile(c.runlog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			defer f.Close()
			runs = &runLog{f: f}
		}
		w, err := asyncreq.NewWorker(b, process(c.work, runs), &asyncreq.WorkerOptions{
			Concurrency:   c.concurrency,
			LeaseDuration: c.lease,
			Logger:        log,
		})
		if err != nil {
			return err
		}
		// The end of ctx (the signal) stops the worker gracefully; the
		// deferred Stop waits for it.
		if err := w.Start(ctx); err != nil {
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

	h, err := asyncreq.NewHandler(b, &asyncreq.HandlerOptions{Logger: log})
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
