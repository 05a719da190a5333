package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// serviceName is the service.name of the server's spans, unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise.
const serviceName = "asyncreq-example-server"

// otlpEnvSet reports whether the standard environment names an OTLP
// endpoint for traces, which the exporter then reads itself.
func otlpEnvSet() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// otlpOptions returns the exporter options of the -otlp-endpoint flag:
// host:port is plain HTTP to http://host:port/v1/traces; a URL is used as
// it is, with /v1/traces as the path of one that has none. An empty
// endpoint leaves the exporter to the OTEL_EXPORTER_OTLP_* environment.
func otlpOptions(endpoint string) ([]otlptracehttp.Option, error) {
	if endpoint == "" {
		return nil, nil
	}
	if !strings.Contains(endpoint, "://") {
		if _, port, err := net.SplitHostPort(endpoint); err != nil || port == "" {
			return nil, fmt.Errorf("-otlp-endpoint %q: want host:port or an http:// or https:// URL", endpoint)
		}
		return []otlptracehttp.Option{otlptracehttp.WithEndpoint(endpoint), otlptracehttp.WithInsecure()}, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("-otlp-endpoint: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("-otlp-endpoint %q: want host:port or an http:// or https:// URL", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return []otlptracehttp.Option{otlptracehttp.WithEndpointURL(u.String())}, nil
}

// newTracing returns a TracerProvider that batches the server's spans and
// exports them over OTLP/HTTP (protobuf), to endpoint or, when it is
// empty, where the OTEL_EXPORTER_OTLP_* environment says. Creating it
// sends nothing: spans are exported in the background, and an endpoint
// that does not answer costs only the dropped batches (logged by
// OpenTelemetry's global error handler).
func newTracing(ctx context.Context, endpoint string) (*sdktrace.TracerProvider, error) {
	opts, err := otlpOptions(endpoint)
	if err != nil {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	// The later source wins: the service name unless the environment names one.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res),
	), nil
}

// traced serves next inside a server span of tp per request (but not
// for the /metrics scrapes), named by method and endpoint, continuing the
// trace of a client's traceparent. That span is the one the Handler keeps
// with an accepted request, and the one the worker's process span links to.
func traced(next http.Handler, tp *sdktrace.TracerProvider) http.Handler {
	return otelhttp.NewHandler(next, "asyncreq-example",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/metrics" }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return r.Method + " " + endpointOf(r.URL.Path)
		}))
}

// endpointOf returns the first segment of path ("/jobs" of
// "/jobs/ID/status"), so that span names do not carry request ids.
func endpointOf(path string) string {
	rest := strings.TrimPrefix(path, "/")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	return "/" + rest
}
