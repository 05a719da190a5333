// Package sqlite is an asyncreq backend kept in one SQLite database file:
// the embedded, durable default. It uses modernc.org/sqlite, a pure Go
// SQLite, so it needs no cgo and no server.
//
// One *Backend is both the asyncreq.Store and the asyncreq.Queue, and it
// implements asyncreq.Accepter: a request's record, its queue entry and its
// idempotency key are written in one transaction, so a handler answers 202
// only after all three are committed.
//
// Its names follow the convention of every asyncreq backend module: the
// type that is both Store and Queue is Backend, and since the package opens
// the database file itself (and the Backend's Close closes it), the
// constructor is Open(ctx, path, opts), where ctx bounds the opening and
// the migration and nil opts means the defaults.
//
// # Durability
//
// The database runs in WAL mode. With the default Synchronous "FULL" every
// commit is flushed to stable storage (fsync of the WAL) before the call
// that made it returns, so an accepted request survives a process crash and
// a power loss. With "NORMAL" a commit survives a process crash (SIGKILL),
// but the commits since the last WAL checkpoint may be lost on a power loss
// or an operating system crash. Because concurrent commits are grouped (see
// Writes), FULL costs little under load: one fsync serves a whole group.
//
// # Writes
//
// All writes of a database file opened in one process go through a single
// writer goroutine that owns the one write connection. It takes every write
// that is waiting and runs them in one transaction (group commit), and
// answers each caller only after the commit, so no call returns before its
// write is durable. A write that fails on its own terms (a duplicate
// idempotency key, a lost lease, an update function's error) does so before
// writing anything and does not disturb the others; if the database itself
// fails, the transaction is rolled back and each write is retried alone.
// Concurrent callers therefore never see SQLITE_BUSY, and one fsync serves
// many accepts. Reads (Get, ListUnenqueued) use a separate pool of
// read-only connections, which WAL lets run beside the writer.
//
// Several Backends may share one file: each Open of the same path in one
// process shares the same connections and writer. Options.Queue separates
// their records and queue entries (for example one queue per handler mounted
// at /jobs and /reports), and Options.TablePrefix separates their tables
// (for example inside an application's own database). Other processes may
// open the same file too; their writes are serialised by SQLite's locks,
// waiting up to Options.BusyTimeout, and their enqueues are noticed within
// Options.MaxPollInterval.
//
// # Watching
//
// Watch (asyncreq.Watcher) is not cross-process: it sees the changes made
// through any Backend on the file in this process, at once, and none made
// by other processes, since SQLite tells no one of another connection's
// commit. Handlers and Workers take a watch as a hint and read the record
// on their own schedule too (a long poll at least every 500ms and at its
// deadline, a worker at every heartbeat), so with an API process and a
// worker process on one file a long poll sees the worker's outcome, and a
// worker a client's cancel, within that time instead of at once.
//
// # Polling clients
//
// Get answers from the record as this process last read or wrote it, for
// up to Options.PollCacheAge, while no write of it is known since. Every
// write from this process goes through the file's writer, which tells the
// Backends of the record's queue once it committed; a write by another
// process is found by PRAGMA data_version on the writer's connection,
// which the writer reads at the start of each transaction and when a Get
// asks, and drops everything cached. A Get answers from the cache only
// once a reading covers a moment after the Get began: the writer's
// transaction (no other process commits while it holds the write lock),
// or a reading the Get waits for (5ms at most, then it reads the file). So
// a Get sees every write committed before it, by any process. The writer
// also updates a record from the cache when nothing in flight may have
// changed it, so that a worker's claim and outcome do not read the record
// again.
//
// # Statistics
//
// QueueStats (asyncreq.QueueStater) counts the queue's entries with two
// index range scans on the read pool, linear in the entries due and
// delayed: about 0.24 s for a million pending entries on a 2-core VM (see
// docs/stats.md). It does not count records by final state.
//
// # Operator capabilities
//
// A Backend is an asyncreq.Lister, an asyncreq.FinishedPurger and an
// asyncreq.Requeuer:
//
//   - List reads a page, newest first, off one of four indexes (all the
//     queue's records; by state; by owner; by owner and state) backwards
//     from its cursor, on the read pool: the page's rows and one more,
//     whatever the records retained and however few of them the filters
//     keep (about 0.4 ms for a page of 50 out of a million on a 2-core VM,
//     see docs/benchmarks-scale.md). The cursor holds CreatedAt to the
//     nanosecond, as the table does. The indexes take about 140 bytes a
//     record, and 150 more for one with an owner: the two by owner leave
//     out the records without one.
//   - CountStates reads a row a state of a table of counts that the writer
//     keeps, adding up the changes of a transaction's writes and updating
//     each count once before it commits: O(1) to read, next to nothing to
//     keep.
//   - PurgeFinished finds the final records last changed before a time
//     through an index on (queue, updated_at) of the final records, and
//     deletes them as Purge does: in transactions of at most 64 records,
//     which the writer runs as background work between the writes of
//     requests.
//   - Requeue writes the record and its queue entry in one transaction, as
//     Accept does. For a canceled record it first looks for the entry it
//     had while pending, which it keeps rather than add a second; that
//     reads the queue's entries, since no index has their ids.
//
// Migration 0004 adds these indexes and tables, and reads the UpdatedAt of
// every record stored before it from its JSON: on a large database the
// first Open of this version takes a while (8 s for 200,000 records on a
// 2-core VM, so some 40 s a million).
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/reccache"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Options configures a Backend. The zero value and nil mean the defaults.
type Options struct {
	// Queue names this Backend's queue. Backends on the same file with
	// different names keep separate records, queue entries and tombstones.
	// It is at most 64 characters. Default "default".
	Queue string

	// TablePrefix is prepended to the names of the tables and indexes this
	// Backend creates. It must match [A-Za-z_][A-Za-z0-9_]*.
	// Default "asyncreq_".
	TablePrefix string

	// Synchronous is SQLite's synchronous setting for the write
	// connection: "FULL" flushes every commit to stable storage before it is
	// acknowledged (durable across power loss); "NORMAL" survives process
	// crashes but may lose the last commits on power loss. Default "FULL".
	Synchronous string

	// BusyTimeout is how long a connection waits for a lock held by another
	// process sharing the file before it fails. Default 10s.
	BusyTimeout time.Duration

	// ReadConns is the number of read-only connections. Default 4.
	ReadConns int

	// MaxBatch is the largest number of writes grouped into one
	// transaction. Default 512.
	MaxBatch int

	// MaxPollInterval bounds how long an idle Dequeue waits before it looks
	// at the queue again, for entries added by other processes sharing the
	// file. Entries added through this process wake it at once. Default 1s.
	MaxPollInterval time.Duration

	// PollCacheAge is how long a Get may answer with the record as this
	// Backend last read or wrote it (a worker's claim, progress or
	// outcome) instead of reading the file, while no write of it is known
	// since: writes through this process and other processes' are known
	// before the next Get answers (see "Polling clients" in the package
	// documentation). A client polling a running request every few
	// milliseconds then costs a read every PollCacheAge. Clients that wait
	// the Retry-After a Handler sends (1s by default) between polls are
	// served from the cache only if it is longer than that. Since every
	// Get is checked against other processes' writes, the age bounds only
	// how long a record stays cached, not how late a change is seen; the
	// cache holds about 8 MiB of records at most, dropping the oldest when
	// full. Negative: read at every Get. Default 5s.
	PollCacheAge time.Duration

	// Now is the clock used for queue due times, leases, tombstones and
	// purges. Default time.Now.
	Now func() time.Time
}

// The defaults of Options.
const (
	defaultQueue       = "default"
	defaultTablePrefix = "asyncreq_"
	defaultBusyTimeout = 10 * time.Second
	defaultReadConns   = 4
	defaultMaxBatch    = 512
	defaultMaxPoll     = time.Second
	maxQueueNameLen    = 64
)

var prefixRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// withDefaults returns a copy of o with the defaults applied, or an error
// naming the first invalid field.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Queue == "" {
		c.Queue = defaultQueue
	}
	if len(c.Queue) > maxQueueNameLen {
		return c, fmt.Errorf("sqlite: Options.Queue is longer than %d characters", maxQueueNameLen)
	}
	if c.TablePrefix == "" {
		c.TablePrefix = defaultTablePrefix
	}
	if !prefixRE.MatchString(c.TablePrefix) {
		return c, fmt.Errorf("sqlite: Options.TablePrefix %q must match %s", c.TablePrefix, prefixRE)
	}
	switch strings.ToUpper(c.Synchronous) {
	case "":
		c.Synchronous = "FULL"
	case "FULL", "NORMAL":
		c.Synchronous = strings.ToUpper(c.Synchronous)
	default:
		return c, fmt.Errorf("sqlite: Options.Synchronous %q must be FULL or NORMAL", c.Synchronous)
	}
	switch {
	case c.BusyTimeout == 0:
		c.BusyTimeout = defaultBusyTimeout
	case c.BusyTimeout < 0:
		return c, fmt.Errorf("sqlite: Options.BusyTimeout %s is negative", c.BusyTimeout)
	}
	switch {
	case c.ReadConns == 0:
		c.ReadConns = defaultReadConns
	case c.ReadConns < 0:
		return c, fmt.Errorf("sqlite: Options.ReadConns %d is negative", c.ReadConns)
	}
	switch {
	case c.MaxBatch == 0:
		c.MaxBatch = defaultMaxBatch
	case c.MaxBatch < 0:
		return c, fmt.Errorf("sqlite: Options.MaxBatch %d is negative", c.MaxBatch)
	}
	switch {
	case c.MaxPollInterval == 0:
		c.MaxPollInterval = defaultMaxPoll
	case c.MaxPollInterval < 0:
		return c, fmt.Errorf("sqlite: Options.MaxPollInterval %s is negative", c.MaxPollInterval)
	}
	if c.PollCacheAge == 0 {
		c.PollCacheAge = defaultPollCacheAge
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Backend is an asyncreq Store and Queue kept in a SQLite database. It also
// implements asyncreq.Accepter, asyncreq.Watcher, asyncreq.UnenqueuedLister
// and asyncreq.BatchDequeuer. All methods may be called concurrently.
type Backend struct {
	eng    *engine
	queue  string
	prefix string
	sql    queries
	now    func() time.Time
	poll   time.Duration
	wake   *wakeup // shared by the Backends of one file, queue and prefix
	polls  *pollCache
	group  string // cacheGroup of prefix and queue

	mu      sync.RWMutex // held for reading by every call that uses eng; Close takes it to wait for them
	closed  bool
	closing chan struct{} // closed by Close
}

var (
	_ asyncreq.Store            = (*Backend)(nil)
	_ asyncreq.Queue            = (*Backend)(nil)
	_ asyncreq.Accepter         = (*Backend)(nil)
	_ asyncreq.Watcher          = (*Backend)(nil)
	_ asyncreq.UnenqueuedLister = (*Backend)(nil)
	_ asyncreq.BatchDequeuer    = (*Backend)(nil)
	_ asyncreq.Completer        = (*Backend)(nil)
	_ asyncreq.Claimer          = (*Backend)(nil)
)

// Open opens (creating it if needed) the SQLite database at path, brings its
// schema up to date, and returns a Backend on it. ctx bounds the opening and
// the migration. path must name a file; in-memory databases are not
// supported because the Backend uses several connections. The caller must
// Close the Backend.
func Open(ctx context.Context, path string, opts *Options) (*Backend, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: path %q must name a database file", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: path %q: %w", path, err)
	}
	eng, err := acquireEngine(ctx, abs, engineConfig{
		synchronous: o.Synchronous,
		busyTimeout: o.BusyTimeout,
		readConns:   o.ReadConns,
		maxBatch:    o.MaxBatch,
	})
	if err != nil {
		return nil, err
	}
	b := &Backend{
		eng:     eng,
		queue:   o.Queue,
		prefix:  o.TablePrefix,
		sql:     newQueries(o.TablePrefix),
		now:     o.Now,
		poll:    o.MaxPollInterval,
		wake:    eng.wakeupFor(o.TablePrefix + "\x00" + o.Queue),
		polls:   reccache.NewRecordPollCache(o.PollCacheAge),
		group:   cacheGroup(o.TablePrefix, o.Queue),
		closing: make(chan struct{}),
	}
	if err := migrate(ctx, eng, o.TablePrefix); err != nil {
		_ = releaseEngine(eng)
		return nil, err
	}
	if o.PollCacheAge > 0 {
		b.polls.Listen(true)
		eng.polls.add(b.group, b.polls)
	}
	return b, nil
}

// Close releases the Backend. Calls in progress finish first; later calls,
// and Dequeue calls waiting for an entry, return asyncreq.ErrClosed, and
// open watches are closed. The file is closed when the last Backend on it
// is. Close is idempotent.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.closing)
	b.mu.Unlock()
	b.eng.watches.closeOwner(b)
	b.eng.polls.remove(b.group, b.polls)
	return releaseEngine(b.eng)
}

// enter marks the start of a call that uses the engine; it fails with
// ErrClosed after Close. Every successful enter is paired with exit.
func (b *Backend) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return asyncreq.ErrClosed
	}
	return nil
}

func (b *Backend) exit() { b.mu.RUnlock() }

// engineConfig is what the Backends sharing one file must agree on.
type engineConfig struct {
	synchronous string
	busyTimeout time.Duration
	readConns   int
	maxBatch    int
}

// engines holds the engines open in this process, by absolute path.
var engines = struct {
	sync.Mutex
	m map[string]*engine
}{m: make(map[string]*engine)}

// acquireEngine returns the engine for path, opening it if this process has
// none, and counts one more user.
func acquireEngine(ctx context.Context, path string, cfg engineConfig) (*engine, error) {
	engines.Lock()
	defer engines.Unlock()
	if e := engines.m[path]; e != nil {
		if e.cfg != cfg {
			return nil, fmt.Errorf("sqlite: %s is already open in this process with other Synchronous, BusyTimeout, ReadConns or MaxBatch options", path)
		}
		e.refs++
		return e, nil
	}
	e, err := openEngine(ctx, path, cfg)
	if err != nil {
		return nil, err
	}
	e.refs = 1
	engines.m[path] = e
	return e, nil
}

// releaseEngine counts one user less and closes the engine after the last.
func releaseEngine(e *engine) error {
	engines.Lock()
	e.refs--
	last := e.refs == 0
	if last {
		delete(engines.m, e.path)
	}
	engines.Unlock()
	if !last {
		return nil
	}
	return e.close()
}

// dsn returns the modernc.org/sqlite data source name for path.
func dsn(path string, cfg engineConfig, readOnly bool) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path)}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+cfg.synchronous+")")
	q.Add("_pragma", "foreign_keys(0)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
		q.Add("_pragma", "cache_size(-8192)") // KiB: 8 MiB per read connection
	} else {
		q.Add("_pragma", "cache_size(-32768)") // KiB: 32 MiB for the writer
	}
	return u.String() + "?" + q.Encode()
}

// openDB opens a *sql.DB on path with at most n connections, and checks that
// it can be used.
func openDB(ctx context.Context, path string, cfg engineConfig, readOnly bool, n int) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(path, cfg, readOnly))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// Stats are counters of the writer of a database file, shared by the
// Backends open on it in this process.
type Stats struct {
	// Commits is the number of transactions committed.
	Commits int64
	// Writes is the number of writes (accepts, updates, leases, ...)
	// those transactions carried. Writes/Commits is the mean group-commit
	// size.
	Writes int64
}

// Stats returns the writer's counters since the file was opened in this
// process.
func (b *Backend) Stats() Stats {
	return Stats{Commits: b.eng.commits.Load(), Writes: b.eng.committed.Load()}
}
