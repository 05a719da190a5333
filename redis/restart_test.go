package redis_test

import (
	"net"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/redis"
)

// server is a redis-server process of a test's own, on a fixed port, with
// the append-only file fsynced on every write: a request it acknowledged
// survives a crash.
type server struct {
	bin, dir string
	port     int
	cmd      *exec.Cmd
	exited   chan struct{}
}

// startServer starts a redis-server of the test's own, skipping t where
// the integration tests are off or there is no redis-server binary.
func startServer(t *testing.T) *server {
	t.Helper()
	redisOptions(t) // skips without ASYNCREQ_TEST_REDIS, like every integration test
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH; the restart test runs a server of its own")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	s := &server{bin: bin, dir: t.TempDir(), port: port}
	s.start(t)
	t.Cleanup(s.kill)
	return s
}

func (s *server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// start runs the server and waits until it answers PING.
func (s *server) start(t *testing.T) {
	t.Helper()
	s.cmd = exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	require.NoError(t, s.cmd.Start())
	exited := make(chan struct{})
	s.exited = exited
	go func(cmd *exec.Cmd) {
		_ = cmd.Wait()
		close(exited)
	}(s.cmd)
	c := goredis.NewClient(&goredis.Options{Addr: s.addr(), DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	require.Eventually(t, func() bool {
		return c.Ping(t.Context()).Err() == nil
	}, 10*time.Second, 20*time.Millisecond, "redis-server on %s did not answer", s.addr())
}

// kill stops the server at once, as a crash does, and waits for it.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// TestRedisRestart runs a submit load against a handler while its Redis
// server is killed and started again. While the server is down the
// handler answers 503 with Retry-After and never 202; it recovers by
// itself once the server is back; and, the server fsyncing its
// append-only file on every write, every request answered 202 before the
// crash is still stored and queued afterwards.
func TestRedisRestart(t *testing.T) {
	srv := startServer(t)
	opt := &goredis.Options{
		Addr:         srv.addr(),
		DialTimeout:  200 * time.Millisecond,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
		PoolTimeout:  time.Second,
		MaxRetries:   1,
	}
	client := goredis.NewClient(opt)
	defer client.Close()
	b, err := redis.New(t.Context(), client, &redis.Options{Prefix: "asyncreqtest:restart:"})
	require.NoError(t, err)
	defer b.Close()
	h, err := asyncreq.NewHandler(b, nil)
	require.NoError(t, err)
	hs := httptest.NewServer(h)
	defer hs.Close()

	tl := runOutage(t, hs.URL, 2*time.Second, srv.kill, func() { srv.start(t) })

	// Nothing answered 202 was lost with the crash: every accepted id is
	// stored and queued on the restarted server.
	requireStoredAndQueued(t, b, tl.accepted)
}
