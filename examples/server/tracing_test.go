package main

import (
	"compress/gzip"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP traces endpoint: it decodes the protobuf
// export requests POSTed to /v1/traces and keeps their spans.
type otlpReceiver struct {
	mu       sync.Mutex
	spans    []*tracepb.Span
	services []string // service.name of each batch's resource
	bad      []string // what it refused
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(format string, args ...any) {
		o.mu.Lock()
		o.bad = append(o.bad, r.Method+" "+r.URL.Path+": "+strings.TrimSpace(format))
		o.mu.Unlock()
		http.Error(w, format, http.StatusBadRequest)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		fail("not an OTLP traces export")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		fail("Content-Type " + ct)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			fail(err.Error())
			return
		}
		body = gz
	}
	b, err := io.ReadAll(body)
	if err != nil {
		fail(err.Error())
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		fail(err.Error())
		return
	}
	o.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		o.services = append(o.services, stringAttr(rs.GetResource().GetAttributes(), "service.name"))
		for _, ss := range rs.GetScopeSpans() {
			o.spans = append(o.spans, ss.GetSpans()...)
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func stringAttr(attrs []*commonpb.KeyValue, key string) string {
	for _, kv := range attrs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// named returns the received spans of that name.
func (o *otlpReceiver) named(name string) []*tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range o.spans {
		if s.GetName() == name {
			out = append(out, s)
		}
	}
	return out
}

// runTraced submits one request to a server configured by c (tracing to
// an OTLP receiver), waits for its result, stops the server (which
// exports the spans still batched) and returns the receiver.
func runTraced(t *testing.T, c config, rcv *otlpReceiver, traceparent string) {
	t.Helper()
	ctx := t.Context()
	a, err := newApp(ctx, c, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.True(t, a.tracing, "tracing is on")
	closed := false
	defer func() {
		if !closed {
			a.close()
		}
	}()
	require.NoError(t, a.start(ctx))
	srv := httptest.NewServer(a.handler)
	defer srv.Close()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/jobs", strings.NewReader("one two\nthree\n"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Prefer", "wait=10")
	req.Header.Set("Traceparent", traceparent)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	// The worker's hook ends the process span after the outcome is
	// written, which the answer may beat: wait for it before stopping.
	require.NoError(t, a.stop())
	srv.Close()
	a.close() // flushes the batched spans
	closed = true
}

func TestOTLPTraces(t *testing.T) {
	rcv := &otlpReceiver{}
	collector := httptest.NewServer(rcv)
	defer collector.Close()
	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"

	check := func(t *testing.T) {
		t.Helper()
		rcv.mu.Lock()
		assert.Empty(t, rcv.bad)
		require.NotEmpty(t, rcv.services)
		for _, s := range rcv.services {
			assert.Equal(t, serviceName, s)
		}
		rcv.mu.Unlock()

		post := rcv.named("POST /jobs")
		require.Len(t, post, 1, "the submit's server span")
		assert.Equal(t, clientTrace, hex.EncodeToString(post[0].GetTraceId()), "the server span continues the client's trace")
		accept := rcv.named("asyncreq.accept")
		require.Len(t, accept, 1)
		assert.Equal(t, post[0].GetSpanId(), accept[0].GetParentSpanId(), "the accept span is under the submit's")
		id := stringAttr(accept[0].GetAttributes(), "asyncreq.request.id")
		require.NotEmpty(t, id)
		assert.Equal(t, "jobs", stringAttr(accept[0].GetAttributes(), "asyncreq.queue"))

		for _, name := range []string{"asyncreq.claim", "asyncreq.process"} {
			spans := rcv.named(name)
			require.Len(t, spans, 1, name)
			s := spans[0]
			assert.Equal(t, id, stringAttr(s.GetAttributes(), "asyncreq.request.id"), name)
			require.Len(t, s.GetLinks(), 1, name)
			assert.Equal(t, post[0].GetTraceId(), s.GetLinks()[0].GetTraceId(), "%s links to the submit's trace", name)
			assert.Equal(t, post[0].GetSpanId(), s.GetLinks()[0].GetSpanId(), "%s links to the submit's span", name)
			assert.NotEqual(t, post[0].GetTraceId(), s.GetTraceId(), "%s is a trace of its own", name)
		}
		proc := rcv.named("asyncreq.process")[0]
		assert.Equal(t, "succeeded", stringAttr(proc.GetAttributes(), "asyncreq.outcome"))
		assert.Empty(t, rcv.named("GET /metrics"))
	}

	t.Run("flag", func(t *testing.T) {
		*rcv = otlpReceiver{}
		c, err := parseFlags([]string{"-backend", "sqlite", "-sqlite-path", filepath.Join(t.TempDir(), "otlp.db"),
			"-processor", "noop", "-concurrency", "2", "-otlp-endpoint", strings.TrimPrefix(collector.URL, "http://")})
		require.NoError(t, err)
		runTraced(t, c, rcv, "00-"+clientTrace+"-00f067aa0ba902b7-01")
		check(t)
	})
	t.Run("environment", func(t *testing.T) {
		*rcv = otlpReceiver{}
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
		c := config{backend: "sqlite", sqlitePath: filepath.Join(t.TempDir(), "otlp.db"), processor: "noop", concurrency: 2, workTime: time.Hour}
		runTraced(t, c, rcv, "00-"+clientTrace+"-00f067aa0ba902b7-01")
		check(t)
	})
}

func TestOTLPEndpointFlag(t *testing.T) {
	for _, ok := range []string{"", "localhost:4318", "[::1]:4318", "http://collector:4318", "https://collector.example.com/otlp/v1/traces"} {
		_, err := parseFlags([]string{"-otlp-endpoint", ok})
		assert.NoError(t, err, ok)
	}
	for _, bad := range []string{"localhost", "localhost:", "ftp://collector:4318", "http://", "grpc://collector:4317"} {
		_, err := parseFlags([]string{"-otlp-endpoint", bad})
		assert.Error(t, err, bad)
	}
	c, err := parseFlags(nil)
	require.NoError(t, err)
	assert.Empty(t, c.otlpEndpoint, "no tracing by default")
}
