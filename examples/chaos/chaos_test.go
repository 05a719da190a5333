package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestChaos runs a short chaos run on each backend: 6s of a process
// killed every second (and at least each process once), 16 clients. SQLite always runs; PostgreSQL and
// Redis run when their test variable is set. Any request lost, doubled,
// failed or wrong fails it.
func TestChaos(t *testing.T) {
	bin, err := build(t.Context(), t.TempDir())
	require.NoError(t, err)
	for _, b := range []struct{ name, env string }{
		{"sqlite", ""},
		{"postgres", "ASYNCREQ_TEST_POSTGRES"},
		{"redis", "ASYNCREQ_TEST_REDIS"},
	} {
		t.Run(b.name, func(t *testing.T) {
			c := config{
				backend:     b.name,
				duration:    6 * time.Second,
				killEvery:   time.Second,
				minKills:    4,
				clients:     16,
				window:      8,
				lease:       2 * time.Second,
				work:        20 * time.Millisecond,
				concurrency: 8,
				drain:       time.Minute,
				seed:        uint64(time.Now().UnixNano()),
				bin:         bin,
				dir:         t.TempDir(),
			}
			if b.env != "" {
				url := os.Getenv(b.env)
				if url == "" {
					t.Skipf("%s is not set; set it to the server's URL to run the chaos test on %s", b.env, b.name)
				}
				c.postgres, c.redis = url, url
			}
			rep, err := run(t.Context(), c)
			if rep != nil {
				t.Logf("seed %d\n%s", c.seed, rep)
			}
			if err != nil || !rep.OK() {
				logTail(t, filepath.Join(c.dir, "processes.log"), 40)
			}
			require.NoError(t, err)
			require.True(t, rep.OK(), "lost, doubled, failed or wrong requests")
			// The first four kills take each process once.
			require.GreaterOrEqual(t, rep.Killed["api"], 2, "APIs killed")
			require.GreaterOrEqual(t, rep.Killed["worker"], 2, "workers killed")
		})
	}
}

// logTail logs the last n lines of the file at path.
func logTail(t *testing.T, path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("processes' log: %v", err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	t.Logf("last lines of the processes' log:\n%s", strings.Join(lines[max(0, len(lines)-n):], "\n"))
}
