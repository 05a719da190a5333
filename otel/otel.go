// Package otel instruments an asyncreq Handler and Worker with
// OpenTelemetry traces and metrics.
//
// Instrument returns an Observer whose Hooks go into
// asyncreq.HandlerOptions.Hooks and asyncreq.WorkerOptions.Hooks:
//
//	obs, err := otel.Instrument(otel.WithQueue("reports"))
//	...
//	h, err := asyncreq.NewHandler(b, &asyncreq.HandlerOptions{Hooks: obs.Hooks()})
//	w, err := asyncreq.NewWorker(b, p, &asyncreq.WorkerOptions{Hooks: obs.Hooks()})
//	defer obs.Close()
//
// # Traces
//
// The handler keeps the trace context of the span serving a submit (the
// span of an otelhttp middleware, for example) with the request, as its
// traceparent and tracestate headers. The worker's "asyncreq.process"
// span, which the processor's context carries, links to that span; with
// WithProcessAsChild it is also its child, so that the request's whole
// life is one trace. An accept gets an "asyncreq.accept" span under the
// submit's span, and a claim an "asyncreq.claim" span. Spans carry the
// attributes asyncreq.request.id, asyncreq.queue and asyncreq.attempt,
// and the process span asyncreq.outcome.
//
// # Metrics
//
//	asyncreq.requests.accepted  counter   accepted submits (asyncreq.replay: an Idempotency-Key repeat)
//	asyncreq.requests.rejected  counter   refused submits (http.response.status_code, asyncreq.reason)
//	asyncreq.attempts           counter   finished attempts (asyncreq.outcome)
//	asyncreq.attempt.duration   histogram seconds a processor ran (asyncreq.outcome)
//	asyncreq.queue.wait         histogram seconds from accept to the first claim
//	asyncreq.request.duration   histogram seconds from accept to the final outcome (asyncreq.outcome)
//	asyncreq.queue.depth        gauge     requests waiting (WithQueueStats)
//	asyncreq.queue.oldest_age   gauge     seconds the oldest waiting request has waited (WithQueueStats)
//
// Every metric carries asyncreq.queue when WithQueue names the queue.
package otel

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
	gotel "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/asyncreq/asyncreq/otel"

// Attribute keys.
const (
	AttrRequestID = attribute.Key("asyncreq.request.id")
	AttrQueue     = attribute.Key("asyncreq.queue")
	AttrAttempt   = attribute.Key("asyncreq.attempt")
	AttrOutcome   = attribute.Key("asyncreq.outcome")
	AttrReplay    = attribute.Key("asyncreq.replay")
	AttrReason    = attribute.Key("asyncreq.reason")
	AttrFinal     = attribute.Key("asyncreq.final")
	AttrRetryIn   = attribute.Key("asyncreq.retry_in")
	attrStatus    = attribute.Key("http.response.status_code")
)

// QueueStats is what the queue gauges report.
type QueueStats struct {
	// Depth is the number of requests waiting to be claimed.
	Depth int64
	// OldestAge is how long the oldest of them has waited.
	OldestAge time.Duration
}

// An Option configures Instrument.
type Option func(*config)

type config struct {
	tp    trace.TracerProvider
	mp    metric.MeterProvider
	prop  propagation.TextMapPropagator
	queue string
	child bool
	stats func(ctx context.Context) (QueueStats, error)
}

// WithTracerProvider sets the TracerProvider. The default is the global
// one (go.opentelemetry.io/otel.GetTracerProvider), whose spans record
// nothing until a provider is set with otel.SetTracerProvider, but still
// cost their start.
//
// A no-op provider (go.opentelemetry.io/otel/trace/noop.NewTracerProvider)
// turns tracing off: the Observer then records metrics only, its hooks
// start no span and keep no trace context with a request, and a request's
// span costs nothing at all.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithMeterProvider sets the MeterProvider. The default is the global one.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithPropagator sets the propagator that writes the trace context kept
// with a request and reads it in the worker. It must write and read the
// W3C traceparent and tracestate headers, the only ones kept whatever
// KeepHeaders says. The default is propagation.TraceContext.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.prop = p }
}

// WithQueue names the queue, added as asyncreq.queue to every span and
// metric.
func WithQueue(name string) Option {
	return func(c *config) { c.queue = name }
}

// WithProcessAsChild makes the worker's process span a child of the span
// that submitted the request, besides linking to it. The default is a
// link only: a request may be processed long after its submit, and many
// tracing backends then show one trace spanning hours poorly.
func WithProcessAsChild(child bool) Option {
	return func(c *config) { c.child = child }
}

// WithQueueStats sets the function the queue gauges are observed with,
// called at each collection. The default is none: no gauge is reported.
func WithQueueStats(f func(ctx context.Context) (QueueStats, error)) Option {
	return func(c *config) { c.stats = f }
}

// Observer holds the instruments behind the Hooks.
type Observer struct {
	cfg    config
	tracer trace.Tracer
	// tracing is false when the TracerProvider is a no-op one: no span is
	// started then.
	tracing bool
	attrs   []attribute.KeyValue // the queue, if named
	set     metric.MeasurementOption
	// replay and outcomes are the measurement options of the accepted
	// counter (by AcceptEvent.Replay) and of each outcome the package
	// names, made once: an attribute set sorts and allocates, and these
	// are recorded at every request.
	replay   [2]metric.MeasurementOption
	outcomes map[string]metric.MeasurementOption

	accepted, rejected, attempts      metric.Int64Counter
	attemptDur, queueWait, requestDur metric.Float64Histogram
	depth                             metric.Int64ObservableGauge
	oldest                            metric.Float64ObservableGauge
	registration                      metric.Registration
	hooks                             *asyncreq.Hooks
}

// Instrument returns an Observer recording traces and metrics of the
// Handlers and Workers its Hooks are given to.
func Instrument(opts ...Option) (*Observer, error) {
	c := config{}
	for _, o := range opts {
		o(&c)
	}
	if c.tp == nil {
		c.tp = gotel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = gotel.GetMeterProvider()
	}
	if c.prop == nil {
		c.prop = propagation.TraceContext{}
	}
	_, off := c.tp.(noop.TracerProvider)
	o := &Observer{cfg: c, tracer: c.tp.Tracer(ScopeName), tracing: !off}
	if c.queue != "" {
		o.attrs = []attribute.KeyValue{AttrQueue.String(c.queue)}
	}
	o.set = metric.WithAttributeSet(attribute.NewSet(o.attrs...))
	o.replay = [2]metric.MeasurementOption{o.withQueue(AttrReplay.Bool(false)), o.withQueue(AttrReplay.Bool(true))}
	o.outcomes = make(map[string]metric.MeasurementOption)
	for _, out := range []string{
		asyncreq.OutcomeSucceeded, asyncreq.OutcomeFailed, asyncreq.OutcomeRetry,
		asyncreq.OutcomeCanceled, asyncreq.OutcomeTimedOut, asyncreq.OutcomePanicked,
		asyncreq.OutcomeLeaseLost, asyncreq.OutcomeHandedBack, asyncreq.OutcomeUnrecorded,
	} {
		o.outcomes[out] = o.withQueue(AttrOutcome.String(out))
	}

	m := c.mp.Meter(ScopeName)
	var err error
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		ctr, err := m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit("{request}"))
		errs = append(errs, err)
		return ctr
	}
	seconds := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))
		errs = append(errs, err)
		return h
	}
	o.accepted = counter("asyncreq.requests.accepted", "Submitted requests accepted.")
	o.rejected = counter("asyncreq.requests.rejected", "Submitted requests refused.")
	o.attempts = counter("asyncreq.attempts", "Finished attempts at requests, by outcome.")
	o.attemptDur = seconds("asyncreq.attempt.duration", "How long a processor ran.")
	o.queueWait = seconds("asyncreq.queue.wait", "How long a request waited from its accept to its first claim.")
	o.requestDur = seconds("asyncreq.request.duration", "How long a request took from its accept to its final outcome.")
	if c.stats != nil {
		o.depth, err = m.Int64ObservableGauge("asyncreq.queue.depth",
			metric.WithDescription("Requests waiting to be claimed."), metric.WithUnit("{request}"))
		errs = append(errs, err)
		o.oldest, err = m.Float64ObservableGauge("asyncreq.queue.oldest_age",
			metric.WithDescription("How long the oldest waiting request has waited."), metric.WithUnit("s"))
		errs = append(errs, err)
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		o.registration, err = m.RegisterCallback(o.observeQueue, o.depth, o.oldest)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	o.hooks = &asyncreq.Hooks{
		Accepted:        o.onAccepted,
		Rejected:        o.onRejected,
		TraceContext:    o.onTraceContext,
		Claimed:         o.onClaimed,
		AttemptStarted:  o.onAttemptStarted,
		AttemptFinished: o.onAttemptFinished,
	}
	return o, nil
}

// Hooks returns the hooks to set in asyncreq.HandlerOptions and
// asyncreq.WorkerOptions.
func (o *Observer) Hooks() *asyncreq.Hooks { return o.hooks }

// Close unregisters the queue gauges' callback.
func (o *Observer) Close() error {
	if o.registration == nil {
		return nil
	}
	return o.registration.Unregister()
}

func (o *Observer) observeQueue(ctx context.Context, ob metric.Observer) error {
	s, err := o.cfg.stats(ctx)
	if err != nil {
		return err
	}
	ob.ObserveInt64(o.depth, s.Depth, o.set)
	ob.ObserveFloat64(o.oldest, s.OldestAge.Seconds(), o.set)
	return nil
}

// withQueue returns the measurement option of attrs plus the queue.
func (o *Observer) withQueue(attrs ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributes(o.plusQueue(attrs...)...)
}

// plusQueue returns attrs plus the queue's, in one allocation.
func (o *Observer) plusQueue(attrs ...attribute.KeyValue) []attribute.KeyValue {
	all := make([]attribute.KeyValue, 0, len(attrs)+len(o.attrs))
	return append(append(all, attrs...), o.attrs...)
}

func (o *Observer) onAccepted(ctx context.Context, e asyncreq.AcceptEvent) {
	replay := 0
	if e.Replay {
		replay = 1
	}
	o.accepted.Add(ctx, 1, o.replay[replay])
	if !o.tracing {
		return
	}
	s := spanStarts.Get().(*spanStart)
	s.attrs = append(s.attrs, AttrRequestID.String(e.ID), AttrReplay.Bool(e.Replay))
	s.opts = append(s.opts, trace.WithTimestamp(e.Start), trace.WithSpanKind(trace.SpanKindInternal))
	_, span := o.start(ctx, "asyncreq.accept", s)
	span.End()
}

func (o *Observer) onRejected(ctx context.Context, e asyncreq.RejectEvent) {
	o.rejected.Add(ctx, 1, o.withQueue(attrStatus.Int(e.Status), AttrReason.String(e.Reason)))
}

// onTraceContext keeps the span serving the submit, when there is one.
func (o *Observer) onTraceContext(ctx context.Context, h http.Header) {
	if o.tracing && trace.SpanContextFromContext(ctx).IsValid() {
		o.cfg.prop.Inject(ctx, propagation.HeaderCarrier(h))
	}
}

// submitter returns the span context of the submit kept with a request.
func (o *Observer) submitter(parent, state string) trace.SpanContext {
	if parent == "" {
		return trace.SpanContext{}
	}
	h := http.Header{"Traceparent": {parent}}
	if state != "" {
		h["Tracestate"] = []string{state}
	}
	return trace.SpanContextFromContext(o.cfg.prop.Extract(context.Background(), propagation.HeaderCarrier(h)))
}

// workerSpan starts a worker span, linked to (and, with
// WithProcessAsChild, under) the submitting span.
func (o *Observer) workerSpan(ctx context.Context, name, parent, state string, start time.Time, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	s := spanStarts.Get().(*spanStart)
	s.attrs = append(s.attrs, attrs...)
	s.opts = append(s.opts, trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindConsumer))
	sc := o.submitter(parent, state)
	if sc.IsValid() {
		s.opts = append(s.opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	if o.cfg.child && sc.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	} else {
		// Not under whatever span the worker was started with: each
		// attempt is a trace of its own, linked to its submit.
		s.opts = append(s.opts, trace.WithNewRoot())
	}
	return o.start(ctx, name, s)
}

// spanStart is the scratch of a span's start: its attributes and its
// options. A Tracer reads the options through trace.NewSpanStartConfig,
// which copies what they hold, before Start returns; so the two slices go
// back to spanStarts for another span, and a span costs no allocation of
// them, whether it is recorded or not (tracing off).
type spanStart struct {
	attrs []attribute.KeyValue
	opts  []trace.SpanStartOption
}

var spanStarts = sync.Pool{New: func() any { return new(spanStart) }}

// start starts the span name with s's options and attributes plus the
// queue's, and puts s back in spanStarts.
func (o *Observer) start(ctx context.Context, name string, s *spanStart) (context.Context, trace.Span) {
	s.attrs = append(s.attrs, o.attrs...)
	s.opts = append(s.opts, trace.WithAttributes(s.attrs...))
	ctx, span := o.tracer.Start(ctx, name, s.opts...)
	clear(s.attrs) // hold no request's id in the pool
	clear(s.opts)
	s.attrs, s.opts = s.attrs[:0], s.opts[:0]
	spanStarts.Put(s)
	return ctx, span
}

func (o *Observer) onClaimed(ctx context.Context, e asyncreq.ClaimEvent) {
	if e.Attempt == 1 && !e.CreatedAt.IsZero() {
		o.queueWait.Record(ctx, max(e.ClaimedAt.Sub(e.CreatedAt), 0).Seconds(), o.set)
	}
	if !o.tracing {
		return
	}
	_, span := o.workerSpan(ctx, "asyncreq.claim", e.TraceParent, e.TraceState, e.Start,
		AttrRequestID.String(e.ID), AttrAttempt.Int(e.Attempt))
	span.End()
}

func (o *Observer) onAttemptStarted(ctx context.Context, e asyncreq.AttemptEvent) context.Context {
	if !o.tracing {
		return ctx
	}
	ctx, _ = o.workerSpan(ctx, "asyncreq.process", e.TraceParent, e.TraceState, e.Start,
		AttrRequestID.String(e.ID), AttrAttempt.Int(e.Attempt))
	return ctx
}

func (o *Observer) onAttemptFinished(ctx context.Context, e asyncreq.AttemptEvent) {
	outcome, ok := o.outcomes[e.Outcome]
	if !ok {
		outcome = o.withQueue(AttrOutcome.String(e.Outcome))
	}
	o.attempts.Add(ctx, 1, outcome)
	o.attemptDur.Record(ctx, e.Duration.Seconds(), outcome)
	if e.Final && !e.CreatedAt.IsZero() {
		o.requestDur.Record(ctx, max(time.Since(e.CreatedAt), 0).Seconds(), outcome)
	}

	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(AttrOutcome.String(e.Outcome), AttrFinal.Bool(e.Final))
	if e.RetryIn > 0 {
		span.SetAttributes(AttrRetryIn.Float64(e.RetryIn.Seconds()))
	}
	switch e.Outcome {
	case asyncreq.OutcomeSucceeded, asyncreq.OutcomeCanceled, asyncreq.OutcomeHandedBack:
	default:
		if e.Err != nil {
			span.RecordError(e.Err)
		}
		span.SetStatus(codes.Error, e.Outcome)
	}
	span.End()
}
