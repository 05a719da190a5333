package asyncreq

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// This file is what a Handler and a Worker tell an observer: the Hooks
// set in HandlerOptions.Hooks and WorkerOptions.Hooks, the events they
// receive, and the trace context kept with every accepted request. The
// otel module builds its traces and metrics on these hooks.

// Hooks are functions a Handler and a Worker call at the events that
// matter to an operator. Every field is optional: an unset hook costs a
// nil check. Hooks run on the goroutine of the event, synchronously, so
// they must be quick and must not block; they must be safe for concurrent
// use. The same Hooks value may be given to a Handler and a Worker; each
// calls only the hooks of its own events.
type Hooks struct {
	// Accepted is called by a Handler once a submitted request (a POST,
	// or Handler.Submit or SubmitVia) is recorded and enqueued, and when a
	// submit repeats an earlier one by its idempotency key (Replay true).
	Accepted func(ctx context.Context, e AcceptEvent)

	// Rejected is called by a Handler when it refuses a submit: 400,
	// 401, 409, 413, 422 or 503. A submission Handler.Submit or SubmitVia
	// refuses is told with the status a POST of it would have been
	// answered with.
	Rejected func(ctx context.Context, e RejectEvent)

	// Served is called by a Handler when it answers a status or result
	// request about a record it found.
	Served func(ctx context.Context, e ServeEvent)

	// TraceContext, if set, writes the trace context to keep with an
	// accepted request into h, as the W3C "traceparent" and "tracestate"
	// headers. It is called with the submit's context (the ctx given to
	// Handler.Submit, SubmitVia or NewRecord). By default the submit's own
	// traceparent and tracestate headers (Submission.Header's) are kept;
	// a tracer sets this hook to keep the span serving the submit instead.
	TraceContext func(ctx context.Context, h http.Header)

	// Claimed is called by a Worker once it has claimed a request for an
	// attempt.
	Claimed func(ctx context.Context, e ClaimEvent)

	// AttemptStarted is called by a Worker before it runs the processor.
	// The context it returns is the processor's (a tracer returns one
	// carrying the attempt's span), and it is the context AttemptFinished
	// is called with. A nil return keeps ctx.
	AttemptStarted func(ctx context.Context, e AttemptEvent) context.Context

	// AttemptFinished is called by a Worker once an attempt's outcome is
	// recorded (or could not be).
	AttemptFinished func(ctx context.Context, e AttemptEvent)

	// Purged is called by a Worker after a purge call removed records.
	Purged func(ctx context.Context, count int)

	// Swept is called by a Worker when its sweep enqueued a request that
	// had not reached the Queue.
	Swept func(ctx context.Context, id string)
}

// AcceptEvent describes an accepted submit.
type AcceptEvent struct {
	// ID is the request's id.
	ID string
	// Replay is true when the submit repeated an earlier request by its
	// Idempotency-Key and was answered with that request.
	Replay bool
	// CreatedAt is when the request was accepted (the first submit's time
	// for a replay).
	CreatedAt time.Time
	// Start is when the submit began to be handled, and Duration how long
	// reading, recording and enqueueing it took.
	Start    time.Time
	Duration time.Duration
}

// RejectEvent describes a refused submit.
type RejectEvent struct {
	// Status is the HTTP status of the answer.
	Status int
	// Reason is a short, fixed word for why: "bad_request",
	// "unauthorized", "too_large", "invalid", "conflict" or
	// "unavailable".
	Reason string
}

// ServeEvent describes an answered status or result request.
type ServeEvent struct {
	// Route is "status" or "result".
	Route string
	// ID is the request's id and State its state when answered.
	ID    string
	State State
}

// ClaimEvent describes a claimed request.
type ClaimEvent struct {
	// ID is the request's id, Attempt the attempt it starts (1 for the
	// first).
	ID      string
	Attempt int
	// CreatedAt is when the request was accepted; ClaimedAt minus
	// CreatedAt is how long it waited.
	CreatedAt time.Time
	ClaimedAt time.Time
	// Start is when the claim began and Duration how long it took.
	Start    time.Time
	Duration time.Duration
	// TraceParent and TraceState are the trace context kept with the
	// request when it was accepted, or "".
	TraceParent, TraceState string
}

// The outcomes of an attempt (AttemptEvent.Outcome).
const (
	OutcomeSucceeded  = "succeeded"   // the result was recorded
	OutcomeFailed     = "failed"      // failed for good
	OutcomeRetry      = "retry"       // failed; retried after AttemptEvent.RetryIn
	OutcomeCanceled   = "canceled"    // canceled by its client
	OutcomeTimedOut   = "timed_out"   // WorkerOptions.Timeout passed; retried or failed (see Final)
	OutcomePanicked   = "panicked"    // the processor panicked; retried or failed (see Final)
	OutcomeLeaseLost  = "lease_lost"  // another attempt owns the request; nothing recorded
	OutcomeHandedBack = "handed_back" // the worker stopped; the attempt is not spent
	OutcomeUnrecorded = "unrecorded"  // the outcome could not be written; delivered again later
)

// AttemptEvent describes an attempt, when it starts and when it finishes.
// The fields after Start are set only when it finishes.
type AttemptEvent struct {
	ID      string
	Attempt int
	// CreatedAt is when the request was accepted.
	CreatedAt time.Time
	// TraceParent and TraceState are the trace context kept with the
	// request when it was accepted, or "".
	TraceParent, TraceState string
	// Start is when the processor was called.
	Start time.Time

	// Duration is how long the processor ran.
	Duration time.Duration
	// Outcome is one of the Outcome constants.
	Outcome string
	// Final is true when the request is finished (succeeded, failed or
	// canceled) with this attempt.
	Final bool
	// RetryIn is the delay before the next attempt of an attempt that
	// will be retried.
	RetryIn time.Duration
	// Err is the processor's error, or nil.
	Err error
}

// keepTraceContext sets the trace context kept with an accepted request
// in kept: the traceparent of from (the submit's headers) and its tracestate,
// then whatever the TraceContext hook writes, called with the submit's
// context. It returns kept, allocated if it was nil and there is
// something to keep.
//
// from is read by its canonical keys, without canonicalizing them: an
// http.Server canonicalizes a request's, and http.Header.Set does.
func (h *Handler) keepTraceContext(ctx context.Context, from, kept http.Header) http.Header {
	// A tracestate means nothing without its traceparent (W3C Trace
	// Context), and is not kept alone.
	tp := from["Traceparent"]
	hook := h.opts.Hooks != nil && h.opts.Hooks.TraceContext != nil
	if len(tp) == 0 && !hook {
		return kept
	}
	if kept == nil {
		kept = make(http.Header, 2)
	}
	if len(tp) > 0 {
		kept["Traceparent"] = append([]string(nil), tp...)
		if ts := from["Tracestate"]; len(ts) > 0 {
			kept["Tracestate"] = append([]string(nil), ts...)
		}
	}
	if hook {
		h.opts.Hooks.TraceContext(ctx, kept)
	}
	if len(kept) == 0 {
		return nil
	}
	return kept
}

// traceContext returns the trace context kept with rec.
func traceContext(rec *Record) (parent, state string) {
	return rec.Header.Get("Traceparent"), rec.Header.Get("Tracestate")
}

// rejected tells the Rejected hook about a refused submit; ctx is the
// submit's.
func (h *Handler) rejected(ctx context.Context, status int, reason string) {
	if h.opts.Hooks != nil && h.opts.Hooks.Rejected != nil {
		h.opts.Hooks.Rejected(ctx, RejectEvent{Status: status, Reason: reason})
	}
}

// submissionRejected tells the Rejected hook about a submission that
// Submit refused with err, by the status and reason a POST of it would
// have been answered with; status and reason are those of an err that
// names neither.
func (h *Handler) submissionRejected(ctx context.Context, err error, status int, reason string) {
	if h.opts.Hooks == nil || h.opts.Hooks.Rejected == nil {
		return
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		status, reason = http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, ErrRejected), errors.Is(err, ErrIdempotencyMismatch):
		status, reason = http.StatusUnprocessableEntity, "invalid"
	case errors.Is(err, ErrStillAccepting):
		status, reason = http.StatusConflict, "conflict"
	}
	h.opts.Hooks.Rejected(ctx, RejectEvent{Status: status, Reason: reason})
}

// served tells the Served hook about an answered status or result request.
func (h *Handler) served(r *http.Request, route string, rec *Record) {
	if h.opts.Hooks != nil && h.opts.Hooks.Served != nil {
		h.opts.Hooks.Served(r.Context(), ServeEvent{Route: route, ID: rec.ID, State: rec.State})
	}
}

// acceptStart returns the time a submit began for its accepted event, or
// the zero time when no one observes accepts (no Accepted hook, no debug
// logging): an unobserved accept reads no clock for its event.
func (h *Handler) acceptStart(ctx context.Context) time.Time {
	if h.opts.Hooks != nil && h.opts.Hooks.Accepted != nil || h.log.Enabled(ctx, slog.LevelDebug) {
		return h.now()
	}
	return time.Time{}
}

// acceptedEvent logs an accepted submit and tells the Accepted hook; ctx
// is the submit's and start what acceptStart returned for it.
func (h *Handler) acceptedEvent(ctx context.Context, rec *Record, replay bool, start time.Time) {
	if start.IsZero() {
		return
	}
	d := h.now().Sub(start)
	h.log.LogAttrs(ctx, slog.LevelDebug, "asyncreq: request accepted",
		slog.String("id", rec.ID), slog.Bool("replay", replay), slog.Duration("duration", d))
	if h.opts.Hooks != nil && h.opts.Hooks.Accepted != nil {
		h.opts.Hooks.Accepted(ctx, AcceptEvent{ID: rec.ID, Replay: replay, CreatedAt: rec.CreatedAt, Start: start, Duration: d})
	}
}

// claimed tells the Claimed hook about a claimed request, and fills in
// the attempt's event.
func (w *Worker) claimed(ctx context.Context, j *job, rec *Record, start time.Time) {
	tp, ts := traceContext(rec)
	now := time.Now()
	j.ev = AttemptEvent{ID: rec.ID, Attempt: rec.Attempts, CreatedAt: rec.CreatedAt, TraceParent: tp, TraceState: ts}
	if w.opts.Hooks != nil && w.opts.Hooks.Claimed != nil {
		w.opts.Hooks.Claimed(ctx, ClaimEvent{
			ID: rec.ID, Attempt: rec.Attempts, CreatedAt: rec.CreatedAt, ClaimedAt: now,
			Start: start, Duration: now.Sub(start), TraceParent: tp, TraceState: ts,
		})
	}
}

// attemptStarted marks the start of j's attempt and tells the
// AttemptStarted hook, returning the processor's context.
func (w *Worker) attemptStarted(ctx context.Context, j *job) context.Context {
	j.ev.Start = time.Now()
	j.ctx = ctx
	if w.opts.Hooks != nil && w.opts.Hooks.AttemptStarted != nil {
		if c := w.opts.Hooks.AttemptStarted(ctx, j.ev); c != nil {
			j.ctx = c
		}
	}
	return j.ctx
}

// attemptFinished logs j's finished attempt (at Debug when it succeeded,
// at Info otherwise) and tells the AttemptFinished hook. err is the error
// that kept the outcome from being recorded, or nil.
func (w *Worker) attemptFinished(ctx context.Context, j *job, outcome string, final bool, retryIn time.Duration, err error) {
	ev := j.ev
	ev.Outcome, ev.Final, ev.RetryIn = outcome, final, retryIn
	if ev.Err == nil {
		ev.Err = err
	}
	// A success is routine: at Info, a busy worker would write a line per
	// request.
	level := slog.LevelInfo
	if outcome == OutcomeSucceeded {
		level = slog.LevelDebug
	}
	if w.log.Enabled(ctx, level) {
		attrs := []slog.Attr{slog.String("outcome", outcome), slog.Duration("duration", ev.Duration)}
		if retryIn > 0 {
			attrs = append(attrs, slog.Duration("retry_in", retryIn))
		}
		j.logger().LogAttrs(ctx, level, "asyncreq: attempt finished", attrs...)
	}
	if w.opts.Hooks != nil && w.opts.Hooks.AttemptFinished != nil {
		hctx := j.ctx
		if hctx == nil {
			hctx = ctx
		}
		w.opts.Hooks.AttemptFinished(hctx, ev)
	}
}

// purged tells the Purged hook about purged records.
func (w *Worker) purged(ctx context.Context, n int) {
	if w.opts.Hooks != nil && w.opts.Hooks.Purged != nil {
		w.opts.Hooks.Purged(ctx, n)
	}
}

// swept tells the Swept hook about a request the sweep enqueued.
func (w *Worker) swept(ctx context.Context, id string) {
	if w.opts.Hooks != nil && w.opts.Hooks.Swept != nil {
		w.opts.Hooks.Swept(ctx, id)
	}
}
