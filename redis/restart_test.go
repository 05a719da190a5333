package redis_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"sync"
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
	b, err := redis.New(client, &redis.Options{Prefix: "asyncreqtest:restart:"})
	require.NoError(t, err)
	defer b.Close()
	h, err := asyncreq.NewHandler(b, b, nil)
	require.NoError(t, err)
	hs := httptest.NewServer(h)
	defer hs.Close()

	type answer struct {
		status     int
		id         string
		retryAfter string
		at         time.Time
	}
	var (
		mu      sync.Mutex
		answers []answer
		errs    []error
	)
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := http.Post(hs.URL+"/", "application/json", bytes.NewReader([]byte(`{"n":1}`)))
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), at: time.Now()}
				if resp.StatusCode == http.StatusAccepted {
					var doc asyncreq.StatusDocument
					if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
						mu.Lock()
						errs = append(errs, fmt.Errorf("decoding a 202: %w", err))
						mu.Unlock()
					}
					a.id = doc.ID
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
				if a.status != http.StatusAccepted {
					time.Sleep(20 * time.Millisecond) // as a client honouring Retry-After would, only faster
				}
			}
		})
	}

	time.Sleep(500 * time.Millisecond)
	srv.kill()
	killed := time.Now()
	time.Sleep(2 * time.Second)
	srv.start(t)
	restarted := time.Now()
	time.Sleep(2 * time.Second)
	stop()
	wg.Wait()
	require.Empty(t, errs)

	var before, during, after, unavailable int
	var recoveredAt time.Time
	accepted := map[string]bool{}
	for _, a := range answers {
		switch a.status {
		case http.StatusAccepted:
			require.NotEmpty(t, a.id)
			accepted[a.id] = true
			switch {
			case a.at.Before(killed):
				before++
			case a.at.After(restarted):
				after++
				if recoveredAt.IsZero() || a.at.Before(recoveredAt) {
					recoveredAt = a.at
				}
			default:
				during++ // answered while the server was down: must have been stored before the kill
			}
		case http.StatusServiceUnavailable:
			unavailable++
			require.NotEmpty(t, a.retryAfter, "a 503 carries Retry-After")
		default:
			t.Fatalf("unexpected answer %d", a.status)
		}
	}
	t.Logf("%d submits: %d accepted before the kill, %d as it happened, %d after the restart; %d answered 503; recovered %v after the restart",
		len(answers), before, during, after, unavailable, recoveredAt.Sub(restarted))
	require.Positive(t, before)
	require.Positive(t, unavailable, "the handler answers 503 while Redis is down")
	require.Positive(t, after, "the handler recovers by itself")
	require.Less(t, recoveredAt.Sub(restarted), 2*time.Second, "recovery is prompt")

	// Nothing answered 202 was lost with the crash: every accepted id is
	// stored and queued on the restarted server.
	for id := range accepted {
		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err, "accepted request %s is stored after the restart", id)
		require.True(t, rec.Enqueued)
	}
	queued := map[string]bool{}
	for {
		dctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		ls, err := b.DequeueBatch(dctx, 500, time.Minute)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		require.NoError(t, err)
		for _, l := range ls {
			queued[l.ID] = true
		}
	}
	for id := range accepted {
		require.True(t, queued[id], "accepted request %s is queued after the restart", id)
	}
	require.GreaterOrEqual(t, len(queued), len(accepted))
}
