package nats_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/asyncreqtest"
	"github.com/asyncreq/asyncreq/nats"
)

// clusterTests skips t unless ASYNCREQ_TEST_NATS_CLUSTER is set, and
// returns its value: the comma-separated client URLs of a JetStream
// cluster of three servers, which switch the cluster tests on.
func clusterTests(t *testing.T) string {
	t.Helper()
	urls := os.Getenv("ASYNCREQ_TEST_NATS_CLUSTER")
	if urls == "" {
		t.Skip("ASYNCREQ_TEST_NATS_CLUSTER is not set; set it to the comma-separated URLs of a three-server JetStream cluster " +
			"(.ci/nats-cluster starts one and prints them) to run the NATS cluster tests")
	}
	return urls
}

// connectURLs returns a JetStream context on the servers urls lists.
func connectURLs(t *testing.T, urls, name string) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(urls, natsgo.Name(name),
		natsgo.MaxReconnects(-1), natsgo.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err, "connect to %s", urls)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// TestClusterConformance runs the asyncreqtest kit on a backend whose
// bucket and stream have three replicas.
func TestClusterConformance(t *testing.T) {
	urls := clusterTests(t)
	if v := connectURLs(t, urls, "asyncreq-cluster-version").Conn().ConnectedServerVersion(); !replicatesCompareAndSet(t, v) {
		t.Skipf("the cluster at %s runs nats-server %s, which does not keep a replicated key's compare-and-set "+
			"(concurrent updates are lost); run 2.11 or later (.ci/nats-cluster does)", urls, v)
	}
	asyncreqtest.TestBackend(t, func(t *testing.T) asyncreq.Backend {
		opts := testOptions()
		opts.Replicas = 3
		return newBackend(t, connectURLs(t, urls, "asyncreq-cluster-kit"), opts)
	}, kitOptions)
}

// TestClusterReadsGoToTheLeader checks that a backend of three replicas
// reads its records and idempotency keys from the leader of the bucket's
// stream, not with a direct get, which any replica answers, one that is
// behind with an older revision.
func TestClusterReadsGoToTheLeader(t *testing.T) {
	js := connectURLs(t, clusterTests(t), "asyncreq-cluster-reads")
	opts := testOptions()
	opts.Replicas = 3
	b := newBackend(t, js, opts)
	ctx := t.Context()

	// A client subscribed to the API subjects sees every request made on
	// them, the backend's own included.
	nc := js.Conn()
	direct, err := nc.SubscribeSync("$JS.API.DIRECT.GET.KV_" + opts.Bucket + ".>")
	require.NoError(t, err)
	defer direct.Unsubscribe()
	directJSON, err := nc.SubscribeSync("$JS.API.DIRECT.GET.KV_" + opts.Bucket)
	require.NoError(t, err)
	defer directJSON.Unsubscribe()
	leader, err := nc.SubscribeSync("$JS.API.STREAM.MSG.GET.KV_" + opts.Bucket)
	require.NoError(t, err)
	defer leader.Unsubscribe()
	require.NoError(t, nc.Flush())

	now := time.Now()
	rec := &asyncreq.Record{
		ID: asyncreq.NewID(), Owner: "alice", IdempotencyKey: "k", BodyHash: "h",
		Body:  make([]byte, 200<<10), // chunked: its blobs are read too
		State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now,
		Retention: time.Hour, TombstoneTTL: time.Hour,
	}
	_, err = b.Create(ctx, rec)
	require.NoError(t, err)
	_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error { r.Enqueued = true; return nil })
	require.NoError(t, err)
	got, err := b.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.True(t, got.Enqueued)
	require.Len(t, got.Body, len(rec.Body))
	dup, err := b.Create(ctx, &asyncreq.Record{
		ID: asyncreq.NewID(), Owner: "alice", IdempotencyKey: "k", BodyHash: "h",
		State: asyncreq.StatePending, CreatedAt: now, UpdatedAt: now,
	})
	require.ErrorIs(t, err, asyncreq.ErrDuplicate)
	require.Equal(t, rec.ID, dup.ID)
	require.NoError(t, nc.Flush())

	// Body chunks are written once and never changed, so any replica
	// that has one has the right bytes: they may be read directly.
	chunks := "$JS.API.DIRECT.GET.KV_" + opts.Bucket + ".$KV." + opts.Bucket + ".b."
	for _, s := range []*natsgo.Subscription{direct, directJSON} {
		for {
			m, err := s.NextMsg(100 * time.Millisecond)
			if err != nil {
				break
			}
			require.True(t, strings.HasPrefix(m.Subject, chunks), "a direct get of something other than a body chunk: %s %s", m.Subject, m.Data)
		}
	}
	n, _, err := leader.Pending()
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, 4, "reads of the record and the idempotency key from the leader")
}

// natsNode is one nats-server process of a cluster a test owns.
type natsNode struct {
	name string
	bin  string
	args []string
	log  string

	cmd    *exec.Cmd
	exited chan struct{}
}

// start runs the server. Its store directory and ports stay the same across
// restarts, so a restarted server rejoins with the data it had.
func (n *natsNode) start(t *testing.T) {
	t.Helper()
	n.cmd = exec.Command(n.bin, n.args...)
	require.NoError(t, n.cmd.Start(), "start nats-server %s", n.name)
	exited := make(chan struct{})
	n.exited = exited
	go func(cmd *exec.Cmd) {
		_ = cmd.Wait()
		close(exited)
	}(n.cmd)
}

// kill stops the server with SIGKILL, as a crash does, and waits for it.
func (n *natsNode) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.exited
	n.cmd = nil
}

// natsServer returns the nats-server binary ASYNCREQ_TEST_NATS_SERVER
// names, or the one on PATH. It skips t when there is none, or when it is
// older than 2.11: the servers before it can acknowledge two
// compare-and-set writes of one key made against the same revision when
// the writes race or the stream's leader changes, and a replicated bucket
// then loses requests (.ci/nats-server builds a server that does not).
func natsServer(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("ASYNCREQ_TEST_NATS_SERVER")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("nats-server"); err != nil {
			t.Skip("no nats-server on PATH and ASYNCREQ_TEST_NATS_SERVER is not set; the cluster test runs servers of its own")
		}
	}
	out, err := exec.Command(bin, "--version").Output()
	require.NoError(t, err, "%s --version", bin)
	version := strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server: v")
	if !replicatesCompareAndSet(t, version) {
		t.Skipf("%s is nats-server %s, which does not keep a replicated key's compare-and-set; "+
			"set ASYNCREQ_TEST_NATS_SERVER to a 2.11 or later server (.ci/nats-server builds one)", bin, version)
	}
	return bin
}

// replicatesCompareAndSet tells whether nats-server version (such as
// "2.14.10") keeps a replicated key's compare-and-set: 2.11 and later do.
func replicatesCompareAndSet(t *testing.T, version string) bool {
	t.Helper()
	var major, minor int
	if _, err := fmt.Sscanf(version, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("cannot read the nats-server version %q", version)
	}
	return major > 2 || major == 2 && minor >= 11
}

// natsCluster is a JetStream cluster of three nats-server processes that a
// test starts from natsServer's binary on free ports, and kills when it
// ends.
type natsCluster struct {
	nodes []*natsNode
	urls  []string
}

// startNATSCluster starts a cluster of the test's own and waits until
// every server answers JetStream requests and a stream of three replicas
// can be placed.
func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	bin := natsServer(t)
	// Six free ports: a client and a route port per server.
	var ports []int
	var lns []net.Listener
	for range 6 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		require.NoError(t, ln.Close())
	}
	var routes []string
	for i := range 3 {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[3+i]))
	}
	dir := t.TempDir()
	clusterName := "asyncreq-test-" + suffix()
	c := &natsCluster{}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		n := &natsNode{
			name: name,
			bin:  bin,
			log:  filepath.Join(dir, name+".log"),
		}
		n.args = []string{
			"-a", "127.0.0.1", "-p", strconv.Itoa(ports[i]), "-n", name,
			"-js", "-sd", filepath.Join(dir, name),
			"--cluster_name", clusterName,
			"--cluster", routes[i], "--routes", strings.Join(routes, ","),
			"-l", n.log,
		}
		c.nodes = append(c.nodes, n)
		c.urls = append(c.urls, "nats://127.0.0.1:"+strconv.Itoa(ports[i]))
	}
	for _, n := range c.nodes {
		n.start(t)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.kill()
		}
		if t.Failed() {
			c.logTails(t)
		}
	})
	for _, u := range c.urls {
		c.waitReady(t, u)
	}
	// The meta leader places a stream of three replicas once it knows
	// every server as current, which can take a moment longer.
	js := connectCluster(t, c, "asyncreq-cluster-ready")
	waitFor(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "READY", Subjects: []string{"ready"}, Replicas: 3, Storage: jetstream.MemoryStorage})
		return err == nil && js.DeleteStream(ctx, "READY") == nil
	}, "the cluster cannot place a stream of three replicas")
	return c
}

// waitReady waits until the server at url answers a JetStream request,
// which needs the cluster's meta leader.
func (c *natsCluster) waitReady(t *testing.T, url string) {
	t.Helper()
	waitFor(t, 30*time.Second, func() bool {
		nc, err := natsgo.Connect(url, natsgo.Timeout(time.Second))
		if err != nil {
			return false
		}
		defer nc.Close()
		js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(time.Second))
		if err != nil {
			return false
		}
		_, err = js.AccountInfo(t.Context())
		return err == nil
	}, "JetStream cluster server %s is not ready", url)
}

// waitFor calls cond every 100ms until it is true, failing t with msg
// after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(msg, args...)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// node returns the server with the given name.
func (c *natsCluster) node(t *testing.T, name string) *natsNode {
	t.Helper()
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	t.Fatalf("no server named %q in the cluster", name)
	return nil
}

// logTails logs the end of every server's log.
func (c *natsCluster) logTails(t *testing.T) {
	for _, n := range c.nodes {
		data, err := os.ReadFile(n.log)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		t.Logf("last lines of %s's log:\n%s", n.name, strings.Join(lines[max(len(lines)-25, 0):], "\n"))
	}
}

// connectCluster connects to every server of c, reconnecting to another
// one at once when its server goes away.
func connectCluster(t *testing.T, c *natsCluster, name string) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(strings.Join(c.urls, ","), natsgo.Name(name),
		natsgo.MaxReconnects(-1), natsgo.ReconnectWait(100*time.Millisecond),
		// The killed server's connections fail; the client reconnects to
		// another. The default handler would print each error.
		natsgo.ErrorHandler(func(*natsgo.Conn, *natsgo.Subscription, error) {}))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// leaderOf returns the name of the server that leads the stream's Raft
// group, or an error while it has none.
func leaderOf(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", errors.New("no leader")
	}
	return info.Cluster.Leader, nil
}

// watchedStore is the Store the handler and worker write through. It keeps
// every write the backend acknowledged, as the record before and after it.
type watchedStore struct {
	*nats.Backend

	mu     sync.Mutex
	writes map[string][]write
}

// write is one acknowledged Update.
type write struct {
	before, after *asyncreq.Record
	at            time.Time
}

func (w write) String() string {
	return fmt.Sprintf("%s/%d -> %s/%d at %s", w.before.State, w.before.Attempts, w.after.State, w.after.Attempts, w.at.Format("15:04:05.000"))
}

// final tells whether w made its record final.
func (w write) final() bool { return !w.before.State.Final() && w.after.State.Final() }

// changedOutcome tells whether w changed the outcome of a record that was
// final already. (The handler's mark that a request is enqueued may come
// after a quick worker's outcome; it rewrites the record unchanged.)
func (w write) changedOutcome() bool {
	return w.before.State.Final() && (w.before.State != w.after.State ||
		!reflect.DeepEqual(w.before.Result, w.after.Result) || !reflect.DeepEqual(w.before.Error, w.after.Error))
}

func (s *watchedStore) Update(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	var before *asyncreq.Record
	rec, err := s.Backend.Update(ctx, id, func(r *asyncreq.Record) error {
		before = r.Clone()
		return fn(r)
	})
	if err == nil {
		s.mu.Lock()
		s.writes[id] = append(s.writes[id], write{before: before, after: rec.Clone(), at: time.Now()})
		s.mu.Unlock()
	}
	return rec, err
}

// runResult is the result body the test's processor writes: which run of
// which attempt of a request produced it.
type runResult struct {
	ID      string `json:"id"`
	Attempt int    `json:"attempt"`
	Run     string `json:"run"`
}

// runLog is the test processor's record of every run.
type runLog struct {
	mu   sync.Mutex
	runs map[string][]runResult
}

func (l *runLog) Process(ctx context.Context, req *asyncreq.Request) (*asyncreq.Result, error) {
	r := runResult{ID: req.ID, Attempt: req.Attempt, Run: asyncreq.NewID()}
	l.mu.Lock()
	l.runs[req.ID] = append(l.runs[req.ID], r)
	l.mu.Unlock()
	select { // some work, so that requests are running when a server dies
	case <-time.After(5 * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return &asyncreq.Result{ContentType: "application/json", Body: body}, nil
}

// lockedBuffer is a bytes.Buffer for a logger shared by goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestClusterStreamLeaderKilled runs a submit and drain load on a backend
// whose bucket and stream have three replicas, on a JetStream cluster of
// the test's own, and kills the server leading the stream with SIGKILL in
// the middle of it, then starts it again.
//
// Nothing answered 202 may be lost, and every accepted request must finish
// exactly once. Delivery is at least once: the server can lose an ack, a
// lease extension or a pull with the leader, and a request whose lease ran
// out is delivered and run again. So "exactly once" is about outcomes, not
// runs:
//
//   - every request answered 202 ends succeeded;
//   - attempts are numbered by compare-and-set writes to the record, so no
//     two runs of a request have the same attempt number (two would mean a
//     lost acknowledged write or a broken compare-and-set);
//   - the stored result is the one written by the last attempt, and no run
//     started after it (a request is run again only while no outcome is
//     recorded);
//   - at most one acknowledged write made the record final, and the stored
//     outcome is that write's (a second would be an overwritten outcome,
//     another stored one a lost acknowledged write); there is none when
//     the acknowledgement itself was lost in the failover, and the stored
//     outcome is then the last attempt's, as above;
//   - no acknowledged write changed the outcome of a final record.
func TestClusterStreamLeaderKilled(t *testing.T) {
	clusterTests(t)
	cl := startNATSCluster(t)
	ctx := t.Context()

	const ackWait = 2 * time.Second
	opts := testOptions()
	opts.Replicas = 3
	opts.Storage = jetstream.FileStorage
	opts.AckWait = ackWait

	// The handler and the worker run on connections of their own, as two
	// processes would.
	front, err := nats.New(ctx, connectCluster(t, cl, "asyncreq-cluster-handler"), opts)
	require.NoError(t, err)
	defer front.Close()
	backJS := connectCluster(t, cl, "asyncreq-cluster-worker")
	back, err := nats.New(ctx, backJS, opts)
	require.NoError(t, err)
	defer back.Close()
	for _, name := range []string{opts.Stream, "KV_" + opts.Bucket} {
		s, err := backJS.Stream(ctx, name)
		require.NoError(t, err)
		require.Equal(t, 3, s.CachedInfo().Config.Replicas, "stream %s", name)
		require.NotNil(t, s.CachedInfo().Cluster, "stream %s", name)
		require.Len(t, s.CachedInfo().Cluster.Replicas, 2, "stream %s has a leader and two followers", name)
	}

	frontStore := &watchedStore{Backend: front, writes: map[string][]write{}}
	backStore := &watchedStore{Backend: back, writes: map[string][]write{}}
	h, err := asyncreq.NewHandler(asyncreq.Pair(frontStore, front), nil)
	require.NoError(t, err)
	hs := httptest.NewServer(h)
	defer hs.Close()

	var logs lockedBuffer
	defer func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	}()
	runs := &runLog{runs: map[string][]runResult{}}
	w, err := asyncreq.NewWorker(asyncreq.Pair(backStore, back), runs, &asyncreq.WorkerOptions{
		Concurrency:   8,
		LeaseDuration: ackWait,
		MaxAttempts:   10,
		BackoffMin:    50 * time.Millisecond,
		BackoffMax:    500 * time.Millisecond,
		PurgeInterval: -1,
		SweepInterval: time.Second,
		SweepAge:      3 * time.Second,
		Logger:        slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	stopped := false
	stopWorker := func() {
		if stopped {
			return
		}
		stopped = true
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, w.Stop(sctx))
	}
	defer stopWorker()

	load := startSubmits(t, hs.URL)
	waitFor(t, 20*time.Second, func() bool { return load.acceptedSince(time.Time{}) >= 50 }, "the handler accepts nothing")

	leader, err := leaderOf(ctx, backJS, opts.Stream)
	require.NoError(t, err)
	kvLeader, _ := leaderOf(ctx, backJS, "KV_"+opts.Bucket)
	victim := cl.node(t, leader)
	victim.kill()
	killedAt := time.Now()
	t.Logf("killed %s, the leader of the stream (the bucket's leader was %s) at %s", leader, kvLeader, killedAt.Format("15:04:05.000"))

	var newLeader string
	waitFor(t, 20*time.Second, func() bool {
		newLeader, err = leaderOf(ctx, backJS, opts.Stream)
		return err == nil && newLeader != leader
	}, "the stream elects no new leader")
	t.Logf("%s leads the stream %v after the kill", newLeader, time.Since(killedAt).Round(time.Millisecond))
	time.Sleep(time.Second)

	victim.start(t)
	restartedAt := time.Now()
	// The load goes on until the handler has accepted a few dozen more.
	waitFor(t, 20*time.Second, func() bool { return load.acceptedSince(restartedAt) >= 50 },
		"the handler does not accept again after the failover")
	answers := load.finish(t)

	// Every answer is 202, or 503 with Retry-After while the cluster
	// recovers.
	accepted := map[string]bool{}
	var afterRestart, unavailable int
	for _, a := range answers {
		switch a.status {
		case http.StatusAccepted:
			require.NotEmpty(t, a.id)
			accepted[a.id] = true
			if a.at.After(restartedAt) {
				afterRestart++
			}
		case http.StatusServiceUnavailable:
			require.NotEmpty(t, a.retryAfter, "a 503 carries Retry-After")
			unavailable++
		default:
			t.Fatalf("unexpected answer %d", a.status)
		}
	}

	// Every accepted request finishes.
	var pending []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		pending = pending[:0]
		for id := range accepted {
			rec, err := front.Get(ctx, id)
			if err != nil || !rec.State.Final() {
				pending = append(pending, id)
			}
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			runs.mu.Lock()
			for _, id := range pending[:min(len(pending), 10)] {
				rec, err := front.Get(ctx, id)
				if err != nil {
					t.Logf("unfinished %s: %v", id, err)
					continue
				}
				t.Logf("unfinished %s: state %s, attempts %d, token %q, enqueued %v; runs %+v",
					id, rec.State, rec.Attempts, rec.LeaseToken, rec.Enqueued, runs.runs[id])
				frontStore.mu.Lock()
				backStore.mu.Lock()
				t.Logf("  acknowledged writes: handler %v, worker %v", frontStore.writes[id], backStore.writes[id])
				backStore.mu.Unlock()
				frontStore.mu.Unlock()
			}
			runs.mu.Unlock()
			if c, err := backJS.Consumer(ctx, opts.Stream, opts.Consumer); err == nil {
				ci := c.CachedInfo()
				t.Logf("consumer: %d pending, %d ack pending, %d redelivered, %d waiting pulls",
					ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting)
			}
			t.Fatalf("%d of %d accepted requests unfinished after 30s", len(pending), len(accepted))
		}
		time.Sleep(250 * time.Millisecond)
	}
	stopWorker()

	runs.mu.Lock()
	defer runs.mu.Unlock()
	writes := map[string][]write{}
	for _, s := range []*watchedStore{frontStore, backStore} {
		s.mu.Lock()
		for id, ws := range s.writes {
			writes[id] = append(writes[id], ws...)
		}
		s.mu.Unlock()
	}
	for id, ws := range writes {
		for _, w := range ws {
			require.False(t, w.changedOutcome(), "request %s: an acknowledged write changed its outcome: %v", id, ws)
		}
	}
	var rerun, unacknowledged int
	for id := range accepted {
		rec, err := front.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, asyncreq.StateSucceeded, rec.State, "request %s: %+v", id, rec.Error)
		require.NotNil(t, rec.Result, "request %s", id)
		var stored runResult
		require.NoError(t, json.Unmarshal(rec.Result.Body, &stored), "request %s", id)
		require.Equal(t, id, stored.ID)

		rs := runs.runs[id]
		require.NotEmpty(t, rs, "request %s succeeded without running", id)
		if len(rs) > 1 {
			rerun++
		}
		seen := map[int]bool{}
		last := rs[0]
		for _, r := range rs {
			require.False(t, seen[r.Attempt], "request %s: two runs of attempt %d: %+v", id, r.Attempt, rs)
			seen[r.Attempt] = true
			if r.Attempt > last.Attempt {
				last = r
			}
		}
		require.Equal(t, last, stored, "request %s: the stored result is the last attempt's: runs %+v", id, rs)
		require.Equal(t, last.Attempt, rec.Attempts, "request %s: no attempt was claimed after the last run", id)

		var finals []write
		for _, w := range writes[id] {
			if w.final() {
				finals = append(finals, w)
			}
		}
		switch len(finals) {
		case 0:
			unacknowledged++
		case 1:
			require.Equal(t, rec.Result.Body, finals[0].after.Result.Body, "request %s: the acknowledged outcome is the stored one", id)
		default:
			t.Fatalf("request %s: %d acknowledged writes made it final: %v", id, len(finals), writes[id])
		}
	}
	t.Logf("%d submits: %d accepted (%d after the restart), %d answered 503; %d requests ran more than once, %d outcomes written without an acknowledgement",
		len(answers), len(accepted), afterRestart, unavailable, rerun, unacknowledged)
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
	for range 8 {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				a, err := submit(url)
				l.mu.Lock()
				if err != nil {
					l.errs = append(l.errs, err)
				} else {
					l.answers = append(l.answers, a)
				}
				l.mu.Unlock()
				if err != nil {
					return
				}
				if a.status != http.StatusAccepted {
					time.Sleep(20 * time.Millisecond) // as a client honouring Retry-After would, only faster
				}
			}
		})
	}
	return l
}

// submit posts one request and reads the answer.
func submit(url string) (submitAnswer, error) {
	resp, err := http.Post(url+"/", "application/json", strings.NewReader(`{"n":1}`))
	if err != nil {
		return submitAnswer{}, err
	}
	defer resp.Body.Close()
	a := submitAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), at: time.Now()}
	if resp.StatusCode == http.StatusAccepted {
		var doc asyncreq.StatusDocument
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			return a, fmt.Errorf("decoding a 202: %w", err)
		}
		a.id = doc.ID
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return a, nil
}

// acceptedSince returns how many submits were answered 202 after t.
func (l *submitLoad) acceptedSince(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.answers {
		if a.status == http.StatusAccepted && a.at.After(t) {
			n++
		}
	}
	return n
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
