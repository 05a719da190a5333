package asyncreq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// This file is the Worker's face: its options, NewWorker, Start and Stop.
// What it does between them is in the files named after each duty:
// fetch.go (taking leases), attempt.go (claiming and running one),
// leasekeeper.go (extending its lease), settle.go (recording the outcome
// and settling the lease) and maintenance.go (purge and sweep).

// WorkerOptions configures a Worker. A nil *WorkerOptions means all
// defaults; a zero field means that field's default.
type WorkerOptions struct {
	// Concurrency is the largest number of requests processed at once.
	// A request's slot is free again when its processor returns; its
	// outcome is then written while the next request runs, with up to
	// 4×Concurrency outcomes being written at once. The default is 10.
	Concurrency int

	// LeaseDuration is how long a Queue lease is taken for. From the
	// dequeue until the outcome is written and the lease settled, the
	// worker extends the lease every LeaseDuration/3, so a long request (or
	// a slow write of its outcome) keeps its lease, and a crashed worker's
	// request is delivered again about LeaseDuration after the last
	// extension. The default is 30s.
	LeaseDuration time.Duration

	// MaxAttempts is the number of attempts a request gets before a
	// retryable failure becomes final. The default is 5.
	MaxAttempts int

	// BackoffMin and BackoffMax bound the wait before a failed attempt is
	// retried. After the n-th failed attempt the wait is drawn uniformly
	// from [BackoffMin, min(BackoffMax, BackoffMin·2^n)] (exponential
	// backoff with jitter). An error made with RetryAfter sets the wait
	// itself. The defaults are 1s and 5m (or BackoffMin, if that is
	// larger).
	BackoffMin, BackoffMax time.Duration

	// Timeout bounds each attempt. When it passes, the processor's context
	// is canceled with cause ErrTimeout, and the attempt counts as failed.
	// The default is 0: no timeout.
	Timeout time.Duration

	// PurgeInterval is how often the worker asks the Store to purge
	// expired final records. A negative value disables purging. The
	// default is 1m.
	PurgeInterval time.Duration

	// PurgeBatch is the limit passed to each Store.Purge call; the worker
	// calls Purge again while full batches come back. The default is 1000.
	PurgeBatch int

	// SweepInterval is how often the worker looks for records that were
	// stored but never reached the Queue, when the Store implements
	// UnenqueuedLister. A negative value disables the sweep. The default
	// is 30s.
	SweepInterval time.Duration

	// SweepAge is how old an unenqueued record must be before the sweep
	// enqueues it; younger ones may still be on their way through the
	// handler. The default is 1m.
	SweepAge time.Duration

	// Logger receives the worker's logs: failed attempts (with the error
	// text that is kept from clients), panics with their stacks, and
	// backend errors. Every finished attempt is logged, at Info, or at
	// Debug when it succeeded. The default discards them.
	Logger *slog.Logger

	// MaxResultBytes is the largest Result stored, counting its Body, its
	// ContentType and the names and values of its Header. A larger one
	// fails the request for good, without being stored, with a 500 problem
	// that says the result was too large: the processor made an answer the
	// server will not keep, and another attempt would make the same one.
	// HandlerProcessor stops buffering the wrapped handler's response as
	// soon as its body passes this limit. The default is 10 MiB.
	MaxResultBytes int64

	// Hooks, if set, are told about claims, attempts, purges and sweeps
	// (see Hooks). The default is none.
	Hooks *Hooks

	// StopTimeout bounds the graceful stop that the end of Start's context
	// begins (a signal.NotifyContext, say): fetching stops at once, and the
	// running requests get StopTimeout to finish; then their processors
	// are canceled with cause ErrShutdown and their requests handed back
	// without spending an attempt, as when Stop's context ends. A Stop
	// called meanwhile still waits only as long as its own context lasts.
	// A negative value cancels the running processors at once. The
	// default is 20s, which leaves a process that is sent SIGTERM and
	// killed 30s later (a container platform's usual grace) the time to
	// hand its requests back.
	StopTimeout time.Duration

	// Webhooks configures the delivery of the completion callbacks that
	// submits ask for (see HandlerOptions.Callbacks). A Worker without it
	// marks every callback failed without sending it. The default is nil.
	Webhooks *WebhookOptions
}

// The defaults of WorkerOptions.
const (
	defaultWorkerConcurrency   = 10
	defaultWorkerLease         = 30 * time.Second
	defaultWorkerMaxAttempts   = 5
	defaultWorkerBackoffMin    = time.Second
	defaultWorkerBackoffMax    = 5 * time.Minute
	defaultWorkerPurgeInterval = time.Minute
	defaultWorkerPurgeBatch    = 1000
	defaultWorkerSweepInterval = 30 * time.Second
	defaultWorkerSweepAge      = time.Minute
	defaultWorkerStopTimeout   = 20 * time.Second

	defaultWorkerMaxResultBytes = 10 << 20

	// workerSweepBatch is how many unenqueued ids one ListUnenqueued call
	// asks for.
	workerSweepBatch = 1000
	// settlingPerSlot is how many outcomes per processing slot may be
	// waiting to be written at once.
	settlingPerSlot = 4
	// workerFetchBackoffMin and workerFetchBackoffMax bound the pause
	// after a failed Dequeue.
	workerFetchBackoffMin = 50 * time.Millisecond
	workerFetchBackoffMax = 5 * time.Second
)

// withDefaults returns a copy of o with defaults applied, or an error naming
// the first invalid field.
func (o *WorkerOptions) withDefaults() (WorkerOptions, error) {
	var c WorkerOptions
	if o != nil {
		c = *o
	}
	nonNegative := func(name string, d time.Duration) error {
		if d < 0 {
			return fmt.Errorf("asyncreq: WorkerOptions.%s must not be negative, got %s", name, d)
		}
		return nil
	}
	switch {
	case c.Concurrency < 0:
		return c, fmt.Errorf("asyncreq: WorkerOptions.Concurrency must not be negative, got %d", c.Concurrency)
	case c.Concurrency == 0:
		c.Concurrency = defaultWorkerConcurrency
	}
	switch {
	case c.MaxAttempts < 0:
		return c, fmt.Errorf("asyncreq: WorkerOptions.MaxAttempts must not be negative, got %d", c.MaxAttempts)
	case c.MaxAttempts == 0:
		c.MaxAttempts = defaultWorkerMaxAttempts
	}
	switch {
	case c.MaxResultBytes < 0:
		return c, fmt.Errorf("asyncreq: WorkerOptions.MaxResultBytes must not be negative, got %d", c.MaxResultBytes)
	case c.MaxResultBytes == 0:
		c.MaxResultBytes = defaultWorkerMaxResultBytes
	}
	switch {
	case c.PurgeBatch < 0:
		return c, fmt.Errorf("asyncreq: WorkerOptions.PurgeBatch must not be negative, got %d", c.PurgeBatch)
	case c.PurgeBatch == 0:
		c.PurgeBatch = defaultWorkerPurgeBatch
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"LeaseDuration", c.LeaseDuration},
		{"BackoffMin", c.BackoffMin},
		{"BackoffMax", c.BackoffMax},
		{"Timeout", c.Timeout},
		{"SweepAge", c.SweepAge},
	} {
		if err := nonNegative(f.name, f.d); err != nil {
			return c, err
		}
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = defaultWorkerLease
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = defaultWorkerBackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = max(defaultWorkerBackoffMax, c.BackoffMin)
	}
	if c.BackoffMax < c.BackoffMin {
		return c, fmt.Errorf("asyncreq: WorkerOptions.BackoffMax (%s) must not be less than BackoffMin (%s)", c.BackoffMax, c.BackoffMin)
	}
	if c.PurgeInterval == 0 {
		c.PurgeInterval = defaultWorkerPurgeInterval
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = defaultWorkerSweepInterval
	}
	if c.SweepAge == 0 {
		c.SweepAge = defaultWorkerSweepAge
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = defaultWorkerStopTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Errors of Worker.Start.
var (
	errWorkerStarted = errors.New("asyncreq: worker already started")
	errWorkerStopped = errors.New("asyncreq: worker stopped")
)

// A Worker takes requests from a Backend's Queue and runs a Processor on
// them, recording each outcome in its Store.
//
// For every lease it claims the request in the Store (state running, one
// more attempt, a fresh lease token), runs the processor while a heartbeat
// watches for a client's cancel, and records the outcome with a write
// that only succeeds while the record still carries its lease token: a
// worker whose lease ran out and whose request was delivered to another
// worker can never overwrite the newer attempt. The lease is extended
// every LeaseDuration/3 from the dequeue until the attempt has settled it
// (acked or nacked it after the outcome's write, or delivered the
// callback): a slow claim or outcome write does not lose it.
//
// Outcomes:
//
//   - success: the record becomes succeeded with the Result (a nil *Result
//     is stored as an empty 200 answer) and expires after its Retention;
//     the lease is acked;
//   - a Result larger than MaxResultBytes: the record becomes failed with
//     a 500 problem that says so, and the result is not stored; acked;
//   - an error made with Permanent (also wrapped), or a *Problem returned
//     as it is: the record becomes failed with that problem (500 when it
//     names no status); acked. A *Problem wrapped in another error is
//     another service's answer and counts as any other error;
//   - any other error, a panic, or a timeout: while attempts remain the
//     record goes back to pending and the lease is nacked with a backoff
//     (or the delay of an error made with RetryAfter); after the last
//     attempt the record fails with a 500 problem that does not show the
//     error's text, which is logged instead;
//   - a client's cancel: the record becomes canceled; acked;
//   - shutdown (Stop's context ended first): the record goes back to
//     pending without spending the attempt, and the lease is nacked for
//     immediate delivery;
//   - lease lost (an Extend failed with ErrLeaseLost, or another worker
//     claimed the request): the processor's context is canceled with cause
//     ErrLeaseLost; a success or permanent failure it still returns is
//     recorded only if no newer attempt has claimed the request meanwhile.
//     An attempt that no longer owns its record acks its lease, which
//     removes a duplicate queue entry of the request and is refused,
//     harmlessly, when the lease ran out and went to the newer attempt.
//
// A result returned after the processor's context ended still counts as a
// success. A request delivered with every attempt already started but
// none recorded (its processor keeps crashing the process) fails with 500
// at the claim, without running again.
//
// A client's cancel (Record.CancelRequested) is noticed at once when the
// Store implements Watcher and its watch sees the change, and otherwise at
// the next heartbeat, when the worker reads the record. The processor's
// context is then canceled with cause ErrCanceled. The heartbeat, and with
// it the watch, starts 50ms after the processor (a third of LeaseDuration
// when that is shorter), with a read of the record that notices a cancel
// made before: a request that is over sooner costs no watch and no read.
//
// The worker takes leases only while it has free capacity (Concurrency),
// several at a time when the Queue implements BatchDequeuer. Every
// PurgeInterval it purges expired records from the Store, and when the
// Store implements UnenqueuedLister, every SweepInterval it enqueues the
// records older than SweepAge that never reached the Queue. Errors of the
// Store and Queue are logged, and failed Dequeue calls are retried with a
// growing pause of up to 5s.
//
// A Worker is started once with Start and stopped once with Stop; its
// methods may be called from any goroutine. Several workers, in one process
// or many, may share a Backend.
type Worker struct {
	store Store // the Backend
	queue Queue // the Backend
	proc  Processor
	opts  WorkerOptions
	log   *slog.Logger
	batch BatchDequeuer // the Backend's batch capability, or nil
	// claimer is the Backend's lease and claim in one step, or nil.
	claimer Claimer
	// settling bounds the attempts whose outcome is being written after
	// their processing slot was freed (see run).
	settling  chan struct{}
	completer Completer        // the Backend's one-step outcome and Ack, or nil
	watcher   Watcher          // the Backend's watch capability, or nil
	lister    UnenqueuedLister // the Backend's listing capability, or nil
	hooks     *webhooks        // the delivery of callbacks, or nil

	mu         sync.Mutex
	started    bool
	stopped    bool                    // Stop was called
	stopFetch  context.CancelFunc      // ends fetching, purging and sweeping
	cancelWork context.CancelCauseFunc // cancels running processors with ErrShutdown
	done       chan struct{}           // closed when every goroutine has returned
}

// NewWorker returns a Worker that takes request ids from b's Queue, their
// records from b's Store, and runs p on them. When b implements Completer
// (and is not made by Pair), an outcome is recorded and its lease settled
// in one step; when it implements Claimer (and is not made by Pair),
// leases are taken and their records claimed in one step. A nil opts means
// all defaults. NewWorker returns an error naming the field when an option
// is invalid, and one naming what is missing when b, a part of a Pair, or
// p is nil.
func NewWorker(b Backend, p Processor, opts *WorkerOptions) (*Worker, error) {
	if err := checkBackend("NewWorker", b); err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("asyncreq: NewWorker: nil Processor")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Worker{
		store: b,
		queue: b,
		proc:  p,
		opts:  o,
		log:   o.Logger,
		done:  make(chan struct{}),
	}
	if o.Webhooks != nil {
		if w.hooks, err = newWebhooks(o.Webhooks); err != nil {
			return nil, err
		}
		if w.hooks.opts.Timeout >= o.LeaseDuration {
			// A delivery holds the request's lease, extended once before it.
			return nil, fmt.Errorf("asyncreq: WebhookOptions.Timeout (%s) must be shorter than WorkerOptions.LeaseDuration (%s)", w.hooks.opts.Timeout, o.LeaseDuration)
		}
	}
	w.settling = make(chan struct{}, o.Concurrency*settlingPerSlot)
	if _, _, isPair := split(b); !isPair {
		w.completer, _ = b.(Completer)
		w.claimer, _ = b.(Claimer)
	}
	w.batch, _ = b.(BatchDequeuer)
	w.watcher, _ = b.(Watcher)
	w.lister, _ = b.(UnenqueuedLister)
	return w, nil
}

// Start starts fetching and processing requests, and the periodic purge
// and sweep, in goroutines of their own, and returns at once. It returns an
// error if the worker was already started or stopped.
//
// The worker runs until Stop is called or ctx ends. The end of ctx is a
// graceful stop, as Stop is: fetching ends at once, and the running
// requests get WorkerOptions.StopTimeout to finish before their
// processors are canceled with cause ErrShutdown and their requests
// handed back. So a worker started with a signal.NotifyContext finishes
// or hands back its work on SIGTERM; call Stop after it to wait for that
// (within Stop's own context). Values of ctx are visible to the
// processors; its end is not (they get a context of their own).
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.stopped:
		return errWorkerStopped
	case w.started:
		return errWorkerStarted
	}
	w.started = true

	fetchCtx, stopFetch := context.WithCancel(ctx)
	workCtx, cancelWork := context.WithCancelCause(context.WithoutCancel(ctx))
	w.stopFetch, w.cancelWork = stopFetch, cancelWork

	// The end of ctx stops fetching (fetchCtx ends with it) and gives the
	// running requests StopTimeout before they are canceled.
	var (
		graceMu  sync.Mutex
		grace    *time.Timer
		finished bool
	)
	stopAfter := context.AfterFunc(ctx, func() {
		if w.opts.StopTimeout < 0 {
			cancelWork(ErrShutdown)
			return
		}
		graceMu.Lock()
		defer graceMu.Unlock()
		if !finished {
			grace = time.AfterFunc(w.opts.StopTimeout, func() { cancelWork(ErrShutdown) })
		}
	})

	var wg sync.WaitGroup
	wg.Go(func() { w.fetch(fetchCtx, workCtx, &wg) })
	if w.opts.PurgeInterval > 0 {
		wg.Go(func() { w.every(fetchCtx, w.opts.PurgeInterval, w.purge) })
	}
	if w.lister != nil && w.opts.SweepInterval > 0 {
		wg.Go(func() { w.every(fetchCtx, w.opts.SweepInterval, w.sweep) })
	}
	go func() {
		wg.Wait()
		if w.hooks != nil {
			w.hooks.client.CloseIdleConnections()
		}
		stopAfter()
		graceMu.Lock()
		finished = true
		if grace != nil {
			grace.Stop()
		}
		graceMu.Unlock()
		stopFetch()
		cancelWork(ErrShutdown)
		close(w.done)
	}()
	return nil
}

// Stop stops the worker: it stops fetching, then waits for the running
// requests to finish. If ctx ends first, it cancels the processors' contexts
// with cause ErrShutdown, hands their requests back to the Queue without
// spending an attempt, and returns ctx.Err() once they have returned. A
// Processor must therefore return promptly when its context ends. The
// writes that record outcomes and hand requests back are each bounded by
// LeaseDuration, so that a hung Store or Queue cannot hold Stop forever.
//
// Stop is idempotent and safe to call before Start (the worker can then
// not be started). It returns nil when all work finished in time.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	w.stopped = true
	started := w.started
	w.mu.Unlock()
	if !started {
		return nil
	}
	w.stopFetch()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
	}
	w.cancelWork(ErrShutdown)
	<-w.done
	return ctx.Err()
}
