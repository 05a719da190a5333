package main

import (
	"bufio"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCPU(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       time.Duration
		err        string
	}{
		{"found", "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.34\nprocess_open_fds 9\n", 12340 * time.Millisecond, ""},
		{"exponent", "process_cpu_seconds_total 1.5e+01\n", 15 * time.Second, ""},
		{"a longer name is another series", "process_cpu_seconds_total_extra 3\nprocess_cpu_seconds_total 2\n", 2 * time.Second, ""},
		{"missing", "go_goroutines 7\n", 0, errNoCPU.Error()},
		{"not a number", "process_cpu_seconds_total abc\n", 0, "not a number"},
		{"negative", "process_cpu_seconds_total -1\n", 0, "not a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCPU(bufio.NewScanner(strings.NewReader(tc.text)))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestCPUMeter(t *testing.T) {
	cpu := 1.0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("process_cpu_seconds_total " + strconv.FormatFloat(cpu, 'f', -1, 64) + "\n"))
	}))
	defer srv.Close()

	m, err := newCPUMeter(srv.URL + "/jobs?x=1")
	require.NoError(t, err)
	assert.Equal(t, srv.URL+"/metrics", m.url)
	w := m.begin(t.Context())
	cpu = 1.25
	assert.Equal(t, 250*time.Millisecond, w.end(t.Context()))

	// A server that went back (restarted) or stopped answering gives no
	// figure, rather than a wrong one.
	w = m.begin(t.Context())
	cpu = 0.5
	assert.Zero(t, w.end(t.Context()))
	w = m.begin(t.Context())
	srv.Close()
	assert.Zero(t, w.end(t.Context()))

	var none *cpuMeter
	assert.Zero(t, none.begin(t.Context()).end(t.Context()), "no meter, no figure")

	_, err = newCPUMeter("/jobs")
	assert.Error(t, err, "a relative URL names no server")
}

func TestTimedCutShortDoesNotWaitForTheMeter(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("process_cpu_seconds_total 1\n"))
	}))
	defer srv.Close()
	m, err := newCPUMeter(srv.URL)
	require.NoError(t, err)
	o := short("accept")
	o.duration = time.Minute
	start := time.Now()
	_, err = timed(t.Context(), o, m, func() (time.Duration, error) { return 0, errors.New("refused") })
	require.ErrorContains(t, err, "refused")
	assert.Less(t, time.Since(start), 10*time.Second, "a failed run returns without waiting out its window")
}
