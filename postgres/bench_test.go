package postgres_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/postgres"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// BenchmarkAccept measures accepts per second from concurrent clients,
// each waiting for its own commit, with the server's synchronous_commit
// setting as it is (on by default). With a durable commit taking a few
// milliseconds, a client makes at most one accept per commit, so the
// figure grows with the number of clients while group commit keeps the
// number of transactions down.
func BenchmarkAccept(b *testing.B) {
	for _, clients := range []int{32, 128} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			s, pool := newStore(b, nil)
			var syncCommit string
			if err := pool.QueryRow(b.Context(), "SHOW synchronous_commit").Scan(&syncCommit); err != nil {
				b.Fatal(err)
			}
			if syncCommit != "on" {
				b.Logf("synchronous_commit is %s, not on", syncCommit)
			}
			body := []byte(`{"image":"cat.png","width":640}`)
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for range clients {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := s.Accept(ctx, testRecord("", "", body)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkDrain measures how fast the queue empties with a no-op
// processor: 4 consumers (as 4 worker processes would) each take batches
// of up to 16 leases with DequeueBatch and ack every job on its own
// goroutine, as a Worker does.
func BenchmarkDrain(b *testing.B) {
	s, _ := newStore(b, nil)
	ctx := context.Background()
	// Fill the queue outside the timer.
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 64 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := s.Accept(ctx, testRecord("", "", nil)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	asyncreqtest.BenchmarkDrain(b, 16, s, s, s, s)
}

// BenchmarkEndToEnd measures submit-to-done latency through the HTTP
// handler with a no-op worker: 32 clients POST with Prefer: wait=10, so
// each answer is the final 200 and its latency is the time from submit to
// done. It reports the p50 and p99 in milliseconds and the rate.
func BenchmarkEndToEnd(b *testing.B) {
	pool := newPool(b, 40)
	s := newStoreOn(b, pool, newSchema(b, pool), nil)
	h, err := asyncreq.NewHandler(s, nil)
	require.NoError(b, err)
	w, err := asyncreq.NewWorker(s, asyncreq.ProcessorFunc(
		func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			return &asyncreq.Result{ContentType: "text/plain", Body: []byte("ok")}, nil
		}), &asyncreq.WorkerOptions{Concurrency: 32})
	require.NoError(b, err)
	require.NoError(b, w.Start(context.Background()))
	defer func() { require.NoError(b, w.Stop(context.Background())) }()
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()

	const clients = 32
	lat := make([][]time.Duration, clients)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for c := range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader("ping"))
				req.Header.Set("Prefer", "wait=10")
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d, want 200", resp.StatusCode)
					return
				}
				lat[c] = append(lat[c], time.Since(start))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(all[len(all)/2]), "p50-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-ms")
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkWorkerDrain measures how fast a Worker (Concurrency 64) with a
// no-op processor finishes accepted requests: per request a claim Update,
// the outcome Update and an Ack, through the group commits.
func BenchmarkWorkerDrain(b *testing.B) {
	pool := newPool(b, 40)
	s := newStoreOn(b, pool, newSchema(b, pool), nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 64 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := s.Accept(ctx, testRecord("", "", nil)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var processed atomic.Int64
	w, err := asyncreq.NewWorker(s, asyncreq.ProcessorFunc(
		func(context.Context, *asyncreq.Request) (*asyncreq.Result, error) {
			processed.Add(1)
			return &asyncreq.Result{}, nil
		}), &asyncreq.WorkerOptions{Concurrency: 64})
	require.NoError(b, err)
	b.ResetTimer()
	require.NoError(b, w.Start(ctx))
	records := pgx.Identifier{s.Schema(), "records"}.Sanitize()
	for {
		var done int64
		require.NoError(b, pool.QueryRow(ctx, "SELECT count(*) FROM "+records+" WHERE state = 'succeeded'").Scan(&done))
		if done == int64(b.N) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.StopTimer()
	require.NoError(b, w.Stop(ctx))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkPollRunning measures status reads of running requests, as
// clients polling them cause: 32 clients each Get one of 32 running
// records in a loop, with the poll cache off and at its default age.
func BenchmarkPollRunning(b *testing.B) {
	for _, c := range asyncreqtest.PollCacheAges {
		b.Run(c.Name, func(b *testing.B) {
			pool := newPool(b, 32)
			s := newStoreOn(b, pool, newSchema(b, pool), &postgres.Options{PollCacheAge: c.Age})
			asyncreqtest.BenchmarkPoll(b, s, asyncreqtest.RunningRecords(b, s, 32), 32)
		})
	}
}
