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
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/redis"
)

// proxy is a TCP proxy to the test server that the test can take down (it
// closes its listener and every connection) and bring back on the same
// address, as a Redis restart looks to a client.
type proxy struct {
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{target: target, conns: make(map[net.Conn]struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = in.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // went down meanwhile
				p.mu.Unlock()
				_ = in.Close()
				_ = out.Close()
				return
			}
			p.conns[in], p.conns[out] = struct{}{}, struct{}{}
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
				p.mu.Lock()
				delete(p.conns, dst)
				delete(p.conns, src)
				p.mu.Unlock()
			}
			p.wg.Go(func() { pipe(out, in) })
			p.wg.Go(func() { pipe(in, out) })
		}
	})
}

// down closes the listener and every connection, and waits for the
// proxy's goroutines.
func (p *proxy) down() {
	p.mu.Lock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// up listens again on the same address.
func (p *proxy) up(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	require.NoError(t, err)
	p.serve(ln)
}

// TestRedisOutage runs a submit load against a handler whose Redis goes
// away and comes back. While Redis is unreachable the handler answers 503
// with Retry-After; it never answers 202 for a request that is not stored
// and queued; and it recovers by itself once Redis is back.
func TestRedisOutage(t *testing.T) {
	direct := newClient(t)
	prefix := newPrefix(t, direct)
	px := startProxy(t, redisOptions(t).Addr)

	opt := redisOptions(t)
	opt.Addr = px.addr
	opt.DialTimeout = 200 * time.Millisecond
	opt.ReadTimeout = 500 * time.Millisecond
	opt.WriteTimeout = 500 * time.Millisecond
	opt.PoolTimeout = time.Second
	opt.MaxRetries = 1
	viaProxy := goredis.NewClient(opt)
	defer viaProxy.Close()
	b, err := redis.New(t.Context(), viaProxy, &redis.Options{Prefix: prefix})
	require.NoError(t, err)
	defer b.Close()
	h, err := asyncreq.NewHandler(b, nil)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	tl := runOutage(t, srv.URL, 1500*time.Millisecond, px.down, func() { px.up(t) })

	// No false 202: every accepted id is stored and queued.
	check, err := redis.New(t.Context(), direct, &redis.Options{Prefix: prefix})
	require.NoError(t, err)
	defer check.Close()
	requireStoredAndQueued(t, check, tl.accepted)
}

// runOutage runs a submit load on the handler at url, takes Redis away
// with down half a second in, brings it back with up after outage, goes
// on for two seconds, and checks that the handler answered 503 while Redis
// was away and recovered by itself. It returns what was answered.
func runOutage(t *testing.T, url string, outage time.Duration, down, up func()) tally {
	t.Helper()
	load := startSubmits(t, url)
	time.Sleep(500 * time.Millisecond)
	down()
	downAt := time.Now()
	time.Sleep(outage)
	up()
	upAt := time.Now()
	time.Sleep(2 * time.Second)
	tl := tallyAnswers(t, load.finish(t), downAt, upAt)
	t.Logf("%d submits: %d accepted before Redis went away, %d as it went or came back, %d after; %d answered 503; recovered %v after Redis was back",
		tl.total, tl.before, tl.during, tl.after, tl.unavailable, tl.recoveredAt.Sub(upAt))
	tl.requireRecovered(t, upAt)
	return tl
}

// submitAnswer is the answer to one submit of a submit load.
type submitAnswer struct {
	status     int
	id         string // of a 202
	retryAfter string
	at         time.Time
}

// submitLoad is 8 clients submitting to a handler, each as soon as it has
// its previous answer.
type submitLoad struct {
	stop    context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	answers []submitAnswer
	errs    []error
}

// startSubmits starts a submit load on the handler at url.
func startSubmits(t *testing.T, url string) *submitLoad {
	t.Helper()
	ctx, stop := context.WithCancel(t.Context())
	l := &submitLoad{stop: stop}
	fail := func(err error) {
		l.mu.Lock()
		l.errs = append(l.errs, err)
		l.mu.Unlock()
	}
	for range 8 {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := http.Post(url+"/", "application/json", bytes.NewReader([]byte(`{"n":1}`)))
				if err != nil {
					fail(err)
					return
				}
				a := submitAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), at: time.Now()}
				if resp.StatusCode == http.StatusAccepted {
					var doc asyncreq.StatusDocument
					if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
						fail(fmt.Errorf("decoding a 202: %w", err))
					}
					a.id = doc.ID
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				l.mu.Lock()
				l.answers = append(l.answers, a)
				l.mu.Unlock()
				if a.status != http.StatusAccepted {
					time.Sleep(20 * time.Millisecond) // as a client honouring Retry-After would, only faster
				}
			}
		})
	}
	return l
}

// finish stops the load and returns its answers, failing t if a submit
// got no answer.
func (l *submitLoad) finish(t *testing.T) []submitAnswer {
	t.Helper()
	l.stop()
	l.wg.Wait()
	require.Empty(t, l.errs)
	return l.answers
}

// tally counts the answers of a submit load around an outage of Redis
// from down to up.
type tally struct {
	total, before, during, after, unavailable int
	recoveredAt                               time.Time       // the first 202 after up
	accepted                                  map[string]bool // the ids answered 202
}

// tallyAnswers counts answers, failing t on an answer other than 202, or
// 503 with Retry-After.
func tallyAnswers(t *testing.T, answers []submitAnswer, down, up time.Time) tally {
	t.Helper()
	tl := tally{total: len(answers), accepted: map[string]bool{}}
	for _, a := range answers {
		switch a.status {
		case http.StatusAccepted:
			require.NotEmpty(t, a.id)
			tl.accepted[a.id] = true
			switch {
			case a.at.Before(down):
				tl.before++
			case a.at.After(up):
				tl.after++
				if tl.recoveredAt.IsZero() || a.at.Before(tl.recoveredAt) {
					tl.recoveredAt = a.at
				}
			default:
				tl.during++ // in flight as Redis went away, or answered as it came back
			}
		case http.StatusServiceUnavailable:
			tl.unavailable++
			require.NotEmpty(t, a.retryAfter, "a 503 carries Retry-After")
		default:
			t.Fatalf("unexpected answer %d", a.status)
		}
	}
	return tl
}

// requireRecovered checks that the handler accepted before the outage,
// answered 503 during it, and accepted again promptly after up.
func (tl tally) requireRecovered(t *testing.T, up time.Time) {
	t.Helper()
	require.Positive(t, tl.before)
	require.Positive(t, tl.unavailable, "the handler answers 503 while Redis is down")
	require.Positive(t, tl.after, "the handler recovers by itself")
	require.Less(t, tl.recoveredAt.Sub(up), 2*time.Second, "recovery is prompt")
}

// requireStoredAndQueued checks that every accepted id is stored and
// queued in b, whose queue it drains.
func requireStoredAndQueued(t *testing.T, b *redis.Backend, accepted map[string]bool) {
	t.Helper()
	for id := range accepted {
		rec, err := b.Get(t.Context(), id)
		require.NoError(t, err, "accepted request %s is stored", id)
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
		require.True(t, queued[id], "accepted request %s is queued", id)
	}
	// A 503 may hide an accept whose reply was lost with the connection
	// (the client retries with its Idempotency-Key), so the queue may hold
	// more than was answered 202, never less.
	require.GreaterOrEqual(t, len(queued), len(accepted))
}

// TestWatchSurvivesOutage checks that a Watch whose pub/sub connection
// breaks is released (as after a change), and that watching works again
// once Redis is back.
func TestWatchSurvivesOutage(t *testing.T) {
	direct := newClient(t)
	prefix := newPrefix(t, direct)
	px := startProxy(t, redisOptions(t).Addr)
	opt := redisOptions(t)
	opt.Addr = px.addr
	opt.DialTimeout = 200 * time.Millisecond
	viaProxy := goredis.NewClient(opt)
	defer viaProxy.Close()
	b, err := redis.New(t.Context(), viaProxy, &redis.Options{Prefix: prefix})
	require.NoError(t, err)
	defer b.Close()
	writer, err := redis.New(t.Context(), direct, &redis.Options{Prefix: prefix})
	require.NoError(t, err)
	defer writer.Close()
	ctx := t.Context()

	rec := testRecord("", "")
	_, err = writer.Create(ctx, rec)
	require.NoError(t, err)
	ch, err := b.Watch(ctx, rec.ID)
	require.NoError(t, err)
	px.down()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("a watch was not released when its connection broke")
	}
	px.up(t)

	var ch2 <-chan struct{}
	require.Eventually(t, func() bool {
		ch2, err = b.Watch(ctx, rec.ID)
		return err == nil
	}, 5*time.Second, 50*time.Millisecond, "watching again after the outage")
	select {
	case <-ch2:
		t.Fatal("a new watch was released without a change")
	case <-time.After(100 * time.Millisecond):
	}
	_, err = writer.Update(ctx, rec.ID, func(r *asyncreq.Record) error {
		r.Progress = &asyncreq.Progress{Percent: 50}
		return nil
	})
	require.NoError(t, err)
	select {
	case <-ch2:
	case <-time.After(2 * time.Second):
		t.Fatal("a watch made after the outage missed a change")
	}
}
