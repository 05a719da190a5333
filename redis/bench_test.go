package redis_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/redis"
)

// roundTrips is a client hook that counts the commands and pipelines the
// client sends (pub/sub excluded): the round trips to Redis.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (r *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// report reports the round trips per operation since the last reset.
func (r *roundTrips) report(b *testing.B) {
	b.ReportMetric(float64(r.n.Load())/float64(b.N), "roundtrips/op")
}

// benchBackend returns a Backend for a benchmark on a client with a pool
// large enough for clients concurrent callers; with autopipeline, on
// go-redis's (experimental) AutoPipeliner over that client, which batches
// the commands of concurrent callers into pipelines. The returned counter
// counts the client's round trips. opts, if given, are the Backend's
// options but for its prefix.
func benchBackend(b *testing.B, clients int, autopipeline bool, opts ...redis.Options) (*redis.Backend, *roundTrips) {
	b.Helper()
	opt := redisOptions(b)
	opt.PoolSize = max(opt.PoolSize, clients+8)
	c := goredis.NewClient(opt)
	b.Cleanup(func() { _ = c.Close() })
	rt := new(roundTrips)
	c.AddHook(rt)
	var client goredis.UniversalClient = c
	if autopipeline {
		ap, err := c.AutoPipeline()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ap.Close() })
		client = ap
	}
	var o redis.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	o.Prefix = newPrefix(b, c)
	be, err := redis.New(b.Context(), client, &o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close() })
	return be, rt
}

// BenchmarkAccept measures accepts per second from concurrent callers, on
// a plain client and on an AutoPipeliner. Concurrent accepts share one Lua
// script call (group commit): roundtrips/op shows how many accepts one
// round trip carries, 1 for a lone caller and far below 1 with 32.
func BenchmarkAccept(b *testing.B) {
	for _, bc := range []struct {
		callers      int
		autopipeline bool
	}{{1, false}, {8, false}, {32, false}, {32, true}} {
		name := "client=plain"
		if bc.autopipeline {
			name = "client=autopipeline"
		}
		b.Run(fmt.Sprintf("%s/callers=%d", name, bc.callers), func(b *testing.B) { benchAccept(b, bc.callers, bc.autopipeline) })
	}
}

func benchAccept(b *testing.B, callers int, autopipeline bool) {
	be, rt := benchBackend(b, callers, autopipeline)
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	rt.n.Store(0)
	for range callers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := be.Accept(ctx, testRecord("", asyncreq.NewID())); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	if !autopipeline {
		rt.report(b)
	}
}

// fill accepts n requests outside the timer.
func fill(b *testing.B, be *redis.Backend, n int) {
	b.Helper()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := be.Accept(ctx, testRecord("", "")); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkDrain measures how fast a Worker with a no-op processor works
// off a full queue: per job a claim (Update), the processor, the outcome
// (Update) and the Ack, with batched dequeues.
func BenchmarkDrain(b *testing.B) {
	for _, conc := range []int{32, 128} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) { benchDrain(b, conc) })
	}
}

func benchDrain(b *testing.B, concurrency int) {
	be, rt := benchBackend(b, 2*concurrency, false)
	fill(b, be, b.N)
	var processed atomic.Int64
	all := make(chan struct{})
	p := asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		if processed.Add(1) == int64(b.N) {
			close(all)
		}
		return &asyncreq.Result{}, nil
	})
	w, err := asyncreq.NewWorker(be, p, &asyncreq.WorkerOptions{Concurrency: concurrency})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	rt.n.Store(0)
	if err := w.Start(ctx); err != nil {
		b.Fatal(err)
	}
	<-all
	if err := w.Stop(ctx); err != nil { // waits for the last outcomes and acks
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	rt.report(b)
}

// BenchmarkQueueDrain measures the queue alone: 4 consumers take batches
// of up to 16 leases and ack each on its own goroutine.
func BenchmarkQueueDrain(b *testing.B) {
	be, rt := benchBackend(b, 64, false)
	fill(b, be, b.N)
	rt.n.Store(0)
	asyncreqtest.BenchmarkDrain(b, 16, be, be, be, be)
	rt.report(b)
}

// BenchmarkSubmitToDone measures, over HTTP, the time from a submit to its
// final answer with 32 concurrent clients: each POST says Prefer: wait=10,
// so the handler answers once the Worker (no-op processor) has finished
// the request, woken by the Backend's Watch. Reported as p50 and p99.
func BenchmarkSubmitToDone(b *testing.B) {
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchSubmitToDone(b, clients) })
	}
}

func benchSubmitToDone(b *testing.B, clients int) {
	be, rt := benchBackend(b, 3*clients, false)
	h, err := asyncreq.NewHandler(be, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	p := asyncreq.ProcessorFunc(func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
		return &asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")}, nil
	})
	w, err := asyncreq.NewWorker(be, p, &asyncreq.WorkerOptions{Concurrency: clients})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := w.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := w.Stop(ctx); err != nil {
			b.Error(err)
		}
	}()
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}

	var mu sync.Mutex
	latencies := make([]time.Duration, 0, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	rt.n.Store(0)
	for range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", bytes.NewReader([]byte(`{"n":1}`)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Prefer", "wait=10")
				start := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				d := time.Since(start)
				if resp.StatusCode != http.StatusOK {
					b.Errorf("answer %d, want 200 (done within the wait)", resp.StatusCode)
					return
				}
				mu.Lock()
				latencies = append(latencies, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	msAt := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(msAt(0.50), "p50-ms")
	b.ReportMetric(msAt(0.99), "p99-ms")
	rt.report(b)
}

// BenchmarkPollRunning measures status reads of running requests, as
// clients polling them cause: 32 clients each Get one of 32 running
// records in a loop, with the poll cache off and at its default age.
func BenchmarkPollRunning(b *testing.B) {
	for _, c := range asyncreqtest.PollCacheAges {
		b.Run(c.Name, func(b *testing.B) {
			be, rt := benchBackend(b, 32, false, redis.Options{PollCacheAge: c.Age})
			ids := asyncreqtest.RunningRecords(b, be, 32)
			_, err := be.Get(context.Background(), ids[0]) // subscribes, with the cache on
			require.NoError(b, err)
			for deadline := time.Now().Add(5 * time.Second); c.Age >= 0; time.Sleep(time.Millisecond) {
				if up, _ := redis.PollSubscriptions(be); up {
					break
				}
				require.True(b, time.Now().Before(deadline), "not subscribed in 5s")
			}
			b.ReportAllocs()
			rt.n.Store(0)
			asyncreqtest.BenchmarkPoll(b, be, ids, 32)
			rt.report(b)
		})
	}
}
