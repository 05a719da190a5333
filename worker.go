package asyncreq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"
)

// WorkerOptions configures a Worker. A nil *WorkerOptions means all
// defaults; a zero field means that field's default.
type WorkerOptions struct {
	// Concurrency is the largest number of requests processed at once.
	// A request's slot is free again when its processor returns; its
	// outcome is then written while the next request runs, with up to
	// 4×Concurrency outcomes being written at once. The default is 10.
	Concurrency int

	// LeaseDuration is how long a Queue lease is taken for. While a request
	// is processed the worker extends its lease every LeaseDuration/3, so a
	// long request keeps its lease and a crashed worker's request is
	// delivered again about LeaseDuration after the last extension. The
	// default is 30s.
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
	// backend errors. The default discards them.
	Logger *slog.Logger

	// MaxResultBytes is the largest Result stored, counting its Body, its
	// ContentType and the names and values of its Header. A larger one
	// fails the request for good, without being stored, with a 500 problem
	// that says the result was too large: the processor made an answer the
	// server will not keep, and another attempt would make the same one.
	// HandlerProcessor stops buffering the wrapped handler's response as
	// soon as its body passes this limit. The default is 10 MiB.
	MaxResultBytes int64
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

// A Worker takes requests from a Queue and runs a Processor on them,
// recording each outcome in the Store.
//
// For every lease it claims the request in the Store (state running, one
// more attempt, a fresh lease token), runs the processor while a heartbeat
// extends the lease and watches for a client's cancel, and records the
// outcome with a write that only succeeds while the record still carries
// its lease token: a worker whose lease ran out and whose request was
// delivered to another worker can never overwrite the newer attempt.
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
// the next heartbeat, when the worker reads the record. The processor's context is then canceled with
// cause ErrCanceled.
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
// or many, may share a Store and Queue.
type Worker struct {
	store Store
	queue Queue
	proc  Processor
	opts  WorkerOptions
	log   *slog.Logger
	batch BatchDequeuer // queue's batch capability, or nil
	// settling bounds the attempts whose outcome is being written after
	// their processing slot was freed (see run).
	settling  chan struct{}
	completer Completer        // the backend's one-step outcome and Ack, or nil
	watcher   Watcher          // store's watch capability, or nil
	lister    UnenqueuedLister // store's listing capability, or nil

	mu         sync.Mutex
	started    bool
	stopped    bool                    // Stop was called
	stopFetch  context.CancelFunc      // ends fetching, purging and sweeping
	cancelWork context.CancelCauseFunc // cancels running processors with ErrShutdown
	done       chan struct{}           // closed when every goroutine has returned
}

// NewWorker returns a Worker that takes request ids from queue, the records
// from store, and runs p on them. A nil opts means all defaults. It returns
// an error naming the field when an option is invalid.
func NewWorker(store Store, queue Queue, p Processor, opts *WorkerOptions) (*Worker, error) {
	switch {
	case store == nil:
		return nil, errors.New("asyncreq: NewWorker: nil Store")
	case queue == nil:
		return nil, errors.New("asyncreq: NewWorker: nil Queue")
	case p == nil:
		return nil, errors.New("asyncreq: NewWorker: nil Processor")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Worker{
		store: store,
		queue: queue,
		proc:  p,
		opts:  o,
		log:   o.Logger,
		done:  make(chan struct{}),
	}
	w.settling = make(chan struct{}, o.Concurrency*settlingPerSlot)
	if c, ok := queue.(Completer); ok && sameValue(store, queue) {
		w.completer = c
	}
	w.batch, _ = queue.(BatchDequeuer)
	w.watcher, _ = store.(Watcher)
	w.lister, _ = store.(UnenqueuedLister)
	return w, nil
}

// Start starts fetching and processing requests, and the periodic purge
// and sweep, in goroutines of their own, and returns at once. It returns an
// error if the worker was already started or stopped.
//
// The worker runs until Stop is called or ctx ends. Ending ctx is an
// immediate stop: fetching ends and running processors are canceled with
// cause ErrShutdown, their requests handed back; prefer Stop, which lets
// running work finish first. Values of ctx are visible to the processors.
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
	stopAfter := context.AfterFunc(ctx, func() { cancelWork(ErrShutdown) })
	w.stopFetch, w.cancelWork = stopFetch, cancelWork

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
		stopAfter()
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

// fetch takes leases from the Queue while there is capacity, and starts a
// goroutine per lease, registered in wg. It returns when fetchCtx ends or
// the Queue is closed.
func (w *Worker) fetch(fetchCtx, workCtx context.Context, wg *sync.WaitGroup) {
	slots := make(chan struct{}, w.opts.Concurrency)
	pause := time.Duration(0)
	for {
		// Wait for one free slot, then take every other free one.
		select {
		case slots <- struct{}{}:
		case <-fetchCtx.Done():
			return
		}
		n := 1
	more:
		for n < w.opts.Concurrency {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}

		leases, err := w.dequeue(fetchCtx, n)
		got := 0
		for _, l := range leases {
			switch {
			case l == nil:
				continue
			case got == n:
				// More than asked for: not ours to run now.
				w.nack(context.WithoutCancel(fetchCtx), &job{lease: l, log: w.log.With("id", l.ID)}, 0)
				continue
			}
			got++
			wg.Go(func() {
				var once sync.Once
				free := func() { once.Do(func() { <-slots }) }
				defer free()
				w.run(workCtx, l, free)
			})
		}
		for range n - got {
			<-slots
		}

		switch {
		case err == nil && got > 0:
			pause = 0
			continue
		case err == nil:
			err = errors.New("asyncreq: queue returned no lease and no error")
		case fetchCtx.Err() != nil:
			return
		case errors.Is(err, ErrClosed):
			w.log.Error("asyncreq: queue closed; worker stops fetching", "err", err)
			return
		}
		pause = min(max(2*pause, workerFetchBackoffMin), workerFetchBackoffMax)
		wait := pause/2 + rand.N(pause/2+1)
		w.log.Error("asyncreq: dequeue", "err", err, "retry_in", wait)
		if !sleepCtx(fetchCtx, wait) {
			return
		}
	}
}

// dequeue takes up to n leases, in one call when the Queue can batch.
func (w *Worker) dequeue(ctx context.Context, n int) ([]*Lease, error) {
	if n > 1 && w.batch != nil {
		return w.batch.DequeueBatch(ctx, n, w.opts.LeaseDuration)
	}
	l, err := w.queue.Dequeue(ctx, w.opts.LeaseDuration)
	if err != nil {
		return nil, err
	}
	return []*Lease{l}, nil
}

// sleepCtx waits for d, or returns false when ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// every calls f every interval until ctx ends.
func (w *Worker) every(ctx context.Context, interval time.Duration, f func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// purge deletes expired final records, batch after batch.
func (w *Worker) purge(ctx context.Context) {
	for {
		n, err := w.store.Purge(ctx, time.Now(), w.opts.PurgeBatch)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Error("asyncreq: purge", "err", err)
			}
			return
		}
		if n > 0 {
			w.log.Debug("asyncreq: purged expired records", "count", n)
		}
		if n < w.opts.PurgeBatch {
			return
		}
	}
}

// sweep enqueues the records that were stored but never reached the Queue.
//
// It enqueues only a record that is still pending and unmarked when it
// gets to it: one listed unmarked may have been claimed since from a queue
// entry it had after all (an accept that enqueued it but failed to mark
// it), and another entry would be delivered to a second worker, which
// would take the request from the attempt running it. The mark follows
// the Enqueue, so that a sweep interrupted in between leaves the record
// listed for the next one rather than marked and never enqueued.
func (w *Worker) sweep(ctx context.Context) {
	for {
		ids, err := w.lister.ListUnenqueued(ctx, time.Now().Add(-w.opts.SweepAge), workerSweepBatch)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Error("asyncreq: list unenqueued", "err", err)
			}
			return
		}
		for _, id := range ids {
			if !w.sweepOne(ctx, id) {
				return
			}
		}
		if len(ids) < workerSweepBatch {
			return
		}
	}
}

// errSwept stops the sweep's mark of a record that needs none.
var errSwept = errors.New("asyncreq: record needs no sweep")

// sweepOne enqueues and marks the listed record id if it is still pending
// and unmarked. It returns false when the sweep should stop.
func (w *Worker) sweepOne(ctx context.Context, id string) bool {
	rec, err := checkRecord(w.store.Get(ctx, id))
	switch {
	case isMissing(err):
		return true // deleted since it was listed
	case err != nil:
		if ctx.Err() == nil {
			w.log.Error("asyncreq: sweep read record", "id", id, "err", err)
		}
		return false
	case !rec.needsEnqueue():
		return true
	}
	if err := w.queue.Enqueue(ctx, id, 0); err != nil {
		if ctx.Err() == nil {
			w.log.Error("asyncreq: sweep enqueue", "id", id, "err", err)
		}
		return false
	}
	_, err = w.store.Update(ctx, id, func(rec *Record) error {
		if !rec.needsEnqueue() {
			return errSwept // a worker claimed it already, or it was canceled
		}
		return rec.MarkEnqueued()
	})
	switch {
	case err == nil, errors.Is(err, errSwept):
	case isMissing(err):
		// Deleted since; the worker that gets the entry acks it.
	default:
		// It is listed and enqueued again next time, which a worker
		// handles like any redelivery.
		if ctx.Err() == nil {
			w.log.Error("asyncreq: sweep mark enqueued", "id", id, "err", err)
		}
		return false
	}
	w.log.Info("asyncreq: enqueued a request that had not reached the queue", "id", id)
	return true
}

// errClaimSettled is the outcome of a claim that settled the record
// instead of running it (see Record.Claim).
var errClaimSettled = errors.New("asyncreq: record settled at claim")

// job is one lease being worked on.
type job struct {
	lease *Lease
	token string
	log   *slog.Logger
}

// run works on one lease: claim, process, record the outcome, settle the
// lease. ctx is canceled with cause ErrShutdown when the worker stops.
//
// free gives the lease's processing slot back. run calls it once the
// processor has returned, before the outcome is written: a slot bounds the
// processors running at once, and the fetcher can take the next lease
// while this one's outcome joins the other outcomes being written (a
// backend that batches writes gets larger batches). The writes still
// pending are bounded by the settling semaphore.
func (w *Worker) run(ctx context.Context, l *Lease, free func()) {
	j := &job{lease: l, token: newToken(), log: w.log.With("id", l.ID, "delivery", l.Delivery)}
	settle := func(f func(ctx context.Context)) {
		sctx, cancel := w.settleContext(ctx)
		defer cancel()
		f(sctx)
	}
	nack := func(delay time.Duration) { settle(func(sctx context.Context) { w.nack(sctx, j, delay) }) }
	ack := func() { settle(func(sctx context.Context) { w.ack(sctx, j) }) }
	if ctx.Err() != nil {
		nack(0)
		return
	}

	rec, err := w.claim(ctx, j)
	switch {
	case err == nil:
	case errors.Is(err, ErrFinished), isMissing(err):
		// Delivered again after its outcome was recorded, or deleted.
		j.log.Debug("asyncreq: skipping a request that is finished or gone", "err", err)
		ack()
		return
	case errors.Is(err, errClaimSettled):
		ack()
		return
	case ctx.Err() != nil:
		nack(0)
		return
	default:
		delay := w.backoff(max(l.Delivery, 1))
		j.log.Error("asyncreq: claim", "err", err, "retry_in", delay)
		nack(delay)
		return
	}
	j.log = j.log.With("attempt", rec.Attempts)

	a := w.process(ctx, j, rec)
	w.settling <- struct{}{}
	defer func() { <-w.settling }()
	free()
	settle(func(sctx context.Context) { w.finish(sctx, j, rec, a) })
}

// settleContext returns the context of the writes that record an attempt's
// outcome and settle its lease. They must happen even when the worker is
// stopping and ctx is canceled, but not hold Stop forever when the backend
// hangs: they get LeaseDuration, after which the lease runs out anyway and
// the request is delivered again.
func (w *Worker) settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), w.opts.LeaseDuration)
}

// claim marks the record running under j's token (see Record.Claim). A
// final record gives ErrFinished; a record Claim settled instead (its
// cancel was requested, or it used up its attempts in earlier crashed
// runs) gives errClaimSettled.
func (w *Worker) claim(ctx context.Context, j *job) (*Record, error) {
	now := time.Now()
	rec, err := checkRecord(w.store.Update(ctx, j.lease.ID, func(rec *Record) error {
		return rec.Claim(j.token, w.opts.MaxAttempts, now)
	}))
	if err != nil {
		return nil, err
	}
	switch rec.State {
	case StateRunning:
		return rec, nil
	case StateCanceled:
		j.log.Info("asyncreq: request canceled before it ran")
	default:
		j.log.Error("asyncreq: request failed: attempts used up without an outcome (the processor may crash its worker)", "attempts", rec.Attempts)
	}
	return nil, errClaimSettled
}

// attempt is what one Process call came to.
type attempt struct {
	res   *Result
	err   error
	cause error // why the processor's context ended, or nil
}

// process runs the processor on rec with a heartbeat, a progress reporter
// and the timeout.
func (w *Worker) process(ctx context.Context, j *job, rec *Record) attempt {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if w.opts.Timeout > 0 {
		var cancelTimeout context.CancelFunc
		pctx, cancelTimeout = context.WithTimeoutCause(pctx, w.opts.Timeout, ErrTimeout)
		defer cancelTimeout()
	}
	pctx = WithProgress(pctx, func(ctx context.Context, p Progress) error {
		err := w.progress(ctx, j, p)
		if errors.Is(err, ErrLeaseLost) {
			cancel(ErrLeaseLost)
		}
		return err
	})

	// The heartbeat outlives a shutdown cancel: the lease must hold until
	// the request is handed back.
	hctx, stopHeartbeat := context.WithCancel(context.WithoutCancel(ctx))
	beatDone := make(chan struct{})
	go func() {
		defer close(beatDone)
		w.heartbeat(hctx, j, cancel)
	}()
	defer func() {
		stopHeartbeat()
		<-beatDone
	}()

	req := &Request{
		ID:          rec.ID,
		Method:      rec.Method,
		URL:         rec.URL,
		Header:      rec.Header,
		ContentType: rec.ContentType,
		Body:        rec.Body,
		Owner:       rec.Owner,
		Attempt:     rec.Attempts,
		CreatedAt:   rec.CreatedAt,
	}
	var a attempt
	a.res, a.err = w.call(pctx, j, req)
	if pctx.Err() != nil {
		a.cause = context.Cause(pctx)
	}
	return a
}

// panicError is a processor's panic, as a failed attempt.
type panicError struct{ value any }

func (e *panicError) Error() string { return fmt.Sprintf("asyncreq: processor panicked: %v", e.value) }

// call calls the processor, turning a panic into an error. The context
// tells HandlerProcessor the result limit.
func (w *Worker) call(ctx context.Context, j *job, req *Request) (res *Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			j.log.Error("asyncreq: processor panicked", "panic", v, "stack", string(debug.Stack()))
			res, err = nil, &panicError{value: v}
		}
	}()
	return w.proc.Process(withResultLimit(ctx, w.opts.MaxResultBytes), req)
}

// progress records p on the record, if j still holds it.
func (w *Worker) progress(ctx context.Context, j *job, p Progress) error {
	now := time.Now()
	_, err := w.store.Update(ctx, j.lease.ID, func(rec *Record) error {
		return rec.SetProgress(j.token, p, now)
	})
	return err
}

// heartbeat extends j's lease every LeaseDuration/3 until ctx ends, and
// cancels the processor with cause ErrCanceled when the client cancels the
// request, or with ErrLeaseLost when the lease or the record's lease token
// is lost. It reads the record at every beat; when the Store is a Watcher
// it also watches the record and reads it at each change the watch
// reports. A watch is only a hint: a Watcher may miss changes made by
// other processes (see Watcher), and the beat's read catches those.
func (w *Worker) heartbeat(ctx context.Context, j *job, cancel context.CancelCauseFunc) {
	t := time.NewTicker(max(w.opts.LeaseDuration/3, time.Millisecond))
	defer t.Stop()
	var changed <-chan struct{}
	checking := true // false once nothing more can happen to watch for
	rewatch := w.watcher != nil
	// Each watch is released when it is replaced: a long request that
	// reports progress often would otherwise hold one per change.
	stopWatch := func() {}
	defer func() { stopWatch() }()
	for {
		if rewatch {
			rewatch = false
			stopWatch()
			stopWatch = func() {}
			ch, stop, err := watch(ctx, w.watcher, j.lease.ID)
			switch {
			case err == nil:
				changed, stopWatch = ch, stop
			case ctx.Err() != nil:
				return
			default:
				// Poll at every beat instead, and try to watch again then.
				j.log.Warn("asyncreq: watch", "err", err)
				changed = nil
			}
			// A change between the claim (or the last change) and the
			// watch would be missed without this read.
			if !w.check(ctx, j, cancel) {
				checking = false
				changed = nil
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
			rewatch = true
		case <-t.C:
			err := w.queue.Extend(ctx, j.lease, w.opts.LeaseDuration)
			switch {
			case err == nil:
			case ctx.Err() != nil:
				return
			case errors.Is(err, ErrLeaseLost):
				// The request may be delivered to another worker already;
				// this attempt's outcome would be fenced off.
				j.log.Warn("asyncreq: lease lost; canceling the processor")
				cancel(ErrLeaseLost)
				return
			default:
				j.log.Warn("asyncreq: extend lease", "err", err)
			}
			if checking {
				if w.watcher != nil && changed == nil {
					rewatch = true // watches again, then reads
				} else if !w.check(ctx, j, cancel) {
					checking = false
					changed = nil
				}
			}
		}
	}
}

// check reads j's record and cancels the processor if the client canceled
// the request or the record no longer carries j's token. It returns false
// once there is nothing more to watch for.
func (w *Worker) check(ctx context.Context, j *job, cancel context.CancelCauseFunc) bool {
	rec, err := checkRecord(w.store.Get(ctx, j.lease.ID))
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return false
	case isMissing(err):
		j.log.Warn("asyncreq: record vanished while running; canceling the processor")
		cancel(ErrLeaseLost)
		return false
	default:
		j.log.Warn("asyncreq: read record", "err", err)
		return true
	}
	switch {
	case !rec.heldBy(j.token):
		j.log.Warn("asyncreq: request taken over by a newer attempt; canceling the processor")
		cancel(ErrLeaseLost)
		return false
	case rec.CancelRequested:
		j.log.Info("asyncreq: cancel requested; canceling the processor")
		cancel(ErrCanceled)
		return false
	}
	return true
}

// finish records the outcome of an attempt and settles the lease. ctx is
// not canceled by a shutdown (see settleContext).
func (w *Worker) finish(ctx context.Context, j *job, rec *Record, a attempt) {
	now := time.Now()
	res, err, cause := a.res, a.err, a.cause
	if err == nil {
		if res == nil {
			res = &Result{}
		}
		if n := resultSize(res); n > w.opts.MaxResultBytes {
			err = fmt.Errorf("%w: %d bytes, more than MaxResultBytes (%d)", ErrResultTooLarge, n, w.opts.MaxResultBytes)
			j.log.Error("asyncreq: request failed: result too large", "err", err)
			p := tooLargeProblem(w.opts.MaxResultBytes)
			w.record(ctx, j, "failed", 0, func(rec *Record) error { return rec.Fail(j.token, p, now) })
			return
		}
		w.record(ctx, j, "succeeded", 0, func(rec *Record) error { return rec.Succeed(j.token, res, now) })
		return
	}

	if p := permanentProblem(err); p != nil {
		j.log.Info("asyncreq: request failed permanently", "status", p.Status, "err", err)
		w.record(ctx, j, "failed", 0, func(rec *Record) error { return rec.Fail(j.token, p, now) })
		return
	}

	var detail string
	switch {
	case errors.Is(cause, ErrLeaseLost):
		// Another attempt owns the request now, or will.
		j.log.Warn("asyncreq: attempt abandoned: lease lost", "err", err)
		w.releaseIfSuperseded(ctx, j)
		return
	case errors.Is(cause, ErrShutdown):
		j.log.Info("asyncreq: handing the request back at shutdown", "err", err)
		w.record(ctx, j, "handed back", 0, func(rec *Record) error { return rec.HandBack(j.token, now) })
		return
	case errors.Is(cause, ErrCanceled):
		j.log.Info("asyncreq: request canceled while running", "err", err)
		w.record(ctx, j, "canceled", 0, func(rec *Record) error { return rec.Cancel(j.token, now) })
		return
	case errors.Is(cause, ErrTimeout):
		detail = "processing timed out"
	default:
		detail = "processing failed"
	}

	if rec.Attempts >= w.opts.MaxAttempts {
		j.log.Error("asyncreq: request failed: attempts used up", "err", err, "attempts", rec.Attempts)
		p := failedProblem(detail)
		w.record(ctx, j, "failed", 0, func(rec *Record) error { return rec.Fail(j.token, p, now) })
		return
	}
	delay := w.backoff(rec.Attempts)
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		delay = max(ra.Delay, 0)
	}
	j.log.Warn("asyncreq: attempt failed; retrying", "err", err, "retry_in", delay)
	p := failedProblem(fmt.Sprintf("attempt %d of %d failed: %s; retrying", rec.Attempts, w.opts.MaxAttempts, detail))
	w.record(ctx, j, "retry", delay, func(rec *Record) error { return rec.Retry(j.token, p, now) })
}

// record writes an outcome with the transition fn, which refuses with
// ErrLeaseLost when j no longer holds the record, then settles the lease:
// Ack when the record became final, Nack after delay when it went back to
// pending. With a Completer the write and the Ack are one step.
func (w *Worker) record(ctx context.Context, j *job, what string, delay time.Duration, fn func(*Record) error) {
	var final bool
	write := func(rec *Record) error {
		if err := fn(rec); err != nil {
			return err
		}
		final = rec.State.Final()
		return nil
	}
	var err error
	if w.completer != nil {
		_, err = w.completer.Complete(ctx, j.lease, write)
	} else {
		_, err = w.store.Update(ctx, j.lease.ID, write)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrLeaseLost), isMissing(err):
		j.log.Warn("asyncreq: outcome not recorded: the request is no longer this attempt's", "outcome", what, "err", err)
		w.release(ctx, j)
		return
	default:
		// The outcome is lost with this attempt; leave the lease to run
		// out, so that the request is delivered again.
		j.log.Error("asyncreq: record outcome", "outcome", what, "err", err)
		return
	}
	switch {
	case !final:
		w.nack(ctx, j, delay)
	case w.completer == nil:
		w.ack(ctx, j)
	}
}

// ack acks j's lease, logging a failure: the record already says what
// happened, and a redelivery is acked at claim.
func (w *Worker) ack(ctx context.Context, j *job) {
	if err := w.queue.Ack(ctx, j.lease); err != nil {
		j.log.Warn("asyncreq: ack", "err", err)
	}
}

// release settles the lease of an attempt whose record was taken over by
// a newer attempt, made final, or deleted. Its lease may be a second queue
// entry of the same id (a sweep or an at-least-once queue can deliver one
// id twice): left to run out, it would be delivered again and its claim
// would take the request away from the attempt running it, again and
// again until the attempts are used up. Ack removes it. When the lease is
// instead the one the newer attempt holds (it ran out and was delivered
// again), the stale handle is refused with ErrLeaseLost and nothing
// changes.
func (w *Worker) release(ctx context.Context, j *job) {
	if err := w.queue.Ack(ctx, j.lease); err != nil && !errors.Is(err, ErrLeaseLost) {
		j.log.Warn("asyncreq: ack of a superseded lease", "err", err)
	}
}

// releaseIfSuperseded releases j's lease (see release) once the Store
// confirms that the record is no longer j's. While the record still
// carries j's token, the lease was lost in the Queue only (an Extend
// failed): the request is delivered again, and the lease is left alone,
// for an Ack of it must never drop the request's only entry.
func (w *Worker) releaseIfSuperseded(ctx context.Context, j *job) {
	rec, err := w.store.Get(ctx, j.lease.ID)
	switch {
	case err == nil && rec != nil && rec.heldBy(j.token):
		return
	case err != nil && !isMissing(err):
		j.log.Warn("asyncreq: read record of an abandoned attempt; leaving its lease to run out", "err", err)
		return
	}
	w.release(ctx, j)
}

// nack hands j's lease back for delivery after delay, logging a failure:
// the lease then runs out and the request is delivered again anyway.
func (w *Worker) nack(ctx context.Context, j *job, delay time.Duration) {
	if err := w.queue.Nack(ctx, j.lease, delay); err != nil {
		j.log.Warn("asyncreq: nack", "err", err)
	}
}

// backoff returns the wait after the n-th failed attempt: uniform in
// [BackoffMin, min(BackoffMax, BackoffMin·2^n)].
func (w *Worker) backoff(n int) time.Duration {
	lo, hi := w.opts.BackoffMin, w.opts.BackoffMax
	ceil := lo
	for i := 0; i < n && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	if ceil <= lo {
		return lo
	}
	return lo + rand.N(ceil-lo+1)
}
