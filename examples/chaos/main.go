// Command chaos checks that asyncreq neither loses nor doubles a request
// while its processes are killed. It runs two API processes and two worker
// processes of examples/distributed on one backend, SIGKILLs one of the
// four every -kill-every (restarting it at once) for -d while -clients
// clients submit through the APIs, then waits for the drain and checks
// every request that was answered 202 Accepted:
//
//	go run ./examples/chaos -backend sqlite
//	go run ./examples/chaos -backend postgres -postgres "$ASYNCREQ_TEST_POSTGRES"
//	go run ./examples/chaos -backend redis -redis "$ASYNCREQ_TEST_REDIS"
//
// The processes share one SQLite file in a temporary directory, a fresh
// PostgreSQL schema or a fresh Redis key prefix, removed at the end.
//
// A client sends each request with an Idempotency-Key. When the answer is
// a network error or a 5xx (the API died under it, or was down), the
// request may or may not have been accepted: the client sends it again,
// with the same key, to the other API until one answers. Only a 202
// counts as accepted. A client waits for its own requests, keeping a few
// unfinished at a time, and notes how each finished when it first sees it.
//
// The processor's result is the hex SHA-256 of the body, with a Run-Id
// header naming the run that made it, and every run appends to a log file
// when it starts and when it returns. A request counts as succeeded when
// its result is its own, came from one of its runs, and is the one first
// seen (an outcome written again would change it); as doubled when it
// changed, or when its body was run under a second request id; as lost
// when it was unknown or unfinished at the end. Runs started and finished
// are counted apart: at-least-once delivery runs a request again when its
// worker was killed before the outcome was written.
//
// The exit status is 1 when any request was lost, doubled, failed or
// wrong. The processes' logs are kept in the work directory, which is
// left in place when a check fails.
package main

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
)

// config is the command line.
type config struct {
	backend     string
	postgres    string
	redis       string
	duration    time.Duration // of the kills
	killEvery   time.Duration
	minKills    int // kills go on past duration until there were as many
	clients     int
	window      int // unfinished requests a client keeps
	lease       time.Duration
	work        time.Duration
	concurrency int
	drain       time.Duration // longest wait for the drain
	seed        uint64
	bin         string // examples/distributed, built when empty
	dir         string // work directory
}

func main() {
	var c config
	flag.StringVar(&c.backend, "backend", "sqlite", "sqlite, postgres or redis")
	flag.StringVar(&c.postgres, "postgres", envOr("ASYNCREQ_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL")
	flag.StringVar(&c.redis, "redis", envOr("ASYNCREQ_TEST_REDIS", "redis://127.0.0.1:6379/0"), "Redis URL")
	flag.DurationVar(&c.duration, "d", 30*time.Second, "how long processes are killed for")
	flag.DurationVar(&c.killEvery, "kill-every", time.Second, "time between two kills")
	flag.IntVar(&c.minKills, "min-kills", 0, "kill on after -d until this many processes were killed")
	flag.IntVar(&c.clients, "clients", 32, "clients submitting at once")
	flag.IntVar(&c.window, "window", 8, "unfinished requests each client keeps")
	flag.DurationVar(&c.lease, "lease", 2*time.Second, "the workers' lease")
	flag.DurationVar(&c.work, "work", 20*time.Millisecond, "the processor's simulated work per request")
	flag.IntVar(&c.concurrency, "concurrency", 8, "requests each worker runs at once")
	flag.DurationVar(&c.drain, "drain", 2*time.Minute, "longest wait, after the kills, for every request to finish")
	flag.Uint64Var(&c.seed, "seed", 0, "seed of the order of the kills (0: random)")
	flag.StringVar(&c.bin, "bin", "", "examples/distributed binary (default: built into the work directory)")
	keep := flag.Bool("keep", false, "keep the work directory (the processes' logs and the run log)")
	flag.Parse()
	if c.seed == 0 {
		c.seed = rand.Uint64()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "asyncreq-chaos-")
	if err != nil {
		fail(err)
	}
	c.dir = dir
	rep, err := run(ctx, c)
	if rep != nil {
		fmt.Print(rep)
	}
	if *keep || err != nil || !rep.OK() {
		fmt.Fprintf(os.Stderr, "chaos: seed %d; processes' logs kept in %s\n", c.seed, dir)
	}
	if err != nil || !rep.OK() {
		if err == nil {
			err = errors.New("check failed")
		}
		fail(err)
	}
	if !*keep {
		_ = os.RemoveAll(dir)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "chaos:", err)
	os.Exit(1)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// build builds examples/distributed into dir.
func build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "distributed")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/asyncreq/asyncreq/examples/distributed")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build examples/distributed: %w\n%s", err, out)
	}
	return bin, nil
}

// run runs one chaos test as c says and reports it. An error means the
// test could not be run (a process would not start, the backend is
// unreachable); what it found is in the report.
func run(ctx context.Context, c config) (rep *Report, err error) {
	if c.bin == "" {
		if c.bin, err = build(ctx, c.dir); err != nil {
			return nil, err
		}
	}
	args, cleanup, err := prepare(ctx, c)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	runLog := filepath.Join(c.dir, "runs.log")
	args = append(args, "-backend", c.backend, "-runlog", runLog, "-lease", c.lease.String(),
		"-work", c.work.String(), "-concurrency", strconv.Itoa(c.concurrency))

	logf, err := os.Create(filepath.Join(c.dir, "processes.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cl, err := newCluster(ctx, c.bin, logf, args)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, cl.stop()) }()
	a := newAPI(cl.apiURL, c.clients)
	defer a.close()

	rep = &Report{Backend: c.backend}
	// Kills and new submits end together; a submit being retried then
	// goes on until it is answered (see api.submit).
	start := time.Now()
	submitting, stopSubmitting := context.WithCancel(ctx)
	defer stopSubmitting()
	chaosDone := make(chan error, 1)
	go func() {
		defer stopSubmitting()
		chaosDone <- cl.chaos(ctx, start.Add(c.duration), c.minKills, c.killEvery, rand.New(rand.NewPCG(c.seed, c.seed)))
	}()
	var (
		mu   sync.Mutex
		reqs []*request
		wg   sync.WaitGroup
	)
	for n := range c.clients {
		wg.Go(func() {
			r, st := a.client(submitting, ctx, n, c.window)
			mu.Lock()
			defer mu.Unlock()
			reqs = append(reqs, r...)
			rep.Submit.add(st)
		})
	}
	wg.Wait()
	if err := <-chaosDone; err != nil {
		return rep, err
	}
	rep.Killed = cl.killed
	rep.Kills = time.Since(start).Round(100 * time.Millisecond)

	start = time.Now()
	dctx, cancel := context.WithTimeout(ctx, c.drain)
	defer cancel()
	drain(dctx, a, reqs)
	rep.Drain = time.Since(start)
	// An attempt that lost its lease but still wrote its outcome would do
	// so within a lease: give it one before looking again.
	pause(ctx, c.lease)
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	return rep, verify(ctx, a, reqs, runLog, rep)
}

// prepare gives the run a place of its own on its backend: the
// processes' arguments that name it, and a function that removes it.
func prepare(ctx context.Context, c config) ([]string, func() error, error) {
	var b [6]byte
	_, _ = cryptorand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	switch c.backend {
	case "sqlite":
		return []string{"-sqlite-path", filepath.Join(c.dir, "chaos.db")}, func() error { return nil }, nil
	case "postgres":
		conn, err := pgx.Connect(ctx, c.postgres)
		if err != nil {
			return nil, nil, fmt.Errorf("postgres: %w", err)
		}
		_ = conn.Close(ctx)
		schema := "asyncreq_chaos_" + tag
		drop := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, c.postgres)
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			return err
		}
		return []string{"-postgres", c.postgres, "-schema", schema, "-pool", "8"}, drop, nil
	case "redis":
		opt, err := goredis.ParseURL(c.redis)
		if err != nil {
			return nil, nil, fmt.Errorf("redis: %w", err)
		}
		rc := goredis.NewClient(opt)
		if err := rc.Ping(ctx).Err(); err != nil {
			_ = rc.Close()
			return nil, nil, fmt.Errorf("redis: %w", err)
		}
		prefix := "asyncreq-chaos-" + tag + ":"
		drop := func() error {
			defer rc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			iter := rc.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			var keys []string
			for iter.Next(ctx) {
				keys = append(keys, iter.Val())
			}
			if err := iter.Err(); err != nil || len(keys) == 0 {
				return err
			}
			return rc.Unlink(ctx, keys...).Err()
		}
		return []string{"-redis", c.redis, "-prefix", prefix}, drop, nil
	}
	return nil, nil, fmt.Errorf("-backend %q: want sqlite, postgres or redis", c.backend)
}
