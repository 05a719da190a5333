package asyncreqtest

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
)

// Options tunes the kit to a backend. A nil *Options means all defaults.
type Options struct {
	// LeaseTTL is the lease length the Queue cases ask Dequeue for, and the
	// LeaseDuration of the Worker in the Handler cases. The cases that wait
	// for a lease to run out take a few times this long. A backend whose
	// lease length is fixed by its engine sets it to that length. Zero
	// means the default, 1s.
	LeaseTTL time.Duration

	// NoLeaseExpiry, if not empty, says that the Queue's leases do not run
	// out by time (for example, a broker that redelivers only when the
	// consumer's connection drops), and why. The cases that wait for a
	// lease to expire are then skipped with this reason. The default is ""
	// (leases expire).
	NoLeaseExpiry string

	// StatsTotalOnly, if not empty, says that the Queue's QueueStats
	// cannot tell some of Pending, Delayed and Running apart (for example,
	// an engine that counts a message handed back for later together with
	// leased ones), and why. The Stats cases then check the sum of the
	// three, taking an asyncreq.Uncounted count as 0, instead of each. The
	// default is "" (each is checked where it is counted).
	StatsTotalOnly string

	// StatsPrefetch, if not empty, says that the Queue's consumer takes
	// entries out of QueueStats' counts before Dequeue hands them out (a
	// broker's prefetch), and why. The Stats cases that dequeue are then
	// skipped with this reason. The default is "".
	StatsPrefetch string
}

// Default values of Options and fixed limits of the kit.
const (
	defaultLeaseTTL = time.Second
	// caseTimeout is how long one case may run, beyond a few lease
	// lengths, before the watchdog fails it and cancels its context.
	caseTimeout = 30 * time.Second
	// hangGrace is how long a case may keep running after the watchdog
	// canceled its context before the kit gives up on it and stops the
	// test binary with every goroutine's stack.
	hangGrace = 10 * time.Second
	// soon is how soon a blocked call must return after the event that
	// releases it.
	soon = 500 * time.Millisecond
	// patience is how long the kit waits for something that a backend
	// does in the background (expiry, redelivery, a worker's outcome)
	// beyond the time it is due.
	patience = 5 * time.Second
)

// config is Options with the defaults applied, and the watchdog's limits.
type config struct {
	leaseTTL      time.Duration
	noLeaseExpiry string
	statsTotal    string
	statsPrefetch string
	// limit is how long one case may run before the watchdog fails it;
	// grace is how long it may run on after that (see runCase).
	limit, grace time.Duration
}

// newConfig applies the defaults to opts, failing t if an option is
// invalid.
func newConfig(t *testing.T, opts *Options) config {
	t.Helper()
	c := config{leaseTTL: defaultLeaseTTL, grace: hangGrace}
	if opts != nil {
		switch {
		case opts.LeaseTTL < 0:
			t.Fatalf("asyncreqtest: Options.LeaseTTL must not be negative, got %v", opts.LeaseTTL)
		case opts.LeaseTTL > 0:
			c.leaseTTL = opts.LeaseTTL
		}
		c.noLeaseExpiry = opts.NoLeaseExpiry
		c.statsTotal = opts.StatsTotalOnly
		c.statsPrefetch = opts.StatsPrefetch
	}
	c.limit = caseTimeout + 10*c.leaseTTL
	return c
}

// skipWithoutLeaseExpiry skips t when the Queue's leases do not expire.
func (c config) skipWithoutLeaseExpiry(t *testing.T) {
	t.Helper()
	if c.noLeaseExpiry != "" {
		t.Skipf("leases do not expire by time: %s", c.noLeaseExpiry)
	}
}

// TestBackend runs TestStore, TestQueue and TestHandler against a backend,
// as the subtests Store, Queue and Handler, and, as the subtests Completer
// and Claimer, the asyncreq.Completer and asyncreq.Claimer cases (each
// skipped unless the Backend implements it). newBackend is called once per case and must return a fresh,
// isolated Backend (a backend's own type, or asyncreq.Pair of a Store and
// a Queue), registering its cleanup with t.Cleanup.
func TestBackend(t *testing.T, newBackend func(t *testing.T) asyncreq.Backend, opts *Options) {
	t.Helper()
	t.Run("Store", func(t *testing.T) {
		TestStore(t, func(t *testing.T) asyncreq.Store { return newBackend(t) }, opts)
	})
	t.Run("Queue", func(t *testing.T) {
		TestQueue(t, func(t *testing.T) asyncreq.Queue { return newBackend(t) }, opts)
	})
	t.Run("Completer", func(t *testing.T) {
		testCompleter(t, newBackend, opts)
	})
	t.Run("Claimer", func(t *testing.T) {
		testClaimer(t, newBackend, opts)
	})
	t.Run("Handler", func(t *testing.T) {
		TestHandler(t, newBackend, opts)
	})
	t.Run("Operate", func(t *testing.T) {
		TestOperate(t, newBackend, opts)
	})
}

// TestOperate runs the cases of the operator functions on a Backend
// (asyncreq.RetryRequest, CancelRequest and DeleteRequest), as TestBackend
// does in its subtest Operate: for a Queue tested with TestQueue beside a
// Store of another module, through asyncreq.Pair. They are skipped unless
// the Backend's Store is an asyncreq.Lister.
func TestOperate(t *testing.T, newBackend func(t *testing.T) asyncreq.Backend, opts *Options) {
	t.Helper()
	cfg := newConfig(t, opts)
	runCase(t, cfg, "RetryCancelDelete", func(t *testing.T, ctx context.Context) {
		testRetryRequest(t, ctx, newBackend(t), cfg)
	})
}

// runCase runs f as the subtest name of t under a watchdog. f gets the
// case's context, which ends when the case ends or when the watchdog fires.
//
// The watchdog fails the case and cancels its context when the case runs
// longer than cfg.limit. A case that still has not returned cfg.grace
// later is stuck in a call that ignores its context: the kit then writes
// every goroutine's stack to stderr and panics, so that a hung backend
// fails CI with a reason instead of hanging it.
func runCase(t *testing.T, cfg config, name string, f func(t *testing.T, ctx context.Context)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			timer := time.NewTimer(cfg.limit)
			defer timer.Stop()
			select {
			case <-stop:
				return
			case <-timer.C:
			}
			t.Errorf("watchdog: the case did not finish within %v; canceling its context", cfg.limit)
			cancel()
			timer.Reset(cfg.grace)
			select {
			case <-stop:
				return
			case <-timer.C:
			}
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "asyncreqtest: %s is still running %v after its context was canceled; goroutines:\n%s\n",
				t.Name(), cfg.grace, buf)
			panic(fmt.Sprintf("asyncreqtest: %s hung: a backend call ignores its context", t.Name()))
		}()
		// Registered first, so it runs last: after the factory's cleanup,
		// which the watchdog also covers.
		t.Cleanup(func() {
			close(stop)
			<-done
			cancel()
		})
		f(t, ctx)
	})
}

// eventually calls cond every interval until it reports true, and fails t
// with what describe says when timeout passes or ctx ends first. cond runs
// on the test's goroutine, so it may use require.
func eventually(t *testing.T, ctx context.Context, timeout, interval time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not so after %v: %s", timeout, describe())
		}
		select {
		case <-ctx.Done():
			t.Fatalf("context ended (%v) while waiting: %s", context.Cause(ctx), describe())
		case <-time.After(interval):
		}
	}
}

// says returns a describe function for eventually with a fixed text.
func says(msg string) func() string { return func() string { return msg } }

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}
