package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cluster is the two API and two worker processes of examples/distributed,
// each in a slot that keeps its command line (and so an API its port)
// across restarts.
type cluster struct {
	bin    string
	logw   io.Writer // the processes' stderr, each line prefixed by its process
	slots  []*slot
	apiURL []string // base URL of the handler of each API slot
	killed map[string]int
}

// slot is one of the four processes, started again after each kill.
type slot struct {
	name   string // api0, api1, worker0, worker1
	role   string
	args   []string
	starts int
	proc   *proc
}

// proc is one run of a slot's process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been waited for
}

const startTimeout = 20 * time.Second

// newCluster starts the processes: common is the command line they share
// (backend, lease, run log, ...).
func newCluster(ctx context.Context, bin string, logw io.Writer, common []string) (*cluster, error) {
	c := &cluster{bin: bin, logw: logw, killed: map[string]int{}}
	for i := range 2 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		c.apiURL = append(c.apiURL, "http://"+addr+"/jobs")
		c.slots = append(c.slots, &slot{name: fmt.Sprintf("api%d", i), role: "api",
			args: append([]string{"-role", "api", "-addr", addr}, common...)})
	}
	for i := range 2 {
		c.slots = append(c.slots, &slot{name: fmt.Sprintf("worker%d", i), role: "worker",
			args: append([]string{"-role", "worker"}, common...)})
	}
	for _, s := range c.slots {
		if err := c.start(ctx, s); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

// freePort returns a port that was free a moment ago. The API slots keep
// theirs across restarts, as API servers behind a load balancer would.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start runs s's process and waits until it says it is ready.
func (c *cluster) start(ctx context.Context, s *slot) error {
	s.starts++
	cmd := exec.Command(c.bin, s.args...)
	cmd.Stderr = &prefixWriter{w: c.logw, prefix: fmt.Sprintf("%s#%d: ", s.name, s.starts)}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "api listening on ") || strings.HasPrefix(line, "worker started ") {
				select {
				case <-ready:
				default:
					close(ready)
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
	}()
	t := time.NewTimer(startTimeout)
	defer t.Stop()
	select {
	case <-ready:
		s.proc = p
		return nil
	case <-p.exited:
		return fmt.Errorf("%s exited at start: %v", s.name, cmd.ProcessState)
	case <-t.C:
		err = fmt.Errorf("%s not ready within %v", s.name, startTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = cmd.Process.Kill()
	<-p.exited
	return err
}

// kill SIGKILLs s's process, waits for it to die and starts it again.
func (c *cluster) kill(ctx context.Context, s *slot) error {
	if err := s.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s: %w", s.name, err)
	}
	<-s.proc.exited
	s.proc = nil
	c.killed[s.role]++
	start := time.Now()
	// A restart can meet the database still busy with the dead process's
	// work (SQLite's lock, PostgreSQL's migration lock): try again.
	var err error
	for range 3 {
		if err = c.start(ctx, s); err == nil || ctx.Err() != nil {
			break
		}
	}
	c.logf("chaos: SIGKILLed %s; restarted in %v (err: %v)\n", s.name, time.Since(start).Round(time.Millisecond), err)
	return err
}

// chaos kills one process every interval until the time until has come
// and at least minKills kills were done, or ctx ends, taking the
// processes in a new random order every four kills so that each is killed
// as often as the others. It returns the first restart that failed.
func (c *cluster) chaos(ctx context.Context, until time.Time, minKills int, every time.Duration, rng *rand.Rand) error {
	t := time.NewTicker(every)
	defer t.Stop()
	var order []int
	for kills := 0; kills < minKills || time.Now().Before(until); kills++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if len(order) == 0 {
			order = rng.Perm(len(c.slots))
		}
		s := c.slots[order[0]]
		order = order[1:]
		if err := c.kill(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// stop ends every process with SIGTERM (SIGKILL after a grace period) and
// reports the ones that did not exit cleanly.
func (c *cluster) stop() error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.slots))
	for i, s := range c.slots {
		if s.proc == nil {
			continue
		}
		wg.Go(func() {
			p := s.proc
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			t := time.NewTimer(15 * time.Second)
			defer t.Stop()
			select {
			case <-p.exited:
				if !p.cmd.ProcessState.Success() {
					errs[i] = fmt.Errorf("%s: %v at SIGTERM", s.name, p.cmd.ProcessState)
				}
			case <-t.C:
				_ = p.cmd.Process.Kill()
				<-p.exited
				errs[i] = fmt.Errorf("%s did not stop within 15s of SIGTERM", s.name)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// prefixWriter writes each line to w with a prefix. The processes' writers
// share w, so each line goes in one Write under one lock.
type prefixWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

var logMu sync.Mutex

// logf writes a line of the cluster's own to the processes' log.
func (c *cluster) logf(format string, args ...any) {
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(c.logw, format, args...)
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		logMu.Lock()
		_, err := io.WriteString(p.w, p.prefix+string(p.buf[:i+1]))
		logMu.Unlock()
		p.buf = p.buf[i+1:]
		if err != nil {
			return len(b), err
		}
	}
}
