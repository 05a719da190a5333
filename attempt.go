package asyncreq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// This file is one attempt at a request: claiming the record, running the
// processor with its progress reporter, timeout and panic recovery, and
// the heartbeat that notices a client's cancel.

// job is one lease being worked on.
type job struct {
	lease *Lease
	token string
	// keeper extends lease until the attempt has settled it.
	keeper leaseKeeper
	// base is the worker's logger; log, made from it at the first log
	// line, adds the lease's id, its delivery and the attempt (see logger).
	base    *slog.Logger
	log     atomic.Pointer[slog.Logger]
	attempt int // set at the claim
	// ev and ctx are the attempt as AttemptStarted saw it and the context
	// it returned, for AttemptFinished.
	ev  AttemptEvent
	ctx context.Context
	// callback is set when the record has a completion callback, which
	// is delivered after the outcome is recorded.
	callback bool
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
func (w *Worker) run(ctx context.Context, d delivery, free func()) {
	l := d.lease
	j := &job{lease: l, token: d.token, base: w.log}
	if !d.claimed {
		j.token = newToken()
	}
	settle := func(f func(ctx context.Context)) {
		sctx, cancel := w.settleContext(ctx)
		defer cancel()
		f(sctx)
	}
	nack := func(delay time.Duration) { settle(func(sctx context.Context) { w.nack(sctx, j, delay) }) }
	ack := func() { settle(func(sctx context.Context) { w.ack(sctx, j) }) }
	if ctx.Err() != nil {
		settle(func(sctx context.Context) { w.giveBack(sctx, j, d) })
		return
	}
	var age time.Duration
	if d.claimed {
		age = time.Since(d.start)
	}
	w.keepLease(ctx, j, age)
	defer j.keeper.stop()

	claimStart := d.start
	var rec *Record
	var err error
	if d.claimed {
		rec, err = w.claimOutcome(ctx, j, d.rec, d.err)
	} else {
		claimStart = time.Now()
		rec, err = w.claim(ctx, j)
	}
	switch {
	case err == nil:
	case isMissing(err):
		// Deleted since it was queued.
		j.logger().DebugContext(ctx, "asyncreq: skipping a request that is gone", "err", err)
		ack()
		return
	case errors.Is(err, errDuplicateEntry):
		j.logger().DebugContext(ctx, "asyncreq: dropping a second queue entry of a running request")
		ack()
		return
	case errors.Is(err, ErrFinished), errors.Is(err, errClaimSettled):
		// Delivered again after its outcome was recorded (or settled at
		// the claim): its callback may still be due.
		settle(func(sctx context.Context) { w.settleFinished(sctx, j) })
		return
	case ctx.Err() != nil:
		nack(0)
		return
	default:
		delay := w.backoff(max(l.Delivery, 1))
		j.logger().ErrorContext(ctx, "asyncreq: claim", "err", err, "retry_in", delay)
		nack(delay)
		return
	}
	// Nothing else uses j yet: the heartbeat starts with the processor.
	j.attempt = rec.Attempts
	j.log.Store(nil)
	w.claimed(ctx, j, rec, claimStart)
	j.callback = rec.Callback != nil

	a := w.process(ctx, j, rec)
	w.settling <- struct{}{}
	defer func() { <-w.settling }()
	free()
	settle(func(sctx context.Context) { w.finish(sctx, j, rec, a) })
}

// logger returns j's logger: the worker's, with the lease's id and
// delivery and, once claimed, the attempt. It is made at the first log
// line, since most attempts of a busy worker log none.
func (j *job) logger() *slog.Logger {
	if l := j.log.Load(); l != nil {
		return l
	}
	args := []any{"id", j.lease.ID}
	if j.lease.Delivery > 0 {
		args = append(args, "delivery", j.lease.Delivery)
	}
	if j.attempt > 0 {
		args = append(args, "attempt", j.attempt)
	}
	j.log.CompareAndSwap(nil, j.base.With(args...))
	return j.log.Load()
}

// errClaimSettled is the outcome of a claim that settled the record
// instead of running it (see Record.Claim).
var errClaimSettled = errors.New("asyncreq: record settled at claim")

// errDuplicateEntry is the outcome of a claim of a running record by the
// first delivery of a queue entry. An attempt whose lease ran out is
// taken over by its own entry delivered again (Delivery 2 or more); an
// entry delivered for the first time while the record runs is a second
// entry of the id (an operator's retry of a request canceled before it
// was dequeued, on a Queue that cannot tell its entries apart), and
// taking over would run the request twice at once.
var errDuplicateEntry = errors.New("asyncreq: a second queue entry of a running request")

// claim marks the record running under j's token (see Record.Claim). A
// final record gives ErrFinished; a record Claim settled instead (its
// cancel was requested, or it used up its attempts in earlier crashed
// runs) gives errClaimSettled.
func (w *Worker) claim(ctx context.Context, j *job) (*Record, error) {
	now := time.Now()
	rec, err := w.store.Update(ctx, j.lease.ID, func(rec *Record) error {
		return w.claimRecord(j.lease, j.token, rec, now)
	})
	return w.claimOutcome(ctx, j, rec, err)
}

// claimRecord is the claim of rec for the lease l under token, the update
// that both claim and a Claimer's DequeueClaim make.
func (w *Worker) claimRecord(l *Lease, token string, rec *Record, now time.Time) error {
	if rec.State == StateRunning && l.Delivery == 1 {
		return errDuplicateEntry
	}
	return rec.Claim(token, w.opts.MaxAttempts, now)
}

// claimOutcome is what the claim of j's record, which gave rec and err, comes
// to, as claim returns it.
func (w *Worker) claimOutcome(ctx context.Context, j *job, rec *Record, err error) (*Record, error) {
	rec, err = checkRecord(rec, err)
	if err != nil {
		return nil, err
	}
	switch rec.State {
	case StateRunning:
		return rec, nil
	case StateCanceled:
		j.logger().InfoContext(ctx, "asyncreq: request canceled before it ran")
	default:
		j.logger().ErrorContext(ctx, "asyncreq: request failed: attempts used up without an outcome (the processor may crash its worker)", "attempts", rec.Attempts)
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
	j.keeper.setProcessor(cancel)
	defer j.keeper.setProcessor(nil)
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

	// The heartbeat outlives a shutdown cancel, as the processor may still
	// be canceled by the client until it has returned. It starts
	// heartbeatStartMax after the processor at most: most requests of a
	// busy worker are over by then, and cost no watch, no read of their
	// record and no goroutine of the heartbeat's.
	hctx, stopHeartbeat := context.WithCancel(context.WithoutCancel(ctx))
	beatDone := make(chan struct{})
	start := min(w.beatInterval(), heartbeatStartMax)
	beat := time.AfterFunc(start, func() {
		defer close(beatDone)
		w.heartbeat(hctx, j, cancel, w.beatInterval()-start)
	})
	defer func() {
		stopHeartbeat()
		if !beat.Stop() {
			<-beatDone // it started
		}
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
	pctx = w.attemptStarted(pctx, j)
	var a attempt
	a.res, a.err = w.call(pctx, j, req)
	j.ev.Duration = time.Since(j.ev.Start)
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
			j.logger().ErrorContext(ctx, "asyncreq: processor panicked", "panic", v, "stack", string(debug.Stack()))
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

// beatInterval is the time between two heartbeats: a third of the lease.
func (w *Worker) beatInterval() time.Duration {
	return max(w.opts.LeaseDuration/3, time.Millisecond)
}

// heartbeatStartMax is how long after its processor starts an attempt's
// heartbeat begins, at most: a third of the lease when that is shorter. A
// client's cancel of a running request is therefore noticed by its watch
// no later than this after the attempt started.
const heartbeatStartMax = 50 * time.Millisecond

// heartbeat watches j's request while its processor runs, and cancels the
// processor with cause ErrCanceled when the client cancels the request,
// or with ErrLeaseLost when the record's lease token is lost. (The lease
// itself is extended by j's leaseKeeper.) It reads the record every
// LeaseDuration/3; when the Store is a Watcher it also watches the record
// and reads it at each change the watch reports. A watch is only a hint:
// a Watcher may miss changes made by other processes (see Watcher), and
// the beat's read catches those. The first beat is in first, so that
// beats keep their pace from the processor's start however late the
// heartbeat began. It returns when ctx ends or once nothing more can
// happen to the record to watch for.
func (w *Worker) heartbeat(ctx context.Context, j *job, cancel context.CancelCauseFunc, first time.Duration) {
	every := w.beatInterval()
	t := time.NewTimer(first)
	defer t.Stop()
	var changed <-chan struct{}
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
				j.logger().WarnContext(ctx, "asyncreq: watch", "err", err)
				changed = nil
			}
			// A change between the claim (or the last change) and the
			// watch would be missed without this read.
			if !w.check(ctx, j, cancel) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
			rewatch = true
		case <-t.C:
			t.Reset(every)
			if w.watcher != nil && changed == nil {
				rewatch = true // watches again, then reads
			} else if !w.check(ctx, j, cancel) {
				return
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
		j.logger().WarnContext(ctx, "asyncreq: record vanished while running; canceling the processor")
		cancel(ErrLeaseLost)
		return false
	default:
		j.logger().WarnContext(ctx, "asyncreq: read record", "err", err)
		return true
	}
	switch {
	case !rec.heldBy(j.token):
		j.logger().WarnContext(ctx, "asyncreq: request taken over by a newer attempt; canceling the processor")
		cancel(ErrLeaseLost)
		return false
	case rec.CancelRequested:
		j.logger().InfoContext(ctx, "asyncreq: cancel requested; canceling the processor")
		cancel(ErrCanceled)
		return false
	}
	return true
}
