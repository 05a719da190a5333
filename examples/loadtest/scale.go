package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/examples/internal/backend"
)

// purgeBatch is the limit the scale mode passes to each Store.Purge call:
// the Worker's default PurgeBatch.
const purgeBatch = 1000

// scaleStore is one store of -mode scale: a backend holding n retained
// finished requests besides what the phases add.
type scaleStore struct {
	n     int
	label string
	cfg   backend.Config
	bk    *backend.Backend
	b     asyncreq.Backend
	h     *asyncreq.Handler
	drop  func() // removes what the store left in its engine

	tmpl           *asyncreq.Record // a finished request, as the worker left it
	status, result func(id string) string
	ids            []string // the finished requests it holds
	fill           time.Duration
}

// scaleFigures are what one round measured on one store.
type scaleFigures struct {
	n                int
	mixed            mixedFigures
	pollE2E          stats
	statusGET        stats
	resultGET        stats
	gcP99            time.Duration
	purge            *purgeFigures
	heapPerRetained  float64
	fill             time.Duration
	mixedVsBare      float64
	pollE2EVsBareP50 float64
}

// runScale measures how the cost of the workloads grows with the finished
// requests a store retains. It fills one store per -retained count (a
// store of 0 is opened anew each round, the others are filled once), then
// measures each in turn, -rounds times: the mixed drain, poll-e2e, GETs of
// the status and of the result of retained requests, and the purge of
// -expired expired requests with the accepts beside it.
func runScale(ctx context.Context, o options, bare baseline) error {
	run := strconv.FormatInt(time.Now().Unix()%1_000_000, 10)
	stores := map[int]*scaleStore{}
	defer func() {
		for _, st := range stores {
			st.close()
		}
	}()
	var all []scaleFigures
	for round := 1; round <= o.rounds; round++ {
		for _, n := range o.retained {
			st := stores[n]
			if st == nil || n == 0 {
				if st != nil {
					st.close()
				}
				label := fmt.Sprintf("s%s_%d_%d", run, n, round)
				var err error
				if st, err = openScaleStore(ctx, o, label, n); err != nil {
					return err
				}
				stores[n] = st
			}
			fmt.Printf("\nscale     round %d of %d: %d retained requests (%s)\n", round, o.rounds, n, o.bk.Name)
			om := o
			if o.cpuprofile != "" {
				om.cpuprofile = fmt.Sprintf("%s.%d.%d", o.cpuprofile, n, round)
			}
			fig, err := measureScale(ctx, om, st, bare)
			if err != nil {
				return fmt.Errorf("round %d, %d retained: %w", round, n, err)
			}
			all = append(all, fig)
		}
	}
	printScale(o, bare, all)
	return nil
}

// openScaleStore opens a store of its own on o's engine (a SQLite file, a
// PostgreSQL schema, a Redis key prefix, NATS buckets), makes its template
// request and fills it with n retained ones.
func openScaleStore(ctx context.Context, o options, label string, n int) (*scaleStore, error) {
	st := &scaleStore{n: n, label: label, cfg: o.bk, drop: func() {}}
	switch o.bk.Name {
	case "sqlite":
		st.cfg.SQLitePath = o.bk.SQLitePath + "." + label
		st.drop = func() {
			for _, suffix := range []string{"", "-wal", "-shm"} {
				_ = os.Remove(st.cfg.SQLitePath + suffix)
			}
		}
	case "postgres":
		st.cfg.Schema = "asyncreq_" + label
		if st.cfg.PostgresConns == 0 {
			// Two stores are open at once on one server, whose default
			// max_connections (100) two pools of 2×Concurrency+8 exceed.
			st.cfg.PostgresConns = 40
		}
		st.drop = func() { dropSchema(st.cfg.Postgres, st.cfg.Schema) }
	case "redis":
		st.cfg.RedisPrefix = "asyncreq-" + label + ":"
		st.drop = func() { dropKeys(st.cfg.Redis, st.cfg.RedisPrefix) }
	case "nats":
		// The bucket and the stream examples/internal/backend names after
		// the endpoint.
		st.drop = func() { dropNATS(st.cfg.NATS, "asyncreq_scale_"+label) }
	}
	bk, err := backend.Open(ctx, st.cfg)
	if err != nil {
		return nil, err
	}
	st.bk = bk
	if st.b, err = bk.Endpoint(ctx, "scale_"+label); err == nil {
		st.h, err = asyncreq.NewHandler(st.b, nil)
	}
	if err == nil {
		err = st.makeTemplate(ctx)
	}
	if err == nil && n > 0 {
		start := time.Now()
		var ids []string
		ids, err = fillStore(ctx, st, n, o.fillConc, false)
		st.ids = append(st.ids, ids...)
		st.fill = time.Since(start)
		if err == nil {
			fmt.Printf("fill      %d retained requests in %s (%.0f/s)\n", n, st.fill.Round(time.Millisecond), float64(n)/st.fill.Seconds())
		}
	}
	if err != nil {
		st.close()
		return nil, err
	}
	return st, nil
}

func (st *scaleStore) close() {
	st.bk.Close()
	st.drop()
}

// makeTemplate submits one request over HTTP, has a worker run it and
// reads back its record: what a finished request of the load looks like in
// this store, to copy when filling. It also learns the form of the status
// and result URLs.
func (st *scaleStore) makeTemplate(ctx context.Context) error {
	w, err := asyncreq.NewWorker(st.b, noop(), &asyncreq.WorkerOptions{Concurrency: 1})
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = w.Stop(stopCtx)
	}()
	srv, u, err := serve(st.h)
	if err != nil {
		return err
	}
	defer srv.Close()
	c := newClient(1)
	defer c.CloseIdleConnections()
	resp, _, err := post(ctx, c, u, nil, http.StatusAccepted)
	if err != nil {
		return err
	}
	status, err := resp.Location()
	if err != nil {
		return err
	}
	id := idOf(status)
	var result *url.URL
	for deadline := time.Now().Add(resultWait); result == nil; {
		if time.Now().After(deadline) {
			return fmt.Errorf("the template request %s is not done after %s", id, resultWait)
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return err
		}
		p, err := pollStatus(ctx, c, status)
		if err != nil {
			return err
		}
		result = p.result
	}
	if st.tmpl, err = st.b.Get(ctx, id); err != nil {
		return err
	}
	if !st.tmpl.State.Final() || st.tmpl.ExpiresAt.IsZero() {
		return fmt.Errorf("the template request %s is %s, expiring at %v", id, st.tmpl.State, st.tmpl.ExpiresAt)
	}
	statusPath, resultPath := status.Path, result.Path
	st.status = func(x string) string { return strings.Replace(statusPath, id, x, 1) }
	st.result = func(x string) string { return strings.Replace(resultPath, id, x, 1) }
	st.ids = append(st.ids, id)
	return nil
}

// idOf returns the request id in a status URL (.../ID/status).
func idOf(status *url.URL) string { return path.Base(path.Dir(status.Path)) }

// fillStore creates n copies of the template with ids of their own,
// through the Store's Create from conc goroutines, and returns their ids.
// They expire after the template's Retention, or, if expired, an hour ago
// (a nanosecond apart, in the order made).
func fillStore(ctx context.Context, st *scaleStore, n, conc int, expired bool) ([]string, error) {
	ids := make([]string, n)
	var next atomic.Int64
	errs := make([]error, conc)
	var wg sync.WaitGroup
	for g := range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				rec := st.tmpl.Clone()
				rec.ID = asyncreq.NewID()
				now := time.Now()
				rec.CreatedAt, rec.UpdatedAt = now, now
				rec.ExpiresAt = now.Add(rec.Retention)
				if expired {
					rec.ExpiresAt = now.Add(-time.Hour + time.Duration(i))
				}
				if _, err := st.b.Create(ctx, rec); err != nil {
					errs[g] = fmt.Errorf("fill: create %d of %d: %w", i+1, n, err)
					return
				}
				ids[i] = rec.ID
				if (i+1)%100_000 == 0 {
					fmt.Fprintf(os.Stderr, "fill      %d of %d\n", i+1, n)
				}
			}
		})
	}
	wg.Wait()
	return ids, errors.Join(append(errs, ctx.Err())...)
}

// measureScale runs the phases of one round on st.
func measureScale(ctx context.Context, o options, st *scaleStore, bare baseline) (scaleFigures, error) {
	fig := scaleFigures{n: st.n, fill: st.fill}
	if o.bk.Name == "memory" {
		fig.heapPerRetained = heapPerRetained(st)
	}
	o.pre = st
	var mu sync.Mutex
	var added []string
	o.accepted = func(u *url.URL) {
		mu.Lock()
		added = append(added, idOf(u))
		mu.Unlock()
	}
	gc0 := gcPauses()
	var err error
	if fig.mixed, err = mixed(ctx, o, bare); err != nil {
		return fig, err
	}
	fig.mixedVsBare = fig.mixed.rate / bare.rate()
	o.accepted = nil
	st.ids = append(st.ids, added...)
	if fig.pollE2E, err = pollE2E(ctx, o, bare); err != nil {
		return fig, err
	}
	fig.pollE2EVsBareP50 = float64(fig.pollE2E.quantile(0.5)) / float64(bare.quantile(0.5))
	fig.gcP99 = gcPauses().since(gc0).quantile(0.99)
	if fig.statusGET, err = getRetained(ctx, o, st, st.status, http.StatusSeeOther); err != nil {
		return fig, fmt.Errorf("status GET: %w", err)
	}
	fmt.Printf("get       status of retained requests:  %s\n", fig.statusGET)
	if fig.resultGET, err = getRetained(ctx, o, st, st.result, http.StatusOK); err != nil {
		return fig, fmt.Errorf("result GET: %w", err)
	}
	fmt.Printf("get       result of retained requests:  %s\n", fig.resultGET)
	if o.expired > 0 {
		if fig.purge, err = purgePhase(ctx, o, st); err != nil {
			return fig, fmt.Errorf("purge: %w", err)
		}
	}
	return fig, nil
}

// heapPerRetained is the live heap of this process per retained request,
// the load program's own list of their ids left out.
func heapPerRetained(st *scaleStore) float64 {
	if st.n == 0 {
		return 0
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	ids := uint64(cap(st.ids)) * 16
	for _, id := range st.ids {
		ids += uint64(roundAlloc(len(id)))
	}
	return float64(ms.HeapAlloc-min(ids, ms.HeapAlloc)) / float64(st.n)
}

// roundAlloc is the size class the allocator gives a small string.
func roundAlloc(n int) int { return (n + 15) / 16 * 16 }

// getRetained GETs path(id) of random requests the store holds, from
// o.concurrency clients for o.duration, expecting want.
func getRetained(ctx context.Context, o options, st *scaleStore, path func(string) string, want int) (stats, error) {
	srv, u, err := serve(st.h)
	if err != nil {
		return stats{}, err
	}
	defer srv.Close()
	base := strings.TrimSuffix(u, "/")
	c := newClient(o.concurrency)
	defer c.CloseIdleConnections()
	return timed(ctx, o, nil, func() (time.Duration, error) {
		id := st.ids[rand.IntN(len(st.ids))]
		resp, _, d, err := do(ctx, c, http.MethodGet, base+path(id), nil, nil, 0)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != want {
			return 0, fmt.Errorf("GET %s answered %s, want %d", path(id), resp.Status, want)
		}
		return d, nil
	})
}

// purgeFigures are what the purge phase measured.
type purgeFigures struct {
	selfExpiring bool          // the engine expires records itself: Purge does nothing
	purged       int           // records the purge deleted
	total        time.Duration // the purge of all of them, batch after batch
	batches      stats         // each Purge call
	without      stats         // accepts with no purge running
	during       stats         // accepts while the purge ran
}

// purgePhase fills st with o.expired expired requests and purges them
// batch after batch as a Worker does, while o.concurrency clients submit;
// the accepts of a window before the purge, of o.duration, are the
// baseline.
func purgePhase(ctx context.Context, o options, st *scaleStore) (*purgeFigures, error) {
	pf := &purgeFigures{}
	// A Store whose engine expires records itself purges nothing: find
	// out with one record.
	if _, err := fillStore(ctx, st, 1, 1, true); err != nil {
		return nil, err
	}
	if n, err := st.b.Purge(ctx, time.Now(), 1); err != nil {
		return nil, err
	} else if n == 0 {
		pf.selfExpiring = true
		fmt.Printf("purge     %s expires records itself (Purge deleted nothing): no purge phase\n", o.bk.Name)
		return pf, nil
	}
	start := time.Now()
	if _, err := fillStore(ctx, st, o.expired, o.fillConc, true); err != nil {
		return nil, err
	}
	fmt.Printf("fill      %d expired requests in %s\n", o.expired, time.Since(start).Round(time.Millisecond))

	srv, u, err := serve(st.h)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	c := newClient(o.concurrency)
	defer c.CloseIdleConnections()

	// Without a purge: accepts for o.duration after a warm-up second.
	warm := time.Now().Add(time.Second)
	end := warm.Add(o.duration)
	lat, err := acceptsWhile(ctx, c, u, o.concurrency, func(t time.Time) (keep, stop bool) {
		return t.After(warm), t.After(end)
	})
	if err != nil {
		return nil, err
	}
	pf.without = newStats(lat, o.duration)

	// With the purge: it starts after a warm-up second of accepts and the
	// accepts sent while it runs are kept.
	var (
		mu          sync.Mutex
		from, until time.Time // the purge's run; until is zero while it runs
		batchLat    []time.Duration
	)
	purgeErr := make(chan error, 1)
	go func() {
		if err := sleep(ctx, time.Second); err != nil {
			purgeErr <- err
			return
		}
		mu.Lock()
		from = time.Now()
		mu.Unlock()
		var err error
		for {
			t := time.Now()
			var n int
			if n, err = st.b.Purge(ctx, t, purgeBatch); err != nil {
				break
			}
			batchLat = append(batchLat, time.Since(t))
			pf.purged += n
			if n < purgeBatch {
				break
			}
		}
		mu.Lock()
		until = time.Now()
		mu.Unlock()
		purgeErr <- err
	}()
	lat, err = acceptsWhile(ctx, c, u, o.concurrency, func(t time.Time) (keep, stop bool) {
		mu.Lock()
		defer mu.Unlock()
		return !from.IsZero() && t.After(from) && (until.IsZero() || t.Before(until)), !until.IsZero()
	})
	if perr := <-purgeErr; perr != nil {
		return nil, perr
	}
	if err != nil {
		return nil, err
	}
	pf.total = until.Sub(from)
	pf.during = newStats(lat, pf.total)
	pf.batches = newStats([][]time.Duration{batchLat}, pf.total)
	// The accepts above were left pending, with no worker: settle them,
	// so that the store's next phase, the next round's mixed drain, starts
	// with nothing queued, as the first round's did (a backlog of the
	// phase's 20,000 and more accepts ran before that drain's requests).
	settled, err := settleLeftover(ctx, st)
	if err != nil {
		return nil, err
	}
	fmt.Printf("purge     settled the %d requests accepted in this phase in %s\n", settled.n, settled.took.Round(time.Millisecond))
	fmt.Printf("purge     %d expired in %s, %d batches of up to %d: %s\n", pf.purged, pf.total.Round(time.Millisecond), pf.batches.n, purgeBatch, pf.batches)
	fmt.Printf("purge     accepts without a purge: %s\n", pf.without)
	fmt.Printf("purge     accepts during the purge: %s\n", pf.during)
	return pf, nil
}

// acceptsWhile submits from conc clients until window says stop, and
// returns the latencies of the submits sent when window said keep.
func acceptsWhile(ctx context.Context, c *http.Client, u string, conc int, window func(time.Time) (keep, stop bool)) ([][]time.Duration, error) {
	return clients(conc, func() (time.Duration, bool, error) {
		now := time.Now()
		keep, stop := window(now)
		if stop {
			return 0, false, errStop
		}
		_, d, err := post(ctx, c, u, nil, http.StatusAccepted)
		return d, keep, err
	})
}

// pauses is a snapshot of the Go runtime's histogram of GC pauses.
type pauses struct{ h *metrics.Float64Histogram }

const gcPauseMetric = "/sched/pauses/total/gc:seconds"

func gcPauses() pauses {
	s := []metrics.Sample{{Name: gcPauseMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return pauses{}
	}
	return pauses{s[0].Value.Float64Histogram()}
}

// since returns the pauses after the snapshot p0.
func (p pauses) since(p0 pauses) pauses {
	if p.h == nil || p0.h == nil || len(p.h.Counts) != len(p0.h.Counts) {
		return pauses{}
	}
	d := &metrics.Float64Histogram{Buckets: p.h.Buckets, Counts: make([]uint64, len(p.h.Counts))}
	for i := range d.Counts {
		d.Counts[i] = p.h.Counts[i] - p0.h.Counts[i]
	}
	return pauses{d}
}

// quantile returns the upper bound of the bucket holding quantile q.
func (p pauses) quantile(q float64) time.Duration {
	if p.h == nil {
		return 0
	}
	var total uint64
	for _, c := range p.h.Counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var seen uint64
	for i, c := range p.h.Counts {
		seen += c
		if seen > want {
			return time.Duration(p.h.Buckets[i+1] * float64(time.Second))
		}
	}
	return time.Duration(p.h.Buckets[len(p.h.Buckets)-1] * float64(time.Second))
}

// printScale prints the figures of every round as a table, in the order
// measured.
func printScale(o options, bare baseline, all []scaleFigures) {
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64)
	}
	fmt.Printf("\nscale     %s, bare handler %.0f req/s, p50 %s ms; mixed: %d requests, %d clients, %d pollers; poll-e2e and GETs: %d clients for %s\n",
		o.bk.Name, bare.rate(), ms(bare.quantile(0.5)), o.n, o.concurrency, o.pollers, o.concurrency, o.duration)
	fmt.Println("| retained | mixed jobs/s (× bare) | poll-e2e p50 / p99 ms | status GET p50 / p99 ms | result GET p50 / p99 ms | purge batch p50 / max ms | purge all | accept p99 without / during purge ms | GC pause p99 |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, f := range all {
		purge := "| – | – | – "
		if p := f.purge; p != nil && p.selfExpiring {
			purge = "| engine expires | – | – "
		} else if p != nil {
			purge = fmt.Sprintf("| %s / %s | %d in %s | %s / %s (%.2f×) ",
				ms(p.batches.quantile(0.5)), ms(p.batches.quantile(1)), p.purged, p.total.Round(time.Millisecond),
				ms(p.without.quantile(0.99)), ms(p.during.quantile(0.99)),
				float64(p.during.quantile(0.99))/float64(p.without.quantile(0.99)))
		}
		fmt.Printf("| %d | %.0f (%.2f) | %s / %s | %s / %s | %s / %s %s| %s |\n", f.n,
			f.mixed.rate, f.mixedVsBare,
			ms(f.pollE2E.quantile(0.5)), ms(f.pollE2E.quantile(0.99)),
			ms(f.statusGET.quantile(0.5)), ms(f.statusGET.quantile(0.99)),
			ms(f.resultGET.quantile(0.5)), ms(f.resultGET.quantile(0.99)),
			purge, f.gcP99)
	}
	for _, f := range all {
		if f.heapPerRetained > 0 {
			fmt.Printf("memory    %d retained: live heap %.0f B per retained request (all of this process's heap, less the load program's id list)\n", f.n, f.heapPerRetained)
		}
	}
}

// parseCounts parses a comma-separated list of counts such as
// "0,100000,1e6" (k and M are accepted as suffixes: 100k, 1M).
func parseCounts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		mult := 1
		switch {
		case strings.HasSuffix(f, "k"):
			mult, f = 1000, strings.TrimSuffix(f, "k")
		case strings.HasSuffix(f, "M"):
			mult, f = 1_000_000, strings.TrimSuffix(f, "M")
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%q is not a count", f)
		}
		out = append(out, v*mult)
	}
	return out, nil
}

// dropSchema drops a PostgreSQL schema the scale mode made.
func dropSchema(dsn, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: drop schema:", err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: drop schema:", err)
	}
}

// dropNATS deletes the key-value bucket and the stream named name.
func dropNATS(u, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := natsgo.Connect(u)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: drop bucket:", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err == nil {
		err = errors.Join(js.DeleteKeyValue(ctx, name), js.DeleteStream(ctx, name))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: drop bucket and stream:", err)
	}
}

// dropKeys deletes the Redis keys that start with prefix.
func dropKeys(u, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	opt, err := goredis.ParseURL(u)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: drop keys:", err)
		return
	}
	c := goredis.NewClient(opt)
	defer c.Close()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	flush := func() {
		if len(batch) > 0 {
			if err := c.Unlink(ctx, batch...).Err(); err != nil {
				fmt.Fprintln(os.Stderr, "loadtest: drop keys:", err)
			}
			batch = batch[:0]
		}
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			flush()
		}
	}
	flush()
	if err := iter.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: drop keys:", err)
	}
}

// leftover is what settleLeftover did.
type leftover struct {
	n    int64
	took time.Duration
}

// settleLeftover runs a worker on the store until none of its requests is
// pending or running, and reports how many it found unfinished.
func settleLeftover(ctx context.Context, st *scaleStore) (leftover, error) {
	start := time.Now()
	counts, err := asyncreq.CountStates(ctx, st.b)
	if err != nil {
		return leftover{}, err
	}
	left := leftover{n: counts.Pending + counts.Running}
	if left.n == 0 {
		return left, nil
	}
	w, err := asyncreq.NewWorker(st.b, noop(), &asyncreq.WorkerOptions{Concurrency: 100})
	if err != nil {
		return left, err
	}
	if err := w.Start(ctx); err != nil {
		return left, err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = w.Stop(stopCtx)
	}()
	deadline := time.Now().Add(10 * time.Minute)
	for counts.Pending+counts.Running > 0 {
		if time.Now().After(deadline) {
			return left, fmt.Errorf("%d requests still unfinished after 10 minutes", counts.Pending+counts.Running)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return left, err
		}
		if counts, err = asyncreq.CountStates(ctx, st.b); err != nil {
			return left, err
		}
	}
	left.took = time.Since(start)
	return left, nil
}
