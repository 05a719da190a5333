package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asyncreq/asyncreq"
	msqlite "modernc.org/sqlite"
)

// engine is one database file open in this process: the write connection
// with its writer goroutine, the read pool, and the in-process
// notifications. The Backends opened on the file share it.
type engine struct {
	path string
	cfg  engineConfig
	refs int // guarded by engines

	wdb   *sql.DB
	wconn *sql.Conn // owned by the writer goroutine
	rdb   *sql.DB

	writes chan *op      // to the writer
	idle   chan *op      // to the writer, taken only when no write waits (see doIdle)
	stop   chan struct{} // closed to stop the writer
	done   chan struct{} // closed when the writer has returned

	wstmts map[string]*sql.Stmt // prepared on wconn; used by the writer goroutine only
	rstmts sync.Map             // query string -> *sql.Stmt prepared on rdb

	watches watchSet
	polls   pollCaches // the Backends' poll caches (see polls.go)

	commits   atomic.Int64 // transactions committed by the writer
	committed atomic.Int64 // writes in them
	reads     atomic.Int64 // records Get read from the file
	wreads    atomic.Int64 // records the writer read to update them

	// commitHook, if set (by tests, before the writes it is to see), runs
	// before each COMMIT with the number of writes in the transaction; an
	// error from it fails the commit as one from the database would.
	commitHook func(writes int) error

	wakeMu  sync.Mutex
	wakeups map[string]*wakeup
}

// openEngine opens the connections of path and starts the writer.
func openEngine(ctx context.Context, path string, cfg engineConfig) (*engine, error) {
	wdb, err := openDB(ctx, path, cfg, false, 1)
	if err != nil {
		return nil, err
	}
	var closers []io.Closer
	fail := func(err error) (*engine, error) {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i].Close()
		}
		_ = wdb.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	wconn, err := wdb.Conn(ctx)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, wconn)
	var mode string
	if err := wconn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fail(err)
	}
	if mode != "wal" {
		return fail(fmt.Errorf("journal mode is %q, not wal", mode))
	}
	rdb, err := openDB(ctx, path, cfg, true, cfg.readConns)
	if err != nil {
		_ = wconn.Close()
		_ = wdb.Close()
		return nil, err
	}
	e := &engine{
		path:    path,
		cfg:     cfg,
		wdb:     wdb,
		wconn:   wconn,
		rdb:     rdb,
		writes:  make(chan *op),
		idle:    make(chan *op),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		wstmts:  make(map[string]*sql.Stmt),
		wakeups: make(map[string]*wakeup),
	}
	e.watches.m = make(map[string]map[*watch]struct{})
	e.polls.ask = make(chan struct{}, 1)
	go e.run()
	return e, nil
}

// close stops the writer after the batch it is running and closes the
// connections.
func (e *engine) close() error {
	close(e.stop)
	<-e.done
	for _, st := range e.wstmts {
		_ = st.Close()
	}
	e.rstmts.Range(func(_, v any) bool {
		_ = v.(*sql.Stmt).Close()
		return true
	})
	errs := []error{e.wconn.Close(), e.rdb.Close(), e.wdb.Close()}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close %s: %w", e.path, err)
	}
	return nil
}

// op is one write handed to the writer goroutine.
type op struct {
	fn    func(*wtx) error // runs inside the shared transaction
	after func()           // runs after the commit if fn succeeded

	state atomic.Int32 // opQueued, opTaken or opAbandoned
	done  chan struct{}
	err   error
	pval  any // a panic of fn, raised again in the caller
	// late is set when fn ran after another op of its transaction had
	// written: what fn read may include those writes, uncommitted.
	late bool
}

// idleShare is how much longer than a background write took the other
// writes have the writer to themselves after it, when they keep it busy.
const idleShare = 4

const (
	opQueued int32 = iota
	opTaken
	opAbandoned
)

// do runs fn in the writer goroutine, inside a transaction shared with other
// concurrent writes, and returns its error once the transaction is
// committed. after, if not nil, runs once the commit succeeded. If ctx ends
// before the writer starts on fn, do returns ctx.Err() and fn never runs;
// once it has started, do waits for the outcome, so a nil error always means
// committed and ctx.Err() always means nothing was written.
func (e *engine) do(ctx context.Context, fn func(*wtx) error, after func()) error {
	return e.submit(ctx, e.writes, fn, after)
}

// doIdle is do for background work (a purge): the writer takes fn when no
// other write is waiting, or when it has waited its share (idleShare), and
// runs it in a transaction of its own, so that the writes of requests
// never wait for more than one such transaction, nor share its commit.
func (e *engine) doIdle(ctx context.Context, fn func(*wtx) error, after func()) error {
	return e.submit(ctx, e.idle, fn, after)
}

func (e *engine) submit(ctx context.Context, to chan<- *op, fn func(*wtx) error, after func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &op{fn: fn, after: after, done: make(chan struct{})}
	select {
	case to <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.stop:
		return asyncreq.ErrClosed
	}
	select {
	case <-o.done:
	case <-ctx.Done():
		if o.state.CompareAndSwap(opQueued, opAbandoned) {
			return ctx.Err()
		}
		<-o.done
	}
	if o.pval != nil {
		panic(o.pval)
	}
	return o.err
}

// run is the writer goroutine: it takes the writes waiting and commits them
// together. A background write (doIdle) is committed alone, when no other
// write waits or when it has waited its share (see idleShare).
func (e *engine) run() {
	defer close(e.done)
	batch := make([]*op, 0, e.cfg.maxBatch)
	// A background write waits while other writes do, but for no longer
	// than idleShare allows: after one that took d, the others have the
	// writer to themselves for idleShare×d at least, then the next
	// background write goes first. So under a load that never lets the
	// writer idle, background work still gets about 1/(idleShare+1) of it.
	var idleAfter time.Time
	runIdle := func(o *op) {
		if !o.state.CompareAndSwap(opQueued, opTaken) {
			return
		}
		start := time.Now()
		e.runBatch([]*op{o})
		end := time.Now()
		idleAfter = end.Add(idleShare * end.Sub(start))
	}
	for {
		batch = batch[:0]
		if !time.Now().Before(idleAfter) {
			select {
			case o := <-e.idle:
				runIdle(o)
				continue
			default:
			}
		}
		select {
		case o := <-e.writes:
			batch = append(batch, o)
		case <-e.stop:
			return
		default:
			select {
			case o := <-e.writes:
				batch = append(batch, o)
			case o := <-e.idle:
				runIdle(o)
				continue
			case <-e.polls.ask:
				e.checkVersion(context.Background(), time.Now())
				e.polls.checkEnded()
				continue
			case <-e.stop:
				return
			}
		}
	gather:
		for len(batch) < e.cfg.maxBatch {
			select {
			case o := <-e.writes:
				batch = append(batch, o)
			default:
				break gather
			}
		}
		taken := batch[:0]
		for _, o := range batch {
			if o.state.CompareAndSwap(opQueued, opTaken) {
				taken = append(taken, o)
			}
		}
		e.runBatch(taken)
		clear(batch[:cap(batch)])
	}
}

// runBatch runs ops in one transaction and completes each of them.
//
// An op may fail in two ways. It may decide to fail (a sentinel such as
// ErrNotFound, an update function's error, a panic in it); every op does
// its checks before its first write, so such a failure has written nothing
// and the other ops of the batch go on. Or the database itself may fail, or
// an op after it wrote (it says so with an abortError); then the
// transaction is rolled back and each op is run again alone, so that the
// failure reaches only the op that caused it.
//
// An op sees the writes of the ops before it in the transaction. If the
// commit fails, every op that succeeded, and every op that failed after
// another had written (its failure may rest on a write that is now rolled
// back: a duplicate of an uncommitted key, an update function that saw an
// uncommitted state), gets the commit's error, and no after function runs.
// Only an op that failed before the transaction's first write keeps its own
// answer, which rests on committed data alone.
func (e *engine) runBatch(ops []*op) {
	if len(ops) == 0 {
		return
	}
	t := &wtx{e: e}
	ctx := context.Background()
	start := time.Now()
	if _, err := t.exec("BEGIN IMMEDIATE"); err != nil {
		e.finish(ops, fmt.Errorf("sqlite: begin: %w", err))
		return
	}
	// The transaction sees every commit before start: what the poll
	// caches hold is checked against them, and no other process commits
	// until this transaction ends (see pollCaches.covers).
	e.checkVersion(ctx, start)
	e.polls.beginTx()
	ok := 0
	for _, o := range ops {
		o.late = ok > 0
		o.pval, o.err = call(o.fn, t)
		if mustRollBack(o.err) && len(ops) > 1 {
			e.polls.endTx()
			_, _ = t.exec("ROLLBACK")
			for _, o := range ops {
				o.err, o.pval, o.late = nil, nil, false
				e.runBatch([]*op{o})
			}
			return
		}
		if o.err == nil && o.pval == nil {
			ok++
		}
	}
	// Once this transaction commits or rolls back, other processes may
	// commit again.
	e.polls.endTx()
	if ok == 0 {
		_, _ = t.exec("ROLLBACK")
		e.finish(ops, nil)
		return
	}
	if err := t.flushCounts(); err != nil {
		_, _ = t.exec("ROLLBACK")
		e.finish(ops, fmt.Errorf("sqlite: commit: %w", err))
		return
	}
	if err := e.commit(ctx, len(ops)); err != nil {
		_, _ = t.exec("ROLLBACK")
		e.finish(ops, fmt.Errorf("sqlite: commit: %w", err))
		return
	}
	e.commits.Add(1)
	e.committed.Add(int64(ok))
	e.finish(ops, nil)
}

// commit commits the writer's transaction of n writes.
func (e *engine) commit(ctx context.Context, n int) error {
	if e.commitHook != nil {
		if err := e.commitHook(n); err != nil {
			return err
		}
	}
	_, err := (&wtx{e: e}).exec("COMMIT")
	return err
}

// finish completes ops. If err (the failure of the transaction) is not
// nil, the ops that succeeded and those that failed after another op had
// written get it in place of their own outcome (a panic is raised still);
// otherwise those that succeeded have their after function run. Then every
// caller is released.
func (e *engine) finish(ops []*op, err error) {
	for _, o := range ops {
		if err != nil && o.pval == nil && (o.err == nil || o.late) {
			o.err = err
		}
		if o.err == nil && o.pval == nil && o.after != nil {
			o.after()
		}
		close(o.done)
	}
}

// call runs fn, turning a panic into a value to raise again in the caller.
func call(fn func(*wtx) error, t *wtx) (pval any, err error) {
	defer func() {
		if r := recover(); r != nil {
			pval = r // panic(nil) arrives as a *runtime.PanicNilError
		}
	}()
	return nil, fn(t)
}

// abortError is the error of an op that failed after it wrote: its
// transaction must not commit, as after a database's error.
type abortError struct{ err error }

func (e *abortError) Error() string { return e.err.Error() }
func (e *abortError) Unwrap() error { return e.err }

// mustRollBack reports whether an op's err leaves writes in the
// transaction that must not commit: the database failed, or the op did
// after it wrote (abortError).
func mustRollBack(err error) bool {
	var ae *abortError
	return isDBError(err) || errors.As(err, &ae)
}

// isDBError reports whether err came from SQLite rather than from the
// logic of a write.
func isDBError(err error) bool {
	var se *msqlite.Error
	return errors.As(err, &se)
}

// wtx runs statements on the write connection inside the writer's
// transaction. It is used by the writer goroutine only.
type wtx struct {
	e *engine
	// counts adds up what the writes of the transaction change of the
	// counts of records by state (see count).
	counts map[countKey]int64
}

// countKey names a row of a state_counts table.
type countKey struct {
	prefix, queue, state string
}

// count records that the transaction's writes changed the number of
// records of queue in state by n. The writer adds it to the row of
// <prefix>state_counts before it commits, once for all the writes of the
// transaction, so that they update that row once rather than once each.
func (t *wtx) count(prefix, queue, state string, n int64) {
	if t.counts == nil {
		t.counts = make(map[countKey]int64)
	}
	t.counts[countKey{prefix, queue, state}] += n
}

// flushCounts writes the changes count recorded.
func (t *wtx) flushCounts() error {
	for k, n := range t.counts {
		if n == 0 {
			continue
		}
		if _, err := t.exec(addCountSQL(k.prefix), k.queue, k.state, n); err != nil {
			return err
		}
	}
	clear(t.counts)
	return nil
}

// addCountSQL is the statement that adds ?3 to the count of the records of
// queue ?1 in state ?2 in the state_counts table of prefix. It fails rather
// than aborts, as the queries do (see queries).
func addCountSQL(prefix string) string {
	return `INSERT OR FAIL INTO ` + prefix + `state_counts (queue, state, n) VALUES (?1, ?2, ?3)
			ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n`
}

func (t *wtx) stmt(q string) (*sql.Stmt, error) {
	if st := t.e.wstmts[q]; st != nil {
		return st, nil
	}
	st, err := t.e.wconn.PrepareContext(context.Background(), q)
	if err != nil {
		return nil, err
	}
	t.e.wstmts[q] = st
	return st, nil
}

func (t *wtx) exec(q string, args ...any) (sql.Result, error) {
	st, err := t.stmt(q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(context.Background(), args...)
}

func (t *wtx) query(q string, args ...any) (*sql.Rows, error) {
	st, err := t.stmt(q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(context.Background(), args...)
}

func (t *wtx) queryRow(q string, args ...any) *sql.Row {
	st, err := t.stmt(q)
	if err != nil {
		// A *sql.Row cannot be made with an error; run the query unprepared
		// so that Scan reports the same failure.
		return t.e.wconn.QueryRowContext(context.Background(), q, args...)
	}
	return st.QueryRowContext(context.Background(), args...)
}

// execScript runs statements that are not worth preparing (migrations).
func (t *wtx) execScript(q string) error {
	_, err := t.e.wconn.ExecContext(context.Background(), q)
	return err
}

// readStmt returns q prepared on the read pool.
func (e *engine) readStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := e.rstmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := e.rdb.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := e.rstmts.LoadOrStore(q, st); loaded {
		_ = st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// wakeup wakes the Dequeue calls waiting on one queue.
type wakeup struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next broadcast.
func (w *wakeup) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

// broadcast wakes every waiter.
func (w *wakeup) broadcast() {
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}

// wakeupFor returns the wakeup of the queue named key.
func (e *engine) wakeupFor(key string) *wakeup {
	e.wakeMu.Lock()
	defer e.wakeMu.Unlock()
	w := e.wakeups[key]
	if w == nil {
		w = &wakeup{ch: make(chan struct{})}
		e.wakeups[key] = w
	}
	return w
}

// watchSet holds the open watches of an engine, by record key.
type watchSet struct {
	mu sync.Mutex
	m  map[string]map[*watch]struct{}
}

// watch is one Watch call's channel.
type watch struct {
	ch    chan struct{}
	key   string
	owner *Backend
	stop  func() bool // stops the context.AfterFunc that releases it
}

// add registers a watch of key for owner.
func (s *watchSet) add(key string, owner *Backend) *watch {
	w := &watch{ch: make(chan struct{}), key: key, owner: owner}
	s.mu.Lock()
	set := s.m[key]
	if set == nil {
		set = make(map[*watch]struct{})
		s.m[key] = set
	}
	set[w] = struct{}{}
	s.mu.Unlock()
	return w
}

// release closes and forgets w if it is still registered.
func (s *watchSet) release(w *watch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(w)
}

func (s *watchSet) removeLocked(w *watch) {
	set := s.m[w.key]
	if _, ok := set[w]; !ok {
		return
	}
	delete(set, w)
	if len(set) == 0 {
		delete(s.m, w.key)
	}
	close(w.ch)
}

// notify closes and forgets every watch of key.
func (s *watchSet) notify(key string) {
	s.mu.Lock()
	set := s.m[key]
	delete(s.m, key)
	stops := make([]func() bool, 0, len(set))
	for w := range set {
		close(w.ch)
		if w.stop != nil {
			stops = append(stops, w.stop)
		}
	}
	s.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

// setStop records the function that stops w's release on context end,
// or calls it at once if w is already released.
func (s *watchSet) setStop(w *watch, stop func() bool) {
	s.mu.Lock()
	_, live := s.m[w.key][w]
	if live {
		w.stop = stop
	}
	s.mu.Unlock()
	if !live {
		stop()
	}
}

// closeOwner closes and forgets every watch made through owner.
func (s *watchSet) closeOwner(owner *Backend) {
	s.mu.Lock()
	var gone []*watch
	for _, set := range s.m {
		for w := range set {
			if w.owner == owner {
				gone = append(gone, w)
			}
		}
	}
	stops := make([]func() bool, 0, len(gone))
	for _, w := range gone {
		if w.stop != nil {
			stops = append(stops, w.stop)
		}
		s.removeLocked(w)
	}
	s.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}
