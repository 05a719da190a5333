package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/reccache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Backend is the PostgreSQL backend: one value that is the Store and the
// Queue of a Handler and Worker, records and enqueues a request in one
// transaction (asyncreq.Accepter), and records a worker's outcome and
// settles its lease in one (asyncreq.Completer). Create it with New.
//
// All methods may be called concurrently. A Backend starts background
// goroutines (the LISTEN connection and the group-commit writers) that
// Close stops; the pool belongs to the caller and stays open.
type Backend struct {
	pool    *pgxpool.Pool
	opts    Options
	queue   string
	sql     statements
	ops     operateStatements
	channel string // NOTIFY channel of the schema
	origin  string // tells this Backend's own record notifications apart

	jobs    waker
	watches watchSet
	cache   *reccache.Cache[cached]
	polls   *reccache.PollCache[*asyncreq.Record]

	sinceVacuum atomic.Int64  // jobs claimed since the last VACUUM of jobs
	vacuumKick  chan struct{} // asks vacuumJobs for a VACUUM

	// planned is set once the tables need no more ANALYZE from the
	// Backend (see analyzeWhenFilled); until then, rowsWritten counts the
	// rows it wrote, and at nextCheck of them analyzeKick asks for a
	// check.
	planned     atomic.Bool
	rowsWritten atomic.Int64
	nextCheck   atomic.Int64
	analyzeKick chan struct{}

	notes   *notifier
	accepts *batcher[*asyncreq.Record, *asyncreq.Record]
	updates *batcher[updateArg, updateRes]
	acks    *batcher[leaseHandle, struct{}]
	reads   *batcher[string, *asyncreq.Record]

	cancel    context.CancelFunc // ends the listener
	wg        sync.WaitGroup     // the listener and analyzeWhenFilled
	closed    atomic.Bool
	closeOnce sync.Once
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

// maxBatchBytes is about the most request bytes written in one accept
// batch (reccache.RecordSize of its records): a batch stops growing once
// its records reach it, so large bodies do not make huge statements.
const maxBatchBytes = 4 << 20

// listenStartWait bounds how long New waits for its LISTEN connection.
const listenStartWait = 5 * time.Second

// startTimeout bounds the queries New makes (the version check, or the
// migration with MigrateOnStart) when ctx gives them longer.
const startTimeout = time.Minute

// New returns a Backend on pool for the endpoint opts.Queue, with its
// tables in opts.Schema; nil opts means the defaults. With
// opts.MigrateOnStart it first runs Migrate; otherwise it checks that the
// schema is at SchemaVersion and returns an error telling to run Migrate
// if not. Those queries are bounded by ctx and by one minute. ctx bounds
// New alone: the Backend's background work runs until Close. When ctx
// ends first, New returns ctx.Err().
//
// Size the pool for the load: the Backend takes a connection per call in
// flight, plus up to Options.Committers for the group commits of accepts,
// as many for updates and for acks, Options.Readers for reads of records,
// and one for notifications (MinPoolSize). The LISTEN connection
// is opened from the pool's configuration but not taken from the pool;
// New waits up to 5 seconds for it to listen (if it cannot, Dequeue polls
// until a retry succeeds). The pool stays the caller's: call Close on the
// Backend, then close the pool.
func New(ctx context.Context, pool *pgxpool.Pool, opts *Options) (*Backend, error) {
	if pool == nil {
		return nil, errors.New("postgres: New: nil pool")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	qctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if o.MigrateOnStart {
		if err := Migrate(qctx, pool, &o); err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			return nil, err
		}
	} else {
		v, err := schemaVersion(qctx, pool, o.Schema)
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			return nil, fmt.Errorf("postgres: read schema version: %w", err)
		}
		if want := SchemaVersion(); v != want {
			return nil, fmt.Errorf("postgres: schema %s is at version %d, this code needs %d: run postgres.Migrate or set Options.MigrateOnStart", o.Schema, v, want)
		}
	}

	if have, need := pool.Config().MaxConns, MinPoolSize(&o); have < need {
		log := opts.logger()
		log.WarnContext(ctx, "postgres: the connection pool is smaller than the backend's own writers and readers need: raise pgxpool MaxConns (postgres.MinPoolSize)",
			"max_conns", have, "min_pool_size", need, "committers", o.Committers, "readers", o.Readers)
	}
	s := &Backend{
		pool:    pool,
		opts:    o,
		queue:   o.Queue,
		sql:     newStatements(pgx.Identifier{o.Schema}.Sanitize()),
		ops:     newOperateStatements(pgx.Identifier{o.Schema}.Sanitize()),
		channel: channelName(o.Schema),
		origin:  asyncreq.NewID(),
		cache:   newVersionCache(),
		polls:   reccache.NewRecordPollCache(o.PollCacheAge),

		vacuumKick:  make(chan struct{}, 1),
		analyzeKick: make(chan struct{}, 1),
	}
	s.nextCheck.Store(analyzeKickRows)
	s.jobs.init()
	s.watches.init()
	// The batchers' context is never canceled: Close lets the batches in
	// flight commit and answer their callers.
	s.accepts = newBatcher(context.Background(), o.Committers, o.MaxBatch, reccache.RecordSize, maxBatchBytes, s.runAccepts)
	s.updates = newBatcher(context.Background(), o.Committers, o.MaxBatch, nil, 0, s.runUpdates)
	s.acks = newBatcher(context.Background(), o.Committers, o.MaxBatch, nil, 0, s.runAcks)
	s.reads = newBatcher(context.Background(), o.Readers, o.MaxBatch, nil, 0, s.runGets)
	lctx, lcancel := context.WithCancel(context.Background())
	s.cancel = lcancel
	s.notes = newNotifier(s)
	s.wg.Add(1)
	go s.analyzeWhenFilled(lctx)
	if o.VacuumJobsAfter > 0 {
		s.wg.Add(1)
		go s.vacuumJobs(lctx)
	}
	if !o.DisableListen {
		ready := make(chan struct{})
		s.wg.Add(1)
		go s.listen(lctx, ready)
		// Wait for the first LISTEN, so that notifications flow once New
		// returns; if it fails, Dequeue polls until a retry succeeds.
		t := time.NewTimer(listenStartWait)
		defer t.Stop()
		select {
		case <-ready:
		case <-t.C:
		case <-ctx.Done():
			_ = s.Close()
			return nil, ctx.Err()
		}
	}
	return s, nil
}

// Close stops the Backend's background work: the batches being written
// finish, then every later call returns asyncreq.ErrClosed, waiting
// Dequeues return it, and open watches are closed. Close does not close
// the pool. It is idempotent and always returns nil.
func (s *Backend) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.cancel()
		s.accepts.close()
		s.updates.close()
		s.acks.close()
		s.reads.close()
		s.notes.close()
		s.wg.Wait()
		s.jobs.wake()
		s.watches.closeAll()
	})
	return nil
}

// Queue returns the name of the endpoint this Backend serves
// (Options.Queue).
func (s *Backend) Queue() string { return s.queue }

// Schema returns the schema that holds the Backend's tables
// (Options.Schema).
func (s *Backend) Schema() string { return s.opts.Schema }

// check returns the error a call must return before it starts.
func (s *Backend) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return asyncreq.ErrClosed
	}
	return nil
}

// fail maps err from an operation to what the caller is told: ctx.Err()
// when ctx ended, else err wrapped with the operation's name.
func (s *Backend) fail(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// batchErr wraps the error of a group-commit batch for its callers. The
// batch runs under a context of its own, so its error is never the
// caller's ctx.Err(); a caller whose context ends is told so by the
// batcher.
func batchErr(op string, err error) error {
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// Create implements asyncreq.Store.
func (s *Backend) Create(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if rec == nil || rec.ID == "" {
		return nil, errors.New("postgres: create: record without an id")
	}
	r, err := toRow(rec)
	if err != nil {
		return nil, err
	}
	for range 3 {
		tag, err := s.pool.Exec(ctx, s.sql.insert, r.args(s.queue)...)
		if err != nil {
			return nil, s.fail(ctx, "create "+rec.ID, err)
		}
		if tag.RowsAffected() == 1 {
			s.rowsAdded(1)
			s.watches.fire(rec.ID)
			return nil, nil
		}
		existing, err := s.conflict(ctx, s.pool, rec)
		if err != nil || existing != nil {
			return existing, err
		}
		// The record holding the key was deleted in between: try again.
	}
	return nil, fmt.Errorf("postgres: create %s: idempotency key keeps changing hands", rec.ID)
}

// conflict explains why rec was not inserted: it returns the record that
// holds rec's idempotency key with asyncreq.ErrDuplicate, an error if rec's
// id is taken, or (nil, nil) if nothing conflicts any more.
func (s *Backend) conflict(ctx context.Context, q querier, rec *asyncreq.Record) (*asyncreq.Record, error) {
	if rec.IdempotencyKey != "" {
		existing, err := scanRecord(q.QueryRow(ctx, s.sql.selectByKey, s.queue, rec.Owner, rec.IdempotencyKey))
		switch {
		case err == nil:
			return existing, asyncreq.ErrDuplicate
		case !errors.Is(err, pgx.ErrNoRows):
			return nil, s.fail(ctx, "read duplicate of "+rec.ID, err)
		}
	}
	var exists bool
	if err := q.QueryRow(ctx, s.sql.exists, s.queue, rec.ID).Scan(&exists); err != nil {
		return nil, s.fail(ctx, "create "+rec.ID, err)
	}
	if exists {
		return nil, fmt.Errorf("postgres: create %s: record id already exists", rec.ID)
	}
	return nil, nil
}

// Get implements asyncreq.Store.
func (s *Backend) Get(ctx context.Context, id string) (*asyncreq.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	now := time.Now()
	if rec, ok := s.polls.Get(id, now); ok {
		return rec.Clone(), nil
	}
	mark := s.polls.Begin(id, now)
	rec, err := s.reads.do(ctx, id)
	switch {
	case mark == nil:
	case err != nil || rec == nil:
		s.polls.Changed(id)
	default:
		s.polls.Read(id, mark, rec.Clone())
	}
	return rec, err
}

// missing returns a *asyncreq.GoneError naming the record's owner if id
// has a live tombstone, else asyncreq.ErrNotFound. A tombstone written
// before tombstones kept their owner is a plain asyncreq.ErrGone.
func (s *Backend) missing(ctx context.Context, id string) error {
	var owner *string
	err := s.pool.QueryRow(ctx, s.sql.tombstoned, s.queue, id, time.Now()).Scan(&owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return asyncreq.ErrNotFound
	case err != nil:
		return s.fail(ctx, "get "+id, err)
	case owner == nil:
		return asyncreq.ErrGone
	}
	return &asyncreq.GoneError{Owner: *owner}
}

// Update implements asyncreq.Store: it calls fn on the record, and writes
// the result only if the record has not changed since.
//
// Updates that arrive together are written together (group commit, as for
// Accept): each fn runs on its record (in arrival order for the same
// record), and one UPDATE writes every record still at the row version
// (xmin) fn saw, committing on its own; each caller is answered after that
// commit. A lone Update is written at once. The record and its version come
// from the Backend's version cache when this Backend recently read or wrote
// it (a worker's claim and outcome, progress reports), and are read
// otherwise, the batch's missing records in one statement. A record that
// changed in between, or whose cached copy was stale, is read again and
// its fns called again (fn may be called more than once; an error it
// returns on a cached copy is answered only once fn returned it on the
// record as read); after three conflicts on records as read, its updates
// are written in a transaction that holds the rows locked (SELECT ... FOR
// UPDATE) from the read to the commit, which always succeeds. fn runs on
// another goroutine than the caller's; a panic in it is raised again in
// the caller. If the database refuses a shared UPDATE (a value it cannot
// store), each of its updates is tried again on its own, calling fn again.
func (s *Backend) Update(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	return s.update(ctx, updateArg{id: id, fn: fn})
}

// Complete implements asyncreq.Completer: it is Update, and when the
// record it stores is final, the same statement deletes l's job if l
// still holds its lease. The record commits durably, as every record does
// (so does the job's deletion with it); Completes and Updates that arrive
// together share one statement. A lease that no longer holds, or that is
// not one of this Backend's queue, is left as it is and the record written.
func (s *Backend) Complete(ctx context.Context, l *asyncreq.Lease, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	if l == nil {
		return nil, asyncreq.ErrLeaseLost
	}
	arg := updateArg{id: l.ID, fn: fn}
	if h, ok := s.handle(l); ok {
		arg.lease = &h
	}
	return s.update(ctx, arg)
}

// update runs an Update or Complete call.
func (s *Backend) update(ctx context.Context, arg updateArg) (*asyncreq.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if arg.fn == nil {
		return nil, errors.New("postgres: update: nil function")
	}
	res, err := s.updates.do(ctx, arg)
	if res.panicked != nil {
		panic(res.panicked)
	}
	return res.rec, err
}

// Delete implements asyncreq.Store. The queue entries of the record, if
// any, stay: a worker that receives one finds no record and settles it.
func (s *Backend) Delete(ctx context.Context, id string, tombstone bool) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	var n int64
	err := s.pool.QueryRow(ctx, s.sql.delete, s.queue, id, tombstone, time.Now()).Scan(&n)
	if err != nil {
		return s.fail(ctx, "delete "+id, err)
	}
	s.cache.Drop(id)
	if n == 0 {
		return asyncreq.ErrNotFound
	}
	s.changed(id)
	return nil
}

// Purge implements asyncreq.Store. Each call deletes at most limit records
// in one short statement that skips rows locked by other transactions, so
// it never waits on the hot path; then it drops up to limit tombstones
// that ran out.
func (s *Backend) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	var n int
	if err := s.pool.QueryRow(ctx, s.sql.purge, s.queue, now, limit).Scan(&n); err != nil {
		return 0, s.fail(ctx, "purge", err)
	}
	if _, err := s.pool.Exec(ctx, s.sql.purgeTombstones, s.queue, now, limit); err != nil {
		return n, s.fail(ctx, "purge tombstones", err)
	}
	return n, nil
}

// ListUnenqueued implements asyncreq.UnenqueuedLister. Records made by
// Accept are always enqueued; only Create makes records that are not.
func (s *Backend) ListUnenqueued(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, s.sql.unenqueued, s.queue, before, limit)
	if err != nil {
		return nil, s.fail(ctx, "list unenqueued", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.fail(ctx, "list unenqueued", err)
	}
	return ids, nil
}

// Watch implements asyncreq.Watcher. Changes made through this Backend are
// seen at once; changes made by other processes arrive by NOTIFY on the
// schema's channel. If the LISTEN connection is lost, every watch is
// closed when it is back, since a change may have been missed; with
// Options.DisableListen only this Backend's own changes are seen.
func (s *Backend) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s.watches.add(ctx, id), nil
}

// changed tells the watches of id, here and in other processes, that the
// record changed. The change must have committed.
func (s *Backend) changed(id string) {
	s.polls.Changed(id)
	s.announce(id)
}

// announce tells the watches of id, here and in other processes, that the
// record changed, as changed does, leaving the poll cache to the caller.
func (s *Backend) announce(id string) {
	s.watches.fire(id)
	s.notes.post(s.recordPayload(id))
}

// jobsAdded tells the Dequeues waiting here and in other processes that
// jobs may be due. The jobs must have committed.
func (s *Backend) jobsAdded() {
	s.jobs.wake()
	s.notes.post(s.jobsPayload())
}

// recordPayload is the NOTIFY payload that tells other processes the
// record id changed.
func (s *Backend) recordPayload(id string) string {
	return "r" + sep + s.origin + sep + s.queue + sep + id
}

// jobsPayload is the NOTIFY payload that tells waiting Dequeues of the
// queue that a job may be due.
func (s *Backend) jobsPayload() string {
	return "j" + sep + s.queue
}

// sep separates the fields of a NOTIFY payload.
const sep = "\x1f"

// channelName returns the NOTIFY channel of a schema: a valid identifier of
// at most 63 bytes.
func channelName(schema string) string {
	name := "asyncreq_" + schema
	if len(name) > 63 {
		sum := sha256.Sum256([]byte(schema))
		name = "asyncreq_" + hex.EncodeToString(sum[:16])
	}
	return name
}

// asyncCommit is a query that makes the statement's transaction commit
// without waiting for its WAL to be flushed.
const asyncCommit = `SELECT set_config('synchronous_commit', 'off', true) AS v`

// querier is what the accept and conflict queries need: a pool or a tx.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// statements are the SQL texts of a Backend, with its schema filled in.
type statements struct {
	insert, acceptBatch, acceptFresh, exists, get, selectByKey, tombstoned             string
	delete                                                                             string
	updateLocked, getManyForUpdate, updateVersioned, getManyVersioned                  string
	getMany                                                                            string
	purge, purgeTombstones, unenqueued                                                 string
	enqueue, claim, claimLocked, release, nextDue, extend, nack, ack, notify, notifyTx string
	vacuumJobs                                                                         string
	// schema is the quoted schema; tableSizes lists the tables the hot
	// statements read, each with its size, its size at its last ANALYZE
	// or VACUUM, and whether it has statistics (see analyzeDue).
	schema, tableSizes string
}

// newStatements fills the schema (an already quoted identifier) into the
// SQL texts.
func newStatements(schema string) statements {
	r := strings.NewReplacer("{{s}}", schema, "{{cols}}", recordColumns)
	f := func(q string) string { return r.Replace(q) }
	// $1 is always the queue.
	const values = `$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
		$20, $21, $22, $23, $24, $25`
	// update is the batch update of records (see updateRows.args for its
	// arguments), to which the two forms add their WHERE clause, and which
	// settles the leases of Complete calls (the last three arrays) in the
	// same statement: a job is deleted only if its lease still holds and
	// its record is among those written. The columns a worker never
	// changes, those of the request, are sent and rewritten only when they
	// changed ($18, and $17 for the body), and so is the result body
	// ($12): an update costs little more than the fields it changes.
	//
	// The jobs are found by their primary key alone, as Ack's are (see
	// ack).
	const update = `WITH u AS (
				UPDATE {{s}}.records AS t SET state = r.state, enqueued = r.enqueued,
					attempts = r.attempts, lease_token = r.lease_token,
					cancel_requested = r.cancel_requested, progress = NULLIF(r.progress, '')::jsonb,
					result = NULLIF(r.result, '')::jsonb,
					result_body = CASE WHEN r.keep_result_body THEN t.result_body ELSE r.result_body END,
					error = NULLIF(r.error, '')::jsonb, updated_at = r.updated_at, expires_at = r.expires_at,
					body = CASE WHEN r.keep_body THEN t.body ELSE r.body END,
					body_hash = CASE WHEN r.keep_request THEN t.body_hash ELSE r.body_hash END,
					method = CASE WHEN r.keep_request THEN t.method ELSE r.method END,
					url = CASE WHEN r.keep_request THEN t.url ELSE r.url END,
					header = CASE WHEN r.keep_request THEN t.header ELSE NULLIF(r.header, '')::jsonb END,
					content_type = CASE WHEN r.keep_request THEN t.content_type ELSE r.content_type END,
					created_at = CASE WHEN r.keep_request THEN t.created_at ELSE r.created_at END,
					retention_ns = CASE WHEN r.keep_request THEN t.retention_ns ELSE r.retention_ns END,
					tombstone_ttl_ns = CASE WHEN r.keep_request THEN t.tombstone_ttl_ns ELSE r.tombstone_ttl_ns END,
					callback = NULLIF(r.callback, '')::jsonb
				FROM unnest($2::text[], $3::text[], $4::text[], $5::boolean[], $6::integer[], $7::text[],
					$8::boolean[], $9::text[], $10::text[], $11::bytea[], $12::boolean[], $13::text[],
					$14::timestamptz[], $15::timestamptz[], $16::bytea[], $17::boolean[], $18::boolean[],
					$19::text[], $20::text[], $21::text[], $22::text[], $23::text[], $24::timestamptz[],
					$25::bigint[], $26::bigint[], $27::text[])
					AS r(id, version, state, enqueued, attempts, lease_token, cancel_requested, progress,
						result, result_body, keep_result_body, error, updated_at, expires_at, body, keep_body,
						keep_request, body_hash, method, url, header, content_type, created_at, retention_ns,
						tombstone_ttl_ns, callback)
				WHERE t.queue = $1 AND t.id = ANY($2::text[]) AND t.id = r.id`
	const settle = `
				RETURNING t.id, t.xmin::text AS version
			), d AS (
				DELETE FROM {{s}}.jobs AS j
				WHERE j.job_id = ANY ($28::bigint[]) AND j.lease_token = ANY ($29::text[])
					AND j.id = ANY ($30::text[]) AND j.id = ANY (ARRAY(SELECT id FROM u))
					AND (j.run_at > now()) IS TRUE
			)
			SELECT id, version FROM u`
	// accept inserts records, and a job for each record inserted.
	const accept = `WITH ins AS (
				INSERT INTO {{s}}.records (queue, {{cols}})
				SELECT $1, r.id, r.owner, r.key, r.body_hash, r.state, r.enqueued, r.method, r.url,
					NULLIF(r.header, '')::jsonb, r.content_type, r.body, r.attempts, r.lease_token,
					r.cancel_requested, NULLIF(r.progress, '')::jsonb, NULLIF(r.result, '')::jsonb,
					r.result_body, NULLIF(r.error, '')::jsonb, r.created_at, r.updated_at,
					r.retention_ns, r.tombstone_ttl_ns, r.expires_at, NULLIF(r.callback, '')::jsonb
				FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[],
					$8::text[], $9::text[], $10::text[], $11::text[], $12::bytea[], $13::integer[],
					$14::text[], $15::boolean[], $16::text[], $17::text[], $18::bytea[], $19::text[],
					$20::timestamptz[], $21::timestamptz[], $22::bigint[], $23::bigint[],
					$24::timestamptz[], $25::text[])
					WITH ORDINALITY AS r(id, owner, key, body_hash, state, enqueued, method, url, header,
						content_type, body, attempts, lease_token, cancel_requested, progress, result,
						result_body, error, created_at, updated_at, retention_ns, tombstone_ttl_ns,
						expires_at, callback, n)
				ORDER BY r.n
				{{conflict}}
				RETURNING id
			), job AS (
				INSERT INTO {{s}}.jobs (queue, id, run_at)
				SELECT $1, ins.id, now() FROM ins
			)
			SELECT ins.id FROM ins`
	return statements{
		schema: schema,
		tableSizes: `SELECT c.relname, pg_relation_size(c.oid),
				c.relpages::bigint * current_setting('block_size')::bigint,
				EXISTS (SELECT 1 FROM pg_stats AS p
					WHERE p.schemaname = $1 AND p.tablename = c.relname AND p.attname = 'queue')
			FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname IN ('records', 'jobs')`,
		insert: f(`INSERT INTO {{s}}.records (queue, {{cols}}) VALUES ($1, ` + values + `)
			ON CONFLICT DO NOTHING`),
		// One statement, so it commits atomically on its own: the records
		// that do not conflict, and a job for each of them.
		acceptBatch: f(strings.Replace(accept, "{{conflict}}", "ON CONFLICT DO NOTHING", 1)),
		// acceptBatch for records without an idempotency key, whose only
		// possible conflict is a duplicate id: since ids are new random
		// values, the insert does without ON CONFLICT, whose speculative
		// insertion costs index probes and a WAL record per row, and a
		// duplicate id fails the statement (see runAccepts).
		acceptFresh: f(strings.Replace(accept, "{{conflict}}", "", 1)),
		exists:      f(`SELECT EXISTS (SELECT 1 FROM {{s}}.records WHERE queue = $1 AND id = $2)`),
		get:         f(`SELECT {{cols}} FROM {{s}}.records WHERE queue = $1 AND id = $2`),
		selectByKey: f(`SELECT {{cols}} FROM {{s}}.records
			WHERE queue = $1 AND owner = $2 AND idempotency_key = $3 AND idempotency_key <> ''`),
		tombstoned: f(`SELECT owner FROM {{s}}.tombstones
			WHERE queue = $1 AND id = $2 AND expires_at > $3`),
		// update's optimistic form: a record is written only if its row
		// version (xmin) is still the one read ($3). It commits on its own
		// (see Backend.Update), and returns the ids written with their new
		// versions.
		updateVersioned: f(update + ` AND t.xmin = r.version::xid` + settle),
		// update's form for a transaction that holds the rows locked.
		updateLocked: f(update + settle),
		getMany: f(`SELECT {{cols}} FROM {{s}}.records
			WHERE queue = $1 AND id = ANY($2::text[])`),
		getManyVersioned: f(`SELECT {{cols}}, xmin::text FROM {{s}}.records
			WHERE queue = $1 AND id = ANY($2::text[])`),
		getManyForUpdate: f(`SELECT {{cols}} FROM {{s}}.records
			WHERE queue = $1 AND id = ANY($2::text[]) ORDER BY id FOR UPDATE`),
		delete: f(`WITH d AS (
				DELETE FROM {{s}}.records WHERE queue = $1 AND id = $2
				RETURNING id, owner, tombstone_ttl_ns
			), t AS (
				INSERT INTO {{s}}.tombstones (queue, id, owner, expires_at)
				SELECT $1, d.id, d.owner, $4::timestamptz + d.tombstone_ttl_ns / 1000 * interval '1 microsecond'
				FROM d WHERE $3 AND d.tombstone_ttl_ns > 0
				ON CONFLICT (queue, id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
			)
			SELECT count(*) FROM d`),
		// The rows to delete are picked once, in a materialized CTE that
		// skips rows other transactions hold, so a call deletes at most $3
		// records and never waits on the hot path.
		purge: f(`WITH c AS MATERIALIZED (
				SELECT id FROM {{s}}.records
				WHERE queue = $1 AND expires_at <= $2
					AND state IN ('succeeded', 'failed', 'canceled')
				ORDER BY expires_at
				LIMIT $3
				FOR UPDATE SKIP LOCKED
			), d AS (
				DELETE FROM {{s}}.records AS r USING c
				WHERE r.queue = $1 AND r.id = c.id
				RETURNING r.id, r.owner, r.expires_at, r.tombstone_ttl_ns
			), t AS (
				INSERT INTO {{s}}.tombstones (queue, id, owner, expires_at)
				SELECT $1, d.id, d.owner, d.expires_at + d.tombstone_ttl_ns / 1000 * interval '1 microsecond'
				FROM d
				WHERE d.expires_at + d.tombstone_ttl_ns / 1000 * interval '1 microsecond' > $2
				ON CONFLICT (queue, id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
			)
			SELECT count(*) FROM d`),
		purgeTombstones: f(`WITH c AS MATERIALIZED (
				SELECT id FROM {{s}}.tombstones WHERE queue = $1 AND expires_at <= $2
				LIMIT $3 FOR UPDATE SKIP LOCKED
			)
			DELETE FROM {{s}}.tombstones AS t USING c WHERE t.queue = $1 AND t.id = c.id`),
		unenqueued: f(`SELECT id FROM {{s}}.records
			WHERE queue = $1 AND NOT enqueued AND state IN ('pending', 'running') AND created_at < $2
			ORDER BY created_at LIMIT $3`),

		enqueue: f(`INSERT INTO {{s}}.jobs (queue, id, run_at)
			VALUES ($1, $2, now() + $3::bigint * interval '1 microsecond')`),
		// The jobs table is a queue: its statistics, whenever they are
		// taken, may say it is empty while it holds thousands of jobs, and
		// then every plan looks as cheap as every other. So each statement
		// that finds jobs by id says so in a form only the primary key can
		// serve (job_id = ANY (...), even beside a join on job_id that says
		// the same), and tests that a lease still holds in one no index can
		// serve ((run_at > now()) IS TRUE), so that no plan scans jobs_due
		// for the leases that run out later, or every job for each one
		// (TestJobPlansNeedNoStatistics).
		//
		// The statements below change only a job's lease, and commit without
		// waiting for the WAL flush (synchronous_commit off): if the database
		// crashes before the flush, the job is just delivered again, which
		// the worker handles through the record's lease token. Records,
		// and the jobs Accept and Enqueue create, always commit durably.
		//
		// Claims up to $2 due jobs, oldest first, skipping those another
		// Dequeue is claiming; a job whose lease ran out is due again. Each
		// job comes with its record and the record's row version (NULL
		// when it has none), for the version cache: the worker's claim of
		// the record then needs no read of its own. The record is looked up
		// in a LATERAL subquery that LIMIT keeps apart, so that it is one
		// primary key probe per job: as a plain join, a plan made while the
		// table was small scanned every record of the queue for each job.
		claim: f(claimStatement(false)),
		// claim's form for DequeueClaim's transaction, which writes the
		// claims of the records before it commits, durably, with the
		// leases: each record is locked as it is read.
		claimLocked: f(claimStatement(true)),
		// Run on its own (VACUUM cannot run in a transaction), see
		// vacuum.go.
		vacuumJobs: f(`VACUUM (SKIP_LOCKED) {{s}}.jobs`),
		// How long until the next job is due, NULL if the queue is empty.
		nextDue: f(`SELECT extract(epoch FROM min(run_at) - clock_timestamp())::float8
			FROM {{s}}.jobs WHERE queue = $1`),
		extend: f(`WITH cfg AS MATERIALIZED (` + asyncCommit + `)
			UPDATE {{s}}.jobs SET run_at = now() + $4::bigint * interval '1 microsecond'
			FROM cfg
			WHERE queue = $1 AND job_id = $2 AND lease_token = $3 AND (run_at > now()) IS TRUE`),
		nack: f(`WITH cfg AS MATERIALIZED (` + asyncCommit + `)
			UPDATE {{s}}.jobs SET run_at = now() + $4::bigint * interval '1 microsecond', lease_token = NULL
			FROM cfg
			WHERE queue = $1 AND job_id = $2 AND lease_token = $3 AND (run_at > now()) IS TRUE`),
		// Sent after the changes it announces have committed, on its own
		// and without waiting for a WAL flush: PostgreSQL serializes the
		// commits of transactions that NOTIFY, flush included, so a NOTIFY
		// inside the durable transactions would serialize them all.
		notify: f(`WITH cfg AS MATERIALIZED (` + asyncCommit + `)
			SELECT pg_notify($1, p) FROM cfg, unnest($2::text[]) AS p`),
		notifyTx: `SELECT pg_notify($1, $2)`,
		// Like ack, release finds each job by its primary key alone, its
		// token still the lease's (the leases are this Backend's own claims).
		release: f(`WITH cfg AS MATERIALIZED (` + asyncCommit + `)
			UPDATE {{s}}.jobs AS j SET run_at = now(), lease_token = NULL,
				deliveries = greatest(j.deliveries - 1, 0)
			FROM cfg
			WHERE j.job_id = ANY ($1::bigint[]) AND j.lease_token = ANY ($2::text[])`),
		// Each lease is one job, found by its primary key, whose token must
		// still be the lease's. The queue is left out on purpose (job ids
		// are unique across queues, and Ack checks the lease's queue): with
		// it, the planner may also scan jobs_due for run_at > now(), whose
		// entries include every job acked within a lease's length until
		// vacuum removes them, which made each Ack slower the more jobs
		// had been settled.
		ack: f(`WITH cfg AS MATERIALIZED (` + asyncCommit + `)
			DELETE FROM {{s}}.jobs AS j USING cfg
			WHERE j.job_id = ANY ($1::bigint[]) AND j.lease_token = ANY ($2::text[])
				AND (j.run_at > now()) IS TRUE
			RETURNING j.job_id, j.lease_token`),
	}
}
