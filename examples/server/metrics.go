package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/asyncreq/asyncreq"
	asyncreqotel "github.com/asyncreq/asyncreq/otel"
)

// telemetry is the example's metrics: an OpenTelemetry MeterProvider
// whose reader is a Prometheus exporter, served at /metrics.
type telemetry struct {
	mp        *sdkmetric.MeterProvider
	handler   http.Handler
	observers []*asyncreqotel.Observer
}

func newTelemetry() (*telemetry, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	return &telemetry{
		mp:      sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, nil
}

// hooks returns the Hooks of an endpoint's Handler and Worker, whose
// metrics carry the endpoint's name as asyncreq_queue. When b counts its
// queue (asyncreq.QueueStater), its depth and oldest age are gauged.
func (t *telemetry) hooks(queue string, b asyncreq.Backend) (*asyncreq.Hooks, error) {
	opts := []asyncreqotel.Option{asyncreqotel.WithMeterProvider(t.mp), asyncreqotel.WithQueue(queue)}
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

func (t *telemetry) close() {
	for _, o := range t.observers {
		_ = o.Close()
	}
}
