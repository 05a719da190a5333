package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// bareEnv names the environment variable that turns the program into the
// bare server of a -url run: set to an address, such as 127.0.0.1:0, the
// program serves only bareHandler on it, writes the URL it serves as the
// first line of its standard output, and exits when its standard input
// ends (the parent closed it, or died).
const bareEnv = "ASYNCREQ_LOADTEST_SERVE_BARE"

// bareStartWait bounds how long the parent waits for the bare server's URL.
const bareStartWait = 10 * time.Second

// baseline is a bare handler's figures, which the others are given as
// multiples of, with what the ratios call it.
type baseline struct {
	stats
	name string // "bare", or which bare it is: "bare (another process)"
}

// serveBareIfAsked serves as the bare server of a -url run, and then exits,
// when bareEnv is set; otherwise it returns at once. It comes first in main
// and TestMain, so that the program and its test binary can both be the
// bare server.
func serveBareIfAsked() {
	addr, ok := os.LookupEnv(bareEnv)
	if !ok {
		return
	}
	if err := serveBare(addr, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: bare server:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serveBare serves bareHandler on addr, writes the URL of its /jobs to out
// as one line, and serves until in ends. It serves its process's metrics
// at /metrics too, as the example server does, for its CPU time (cpu.go).
func serveBare(addr string, in io.Reader, out io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", processMetrics())
	mux.Handle("/", bareHandler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if _, err := fmt.Fprintf(out, "http://%s/jobs\n", ln.Addr()); err != nil {
		_ = srv.Close()
		<-served
		return fmt.Errorf("write the URL: %w", err)
	}
	_, err = io.Copy(io.Discard, in)
	_ = srv.Close()
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("read standard input: %w", err)
	}
	return nil
}

// processMetrics serves this process's metrics (process_cpu_seconds_total
// among them) in the Prometheus text format.
func processMetrics() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// bareProcess is a copy of this program serving bareHandler in another
// process; stop it when done.
type bareProcess struct {
	url   string
	cmd   *exec.Cmd
	stdin io.Closer
}

// startBare starts a copy of this program (the test binary, in tests) as
// the bare server, listening on addr (127.0.0.1:0: a free port) with the
// default GOMAXPROCS, and waits until it tells its URL.
func startBare(ctx context.Context, addr string) (*bareProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to start the bare server: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), bareEnv+"="+addr)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bare server's standard input: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = stdin.Close()
		return nil, fmt.Errorf("bare server's standard output: %w", err)
	}
	if err := cmd.Start(); err != nil {
		_ = stdin.Close()
		return nil, fmt.Errorf("start the bare server %s: %w", exe, err)
	}
	p := &bareProcess{cmd: cmd, stdin: stdin}
	type line struct {
		s   string
		err error
	}
	first := make(chan line, 1)
	go func() {
		s, err := bufio.NewReader(stdout).ReadString('\n')
		first <- line{s, err}
	}()
	limit := time.NewTimer(bareStartWait)
	defer limit.Stop()
	read := false // first has answered
	select {
	case l := <-first:
		read = true
		err = l.err
		p.url = strings.TrimSpace(l.s)
	case <-limit.C:
		err = fmt.Errorf("it wrote no URL in %s", bareStartWait)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil && !strings.HasPrefix(p.url, "http://") {
		err = fmt.Errorf("it wrote %q, not its URL", p.url)
	}
	if err != nil {
		// Its end closes its standard output, which ends the reader,
		// before Wait closes the pipe.
		_ = p.kill()
		if !read {
			<-first
		}
		_ = p.cmd.Wait()
		return nil, fmt.Errorf("start the bare server %s: %w", exe, err)
	}
	return p, nil
}

// kill ends the bare server: it is killed, and exits anyway when its
// standard input ends.
func (p *bareProcess) kill() error {
	_ = p.stdin.Close()
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill the bare server: %w", err)
	}
	return nil
}

// stop kills the bare server and waits until it has exited.
func (p *bareProcess) stop() error {
	err := p.kill()
	// Killed, it exits with an error: what matters is that it has exited.
	_ = p.cmd.Wait()
	return err
}

// bareElsewhere measures bareHandler served by another process, through
// the client code that loads -url, and stops that process before it returns.
func bareElsewhere(ctx context.Context, o options) (st stats, err error) {
	p, err := startBare(ctx, "127.0.0.1:0")
	if err != nil {
		return stats{}, err
	}
	defer func() {
		if serr := p.stop(); err == nil {
			err = serr
		}
	}()
	m, err := newCPUMeter(p.url)
	if err != nil {
		return stats{}, err
	}
	st, err = postAt(ctx, o, p.url, m, nil, http.StatusAccepted)
	if err != nil {
		return stats{}, fmt.Errorf("bare server at %s: %w", p.url, err)
	}
	return st, nil
}
