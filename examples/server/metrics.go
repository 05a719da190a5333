package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/asyncreq/asyncreq"
	asyncreqotel "github.com/asyncreq/asyncreq/otel"
)

// telemetry is the example's metrics: an OpenTelemetry MeterProvider
// whose reader is a Prometheus exporter, served at /metrics with the
// process's and the Go runtime's own metrics (process_cpu_seconds_total,
// go_gc_duration_seconds, ...); and, when tracing is on, the
// TracerProvider of its spans.
type telemetry struct {
	mp        *sdkmetric.MeterProvider
	tp        *sdktrace.TracerProvider // nil: no tracing
	handler   http.Handler
	observers []*asyncreqotel.Observer
}

// newTelemetry returns the example's telemetry, tracing with tp unless it
// is nil; close shuts tp down.
func newTelemetry(tp *sdktrace.TracerProvider) (*telemetry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	return &telemetry{
		tp:      tp,
		mp:      sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, nil
}

// hooks returns the Hooks of an endpoint's Handler and Worker, whose
// metrics carry the endpoint's name as asyncreq_queue. When b counts its
// queue (asyncreq.QueueStater), its depth and oldest age are gauged.
func (t *telemetry) hooks(queue string, b asyncreq.Backend) (*asyncreq.Hooks, error) {
	opts := []asyncreqotel.Option{asyncreqotel.WithMeterProvider(t.mp), asyncreqotel.WithQueue(queue)}
	if t.tp != nil {
		opts = append(opts, asyncreqotel.WithTracerProvider(t.tp))
	} else {
		// Tracing is off: metrics only, with no span started at all (the
		// global provider's would record nothing, at a cost).
		opts = append(opts, asyncreqotel.WithTracerProvider(noop.NewTracerProvider()))
	}
	if qs, ok := b.(asyncreq.QueueStater); ok {
		opts = append(opts, asyncreqotel.WithQueueStats(func(ctx context.Context) (asyncreqotel.QueueStats, error) {
			s, err := qs.QueueStats(ctx)
			if err != nil {
				return asyncreqotel.QueueStats{}, err
			}
			return asyncreqotel.QueueStats{Depth: max(s.Pending, 0), OldestAge: s.OldestPendingAge()}, nil
		}))
	}
	o, err := asyncreqotel.Instrument(opts...)
	if err != nil {
		return nil, err
	}
	t.observers = append(t.observers, o)
	return o.Hooks(), nil
}

// close unregisters the queue gauges and, when tracing, exports the spans
// still batched (for up to 5s) and stops the exporter.
func (t *telemetry) close() {
	for _, o := range t.observers {
		_ = o.Close()
	}
	if t.tp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = t.tp.Shutdown(ctx)
	}
	_ = t.mp.Shutdown(context.Background())
}
