package asyncreqtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// childEnv names the fault (or watchdog scenario) a child process of
// these tests runs.
const childEnv = "ASYNCREQTEST_CHILD"

// runChild runs the test named test of this binary in a child process,
// with childEnv set to scenario and -test.run set to pattern, and returns
// its output. It fails t if the child passes.
func runChild(t *testing.T, scenario, pattern string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run="+pattern, "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+scenario)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the child %s must fail; output:\n%s", scenario, out)
	return string(out)
}

// backend is a memory Backend with one method replaced by a faulty one.
type backend struct {
	*memory.Backend
	get      func(ctx context.Context, id string) (*asyncreq.Record, error)
	update   func(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error)
	delete   func(ctx context.Context, id string, tombstone bool) error
	purge    func(ctx context.Context, now time.Time, limit int) (int, error)
	enqueue  func(ctx context.Context, id string, delay time.Duration) error
	ack      func(ctx context.Context, l *asyncreq.Lease) error
	complete func(ctx context.Context, l *asyncreq.Lease, fn func(*asyncreq.Record) error) (*asyncreq.Record, error)
}

func (b *backend) Get(ctx context.Context, id string) (*asyncreq.Record, error) {
	if b.get != nil {
		return b.get(ctx, id)
	}
	return b.Backend.Get(ctx, id)
}

func (b *backend) Update(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	if b.update != nil {
		return b.update(ctx, id, fn)
	}
	return b.Backend.Update(ctx, id, fn)
}

func (b *backend) Delete(ctx context.Context, id string, tombstone bool) error {
	if b.delete != nil {
		return b.delete(ctx, id, tombstone)
	}
	return b.Backend.Delete(ctx, id, tombstone)
}

func (b *backend) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	if b.purge != nil {
		return b.purge(ctx, now, limit)
	}
	return b.Backend.Purge(ctx, now, limit)
}

func (b *backend) Enqueue(ctx context.Context, id string, delay time.Duration) error {
	if b.enqueue != nil {
		return b.enqueue(ctx, id, delay)
	}
	return b.Backend.Enqueue(ctx, id, delay)
}

func (b *backend) Ack(ctx context.Context, l *asyncreq.Lease) error {
	if b.ack != nil {
		return b.ack(ctx, l)
	}
	return b.Backend.Ack(ctx, l)
}

func (b *backend) Complete(ctx context.Context, l *asyncreq.Lease, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	if b.complete != nil {
		return b.complete(ctx, l, fn)
	}
	return b.Backend.Complete(ctx, l, fn)
}

// fault is a backend defect and the case of the kit that must catch it.
type fault struct {
	name    string
	kit     string // "store", "queue", "completer" or "handler"
	pattern string // the -test.run pattern below the test, selecting the case
	want    string // the case that must fail, below the test
	make    func(m *memory.Backend) *backend
}

var faults = []fault{
	{
		name: "GetMapsNoErrorToSentinel", kit: "store",
		pattern: "^Get$/^UnknownIsNotFound$", want: "Get/UnknownIsNotFound",
		make: func(m *memory.Backend) *backend {
			b := &backend{Backend: m}
			b.get = func(ctx context.Context, id string) (*asyncreq.Record, error) {
				rec, err := m.Get(ctx, id)
				if errors.Is(err, asyncreq.ErrNotFound) {
					return nil, errors.New("no such key")
				}
				return rec, err
			}
			return b
		},
	},
	{
		name: "GetSharesRecords", kit: "store",
		pattern: "^Copies$/^ReturnedRecordsAreNotShared$", want: "Copies/ReturnedRecordsAreNotShared",
		make: func(m *memory.Backend) *backend {
			b := &backend{Backend: m}
			var mu sync.Mutex
			cache := map[string]*asyncreq.Record{}
			b.get = func(ctx context.Context, id string) (*asyncreq.Record, error) {
				mu.Lock()
				defer mu.Unlock()
				if rec, ok := cache[id]; ok {
					return rec, nil
				}
				rec, err := m.Get(ctx, id)
				if err == nil {
					cache[id] = rec
				}
				return rec, err
			}
			return b
		},
	},
	{
		name: "UpdateIsNotAtomic", kit: "store",
		pattern: "^Update$/^ConcurrentUpdatesLoseNothing$", want: "Update/ConcurrentUpdatesLoseNothing",
		make: func(m *memory.Backend) *backend {
			b := &backend{Backend: m}
			b.update = func(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
				rec, err := m.Get(ctx, id)
				if err != nil {
					return nil, err
				}
				if err := fn(rec); err != nil {
					return nil, err
				}
				time.Sleep(time.Millisecond)
				return m.Update(ctx, id, func(r *asyncreq.Record) error {
					*r = *rec
					return nil
				})
			}
			return b
		},
	},
	{
		name: "UpdateDropsCancelRequested", kit: "store",
		pattern: "^Lifecycle$/^RequestCancelOfRunningIsSeenByTheAttempt$", want: "Lifecycle/RequestCancelOfRunningIsSeenByTheAttempt",
		make: func(m *memory.Backend) *backend {
			return dropOnUpdate(m, func(r *asyncreq.Record) { r.CancelRequested = false })
		},
	},
	{
		name: "UpdateDropsEnqueued", kit: "store",
		pattern: "^Lifecycle$/^MarkEnqueued$", want: "Lifecycle/MarkEnqueued",
		make: func(m *memory.Backend) *backend {
			return dropOnUpdate(m, func(r *asyncreq.Record) { r.Enqueued = false })
		},
	},
	{
		name: "PurgeDoesNothing", kit: "store",
		pattern: "^Purge$/", want: "Purge/RemovesOnlyExpiredFinalRecordsAndKeepsTombstones",
		make: func(m *memory.Backend) *backend {
			b := &backend{Backend: m}
			b.purge = func(context.Context, time.Time, int) (int, error) { return 0, nil }
			return b
		},
	},
	{
		name: "EnqueueIgnoresDelay", kit: "queue",
		pattern: "^Enqueue$/^DelayIsHonored$", want: "Enqueue/DelayIsHonored",
		make: func(m *memory.Backend) *backend {
			b := &backend{Backend: m}
			b.enqueue = func(ctx context.Context, id string, _ time.Duration) error { return m.Enqueue(ctx, id, 0) }
			return b
		},
	},
	{
		name: "AckSettlesTwice", kit: "queue",
		pattern: "^Ack$/^SettledLeaseIsLost$", want: "Ack/SettledLeaseIsLost",
		make: func(m *memory.Backend) *backend {
			b := &backend{Backend: m}
			b.ack = func(ctx context.Context, l *asyncreq.Lease) error {
				if err := m.Ack(ctx, l); !errors.Is(err, asyncreq.ErrLeaseLost) {
					return err
				}
				return nil
			}
			return b
		},
	},
	{
		name: "CompleteLeavesLeaseHeld", kit: "completer",
		pattern: "^Complete$/^FinalRecordSettlesLease$", want: "Complete/FinalRecordSettlesLease",
		make: func(m *memory.Backend) *backend {
			b := &backend{Backend: m}
			b.complete = func(ctx context.Context, l *asyncreq.Lease, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
				return m.Update(ctx, l.ID, fn)
			}
			return b
		},
	},
	{
		name: "DeleteKeepsNoTombstone", kit: "handler",
		pattern: "^Delete$/^FinalIsDeletedThenGone$", want: "Delete/FinalIsDeletedThenGone",
		make: func(m *memory.Backend) *backend {
			b := &backend{Backend: m}
			b.delete = func(ctx context.Context, id string, _ bool) error { return m.Delete(ctx, id, false) }
			return b
		},
	},
}

// dropOnUpdate returns a backend whose Update stores what fn left less
// what drop clears: a Store that has no place for a field.
func dropOnUpdate(m *memory.Backend, drop func(*asyncreq.Record)) *backend {
	b := &backend{Backend: m}
	b.update = func(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
		return m.Update(ctx, id, func(r *asyncreq.Record) error {
			if err := fn(r); err != nil {
				return err
			}
			drop(r)
			return nil
		})
	}
	return b
}

// TestKitCatchesFaults runs the kit, in a child process, against memory
// backends with one defect each, and checks that the case for that defect
// fails: a kit that passes everything proves nothing.
func TestKitCatchesFaults(t *testing.T) {
	if name := os.Getenv(childEnv); name != "" {
		for _, f := range faults {
			if f.name == name {
				runFault(t, f)
				return
			}
		}
		t.Skipf("not a fault: %s", name)
	}
	if testing.Short() {
		t.Skip("runs the kit in child processes")
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			out := runChild(t, f.name, "^TestKitCatchesFaults$/"+f.pattern)
			require.Contains(t, out, "--- FAIL: TestKitCatchesFaults/"+f.want+" ", "the kit must fail the case for %s; output:\n%s", f.name, out)
		})
	}
}

func runFault(t *testing.T, f fault) {
	newBackend := func(t *testing.T) asyncreq.Backend {
		m := memory.New(nil)
		t.Cleanup(func() { _ = m.Close() })
		return f.make(m)
	}
	switch f.kit {
	case "store":
		TestStore(t, func(t *testing.T) asyncreq.Store { return newBackend(t) }, nil)
	case "queue":
		TestQueue(t, func(t *testing.T) asyncreq.Queue { return newBackend(t) }, nil)
	case "completer":
		testCompleter(t, newBackend, nil)
	case "handler":
		TestHandler(t, newBackend, nil)
	}
}

// TestWatchdog checks, in child processes, that the watchdog fails a case
// that runs too long and cancels its context, and that it stops a case
// stuck in a call that ignores its context.
func TestWatchdog(t *testing.T) {
	cfg := newConfig(t, nil)
	cfg.limit, cfg.grace = 200*time.Millisecond, 300*time.Millisecond
	switch os.Getenv(childEnv) {
	case "":
	case "slow":
		runCase(t, cfg, "Slow", func(t *testing.T, ctx context.Context) {
			<-ctx.Done() // returns once the watchdog cancels
		})
		return
	case "stuck":
		runCase(t, cfg, "Stuck", func(t *testing.T, ctx context.Context) {
			time.Sleep(time.Minute) // ignores ctx
		})
		return
	default:
		t.Skip("another child")
	}
	if testing.Short() {
		t.Skip("runs child processes")
	}

	out := runChild(t, "slow", "^TestWatchdog$")
	require.Contains(t, out, "watchdog: the case did not finish within 200ms", out)
	require.Contains(t, out, "--- FAIL: TestWatchdog/Slow", out)

	out = runChild(t, "stuck", "^TestWatchdog$")
	require.Contains(t, out, "watchdog: the case did not finish within 200ms", out)
	require.Contains(t, out, "TestWatchdog/Stuck hung: a backend call ignores its context", out)
}
