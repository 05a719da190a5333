package main

import (
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetrics runs one request through /jobs on SQLite and reads the
// Prometheus exposition at /metrics.
func TestMetrics(t *testing.T) {
	c := config{backend: "sqlite", sqlitePath: filepath.Join(t.TempDir(), "metrics.db"), processor: "noop", concurrency: 2, workTime: time.Hour}
	resp, body := submitAndWait(t, c)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	metricsURL := resp.Request.URL.Scheme + "://" + resp.Request.URL.Host + "/metrics"

	// The answer can be read before the worker's hook has run: the
	// outcome is written first.
	var text string
	require.Eventually(t, func() bool {
		r, err := http.Get(metricsURL)
		if err != nil {
			return false
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		text = string(b)
		return regexp.MustCompile(`(?m)^asyncreq_attempts_total\{[^}]*outcome="succeeded"`).MatchString(text)
	}, 5*time.Second, 10*time.Millisecond)

	for _, series := range []string{
		`(?m)^asyncreq_requests_accepted_total\{[^}]*asyncreq_queue="jobs"[^}]*\} 1$`,
		`(?m)^asyncreq_attempts_total\{[^}]*asyncreq_outcome="succeeded"[^}]*asyncreq_queue="jobs"[^}]*\} 1$`,
		`(?m)^asyncreq_attempt_duration_seconds_bucket\{[^}]*asyncreq_queue="jobs"[^}]*le="\+Inf"[^}]*\} 1$`,
		`(?m)^asyncreq_queue_wait_seconds_count\{[^}]*asyncreq_queue="jobs"[^}]*\} 1$`,
		`(?m)^asyncreq_request_duration_seconds_count\{[^}]*asyncreq_queue="jobs"[^}]*\} 1$`,
		`(?m)^asyncreq_queue_depth\{[^}]*asyncreq_queue="jobs"[^}]*\} 0$`,
		`(?m)^asyncreq_queue_oldest_age_seconds\{[^}]*asyncreq_queue="jobs"[^}]*\} 0$`,
	} {
		assert.Regexp(t, series, text)
	}
	// The process's own metrics, which the load program reads the
	// server's CPU time from.
	assert.Regexp(t, `(?m)^go_goroutines \d+$`, text)
	if runtime.GOOS == "linux" {
		assert.Regexp(t, `(?m)^process_cpu_seconds_total \d`, text)
	}
	assert.NotRegexp(t, `asyncreq_requests_accepted_total\{[^}]*asyncreq_queue="reports"`, text, "nothing was submitted to /reports")
}
