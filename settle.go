package asyncreq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// This file is how the Worker settles an attempt: the outcome it records
// (with the transitions of lifecycle.go), the lease it acks or nacks, the
// backoff before a retry, and the result size limit.

// finish records the outcome of an attempt and settles the lease. ctx is
// not canceled by a shutdown (see settleContext).
func (w *Worker) finish(ctx context.Context, j *job, rec *Record, a attempt) {
	now := time.Now()
	res, err, cause := a.res, a.err, a.cause
	j.ev.Err = err
	if err == nil {
		if res == nil {
			res = &Result{}
		}
		if n := resultSize(res); n > w.opts.MaxResultBytes {
			err = fmt.Errorf("%w: %d bytes, more than MaxResultBytes (%d)", ErrResultTooLarge, n, w.opts.MaxResultBytes)
			j.logger().ErrorContext(ctx, "asyncreq: request failed: result too large", "err", err)
			p := tooLargeProblem(w.opts.MaxResultBytes)
			w.record(ctx, j, OutcomeFailed, 0, func(rec *Record) error { return rec.Fail(j.token, p, now) })
			return
		}
		w.record(ctx, j, OutcomeSucceeded, 0, func(rec *Record) error { return rec.Succeed(j.token, res, now) })
		return
	}

	if p := permanentProblem(err); p != nil {
		j.logger().InfoContext(ctx, "asyncreq: request failed permanently", "status", p.Status, "err", err)
		w.record(ctx, j, OutcomeFailed, 0, func(rec *Record) error { return rec.Fail(j.token, p, now) })
		return
	}

	var detail string
	switch {
	case errors.Is(cause, ErrLeaseLost):
		// Another attempt owns the request now, or will.
		j.logger().WarnContext(ctx, "asyncreq: attempt abandoned: lease lost", "err", err)
		w.releaseIfSuperseded(ctx, j)
		w.attemptFinished(ctx, j, OutcomeLeaseLost, false, 0, err)
		return
	case errors.Is(cause, ErrShutdown):
		j.logger().InfoContext(ctx, "asyncreq: handing the request back at shutdown", "err", err)
		w.record(ctx, j, OutcomeHandedBack, 0, func(rec *Record) error { return rec.HandBack(j.token, now) })
		return
	case errors.Is(cause, ErrCanceled):
		j.logger().InfoContext(ctx, "asyncreq: request canceled while running", "err", err)
		w.record(ctx, j, OutcomeCanceled, 0, func(rec *Record) error { return rec.Cancel(j.token, now) })
		return
	case errors.Is(cause, ErrTimeout):
		detail = "processing timed out"
	default:
		detail = "processing failed"
	}

	// A timeout or a panic is told apart from other failures; it is
	// retried or fails for good like them.
	failed, retry := OutcomeFailed, OutcomeRetry
	var pe *panicError
	switch {
	case errors.Is(cause, ErrTimeout):
		failed, retry = OutcomeTimedOut, OutcomeTimedOut
	case errors.As(err, &pe):
		failed, retry = OutcomePanicked, OutcomePanicked
	}
	if rec.Attempts >= w.opts.MaxAttempts {
		j.logger().ErrorContext(ctx, "asyncreq: request failed: attempts used up", "err", err, "attempts", rec.Attempts)
		p := failedProblem(detail)
		w.record(ctx, j, failed, 0, func(rec *Record) error { return rec.Fail(j.token, p, now) })
		return
	}
	delay := w.backoff(rec.Attempts)
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		delay = max(ra.Delay, 0)
	}
	j.logger().WarnContext(ctx, "asyncreq: attempt failed; retrying", "err", err, "retry_in", delay)
	p := failedProblem(fmt.Sprintf("attempt %d of %d failed: %s; retrying", rec.Attempts, w.opts.MaxAttempts, detail))
	w.record(ctx, j, retry, delay, func(rec *Record) error { return rec.Retry(j.token, p, now) })
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
	var stored *Record
	var err error
	if w.completer != nil && !j.callback {
		_, err = w.completer.Complete(ctx, j.lease, write)
	} else {
		// A request with a callback keeps its queue entry until the
		// callback is delivered (see deliver.go).
		stored, err = w.store.Update(ctx, j.lease.ID, write)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrLeaseLost), isMissing(err):
		j.logger().WarnContext(ctx, "asyncreq: outcome not recorded: the request is no longer this attempt's", "outcome", what, "err", err)
		w.release(ctx, j)
		w.attemptFinished(ctx, j, OutcomeLeaseLost, false, 0, err)
		return
	default:
		// The outcome is lost with this attempt; leave the lease to run
		// out, so that the request is delivered again.
		j.logger().ErrorContext(ctx, "asyncreq: record outcome", "outcome", what, "err", err)
		w.attemptFinished(ctx, j, OutcomeUnrecorded, false, 0, err)
		return
	}
	if final || what == OutcomeHandedBack {
		delay = 0
	}
	w.attemptFinished(ctx, j, what, final, delay, nil)
	switch {
	case !final:
		w.nack(ctx, j, delay)
	case stored != nil && stored.callbackDue():
		w.deliver(ctx, j, stored)
	case w.completer == nil || j.callback:
		w.ack(ctx, j)
	}
}

// ack acks j's lease, logging a failure: the record already says what
// happened, and a redelivery is acked at claim.
func (w *Worker) ack(ctx context.Context, j *job) {
	if err := w.queue.Ack(ctx, j.lease); err != nil {
		j.logger().WarnContext(ctx, "asyncreq: ack", "err", err)
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
		j.logger().WarnContext(ctx, "asyncreq: ack of a superseded lease", "err", err)
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
		j.logger().WarnContext(ctx, "asyncreq: read record of an abandoned attempt; leaving its lease to run out", "err", err)
		return
	}
	w.release(ctx, j)
}

// nack hands j's lease back for delivery after delay, logging a failure:
// the lease then runs out and the request is delivered again anyway.
func (w *Worker) nack(ctx context.Context, j *job, delay time.Duration) {
	if err := w.queue.Nack(ctx, j.lease, delay); err != nil {
		j.logger().WarnContext(ctx, "asyncreq: nack", "err", err)
	}
}

// settleContext returns the context of the writes that record an attempt's
// outcome and settle its lease. They must happen even when the worker is
// stopping and ctx is canceled, but not hold Stop forever when the backend
// hangs: they get LeaseDuration, after which the lease runs out anyway and
// the request is delivered again.
func (w *Worker) settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), w.opts.LeaseDuration)
}

// backoff returns the wait after the n-th failed attempt: uniform in
// [BackoffMin, min(BackoffMax, BackoffMin·2^n)].
func (w *Worker) backoff(n int) time.Duration {
	return jitteredBackoff(w.opts.BackoffMin, w.opts.BackoffMax, n)
}

// jitteredBackoff returns a wait drawn uniformly from [lo, min(hi, lo·2^n)].
func jitteredBackoff(lo, hi time.Duration, n int) time.Duration {
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

// resultLimitKey is the context key under which a Worker tells
// HandlerProcessor its MaxResultBytes.
type resultLimitKey struct{}

// withResultLimit returns a context carrying the largest result size.
func withResultLimit(ctx context.Context, limit int64) context.Context {
	return context.WithValue(ctx, resultLimitKey{}, limit)
}

// resultLimit returns the largest result size a Worker set in ctx, or the
// default MaxResultBytes outside a Worker.
func resultLimit(ctx context.Context) int64 {
	if n, ok := ctx.Value(resultLimitKey{}).(int64); ok && n > 0 {
		return n
	}
	return defaultWorkerMaxResultBytes
}

// resultSize is what a result counts against MaxResultBytes: its body, its
// Content-Type, and the names and values of its other headers.
func resultSize(res *Result) int64 {
	n := int64(len(res.Body) + len(res.ContentType))
	for k, vs := range res.Header {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v))
		}
	}
	return n
}
