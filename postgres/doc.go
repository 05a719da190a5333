// Package postgres is an asyncreq backend on PostgreSQL (pgx v5): one
// Backend that is the asyncreq.Store and the asyncreq.Queue of a Handler
// and its Workers, for API and worker processes on many machines sharing
// one database.
//
// Its names follow the convention of every asyncreq backend module: the
// type that is both Store and Queue is Backend, and since the caller hands
// in a pool it owns, the constructor is New(ctx, pool, opts), where ctx
// bounds New's own queries and nil opts means the defaults. The Backend's
// Close leaves the pool open; close the pool after it.
//
// # Setup
//
// The tables live in a schema of their own (Options.Schema, default
// "asyncreq"), so they can sit in an application's existing database.
// Migrate creates the schema and brings it to the current version with
// embedded, versioned SQL migrations, recorded in the schema's
// schema_migrations table; run it as a deployment step, or set
// Options.MigrateOnStart. Several endpoints share the tables, each with its
// own Options.Queue name.
//
//	pool, err := pgxpool.New(ctx, "postgres://...")
//	store, err := postgres.New(ctx, pool, &postgres.Options{Queue: "reports", MigrateOnStart: true})
//	defer store.Close()
//	h, err := asyncreq.NewHandler(store, nil)
//	w, err := asyncreq.NewWorker(store, processor, nil)
//
// # Accepting
//
// Accept writes the record, its queue entry and its idempotency key in one
// transaction, and answers only after the commit. Accepts that arrive
// together share a transaction (group commit), which is how a handful of
// connections commit thousands of durable accepts a second; a lone accept
// is written at once, so batching adds no latency.
//
// AcceptTx does the same inside the caller's own pgx.Tx: the application
// records its business change and the asynchronous request atomically (the
// transactional outbox), and workers see the request when the transaction
// commits.
//
// # Delivery
//
// Dequeue claims due jobs with FOR UPDATE SKIP LOCKED, several at a time
// (DequeueBatch), and sets a lease: the job's due time becomes the end of
// the lease, so a job whose worker died is simply due again when the lease
// runs out. Each delivery has a new lease token; Ack, Nack and Extend with
// a stale lease return asyncreq.ErrLeaseLost. An idle Dequeue is woken at
// once by LISTEN/NOTIFY when work arrives, and looks again every
// Options.PollInterval in case a notification was lost.
//
// A Worker on the Backend uses DequeueClaim (asyncreq.Claimer): one
// transaction of two round trips takes the leases, locking the jobs'
// records as it reads them, and, once the Worker's claim function has run
// on each record, writes the claims and commits. A request thus starts
// after one commit, not after the lease's and then its record's.
//
// # Durability
//
// Records, and the jobs that Accept, AcceptTx and Enqueue create, commit
// with the server's synchronous_commit setting (on by default). Changes
// to a lease alone (DequeueBatch's claim, Extend, Ack, Nack) commit with
// synchronous_commit off: a database crash may lose the last few of them,
// which only makes a job be delivered again, a case the Worker handles
// through the record's lease token.
//
// Every change to a record commits durably, the Worker's claim of a record
// (pending to running with a new LeaseToken and Attempts) included:
// DequeueClaim commits the leases with it, durably. A claim
// committed with synchronous_commit off would not be safe, although the
// lease token fences a lost claim off: after a database crash the job's
// lease, committed first, may have survived while the record's claim was
// lost; the Worker, which outlives the database crash, then finds its
// token gone from the record, takes the request for one that a newer
// attempt holds, and acks its lease, which deletes the request's only
// queue entry while the record is still pending or running: the request
// would never finish.
//
// Update writes optimistically (see Backend.Update): no row lock is held
// across a round trip, and a batch of updates is one statement that
// commits on its own. It usually needs no read either: the Backend keeps the
// records it recently read or wrote with their row versions (a dequeue
// returns the records of the jobs it claims), and a stale copy only costs
// a retry. Complete (asyncreq.Completer) writes a worker's outcome and
// deletes its job in one such statement, so the deletion commits durably
// with the record, and a Worker whose Store and Queue are one Backend
// records an outcome in one commit.
//
// # Watching
//
// Watch (asyncreq.Watcher) is cross-process: a Backend that changes a
// record sends a NOTIFY on the schema's channel once the change has
// committed, and every Backend on the schema, in any process, closes its
// watches of that record when it arrives on its LISTEN connection. The
// NOTIFY statements of one Backend are at least 5ms apart: a change after a
// quiet spell is sent at once, and under a stream of changes one statement
// carries all those of the last 5ms. Other processes then learn of a change
// up to 5ms later under load, and PostgreSQL commits at most 200 such
// statements a second, where it had committed about 1,100 under a load of
// accepts. If the LISTEN connection is lost, every watch is closed when it
// is back, since a change may have been missed; a NOTIFY that fails is
// logged, and other processes miss its change. With Options.DisableListen
// there is no LISTEN connection, and Watch sees only the changes made
// through its own Backend; Handlers and Workers take a watch as a hint and
// read the record on their own schedule too (a long poll at least every
// 500ms and at its deadline, a worker at every heartbeat), so another
// process's change then reaches them within that time instead of at once.
//
// # Retention
//
// Purge deletes expired final records in bounded batches, skipping rows
// other transactions hold, and leaves a tombstone per record so that its
// id answers 410 Gone until the tombstone runs out. Indexes keep status
// lookups (primary key), dequeues and purges fast with millions of rows.
//
// # Listing and operator actions
//
// The Backend is an asyncreq.Lister, an asyncreq.FinishedPurger and an
// asyncreq.Requeuer, for an operator's tools (asyncreq.List, CountStates,
// PurgeFinished, RetryRequest).
//
// List pages newest first with a keyset cursor: a page is one statement,
// WHERE (created_at, id) < (cursor) ORDER BY created_at DESC, id DESC
// LIMIT n, that scans an index backwards from the cursor and reads the
// page's rows and one more (to tell whether another page follows), with no
// sort, however many records there are. Ids compare byte by byte
// (COLLATE "C"), as the cursor's do in Go, so records with ids of the old
// 26-character form list in the same order whatever the database's
// collation. Migration 0005 adds the indexes, each on the queue, then
// created_at and id:
//
//   - records_created serves no filter, and succeeded, which is a filter
//     on its scan (cheap while most records succeeded);
//   - records_owner_created (with owner after queue) serves an owner, and
//     an owner with a state, which is then a filter on the owner's
//     records: the page reads about 50 of the owner's records per percent
//     of them in that state;
//   - records_live, partial WHERE expires_at IS NULL, holds the records not
//     finished, among which pending and running ones are found: a scan
//     bounded by the backlog, not by the records retained;
//   - records_erred, partial WHERE error IS NOT NULL, holds the failed and
//     canceled records (and unfinished ones whose earlier attempt failed),
//     among which those two states are found.
//
// No index names the state column, on purpose: an update is heap-only
// (HOT), adding no index entry, only when it changes no column any index
// uses, in its key or its predicate, and the Worker's claim (pending to
// running) changes state but no indexed column. An index on state, even a
// partial one for the failed and canceled records only, would make every
// claim add entries to the primary key and to each full index. The
// state filters rely instead on what the lifecycle's transitions keep
// true: a record not finished has no ExpiresAt, and a failed or canceled
// one has an Error. A record stored against that through Create (a failed
// one without an Error, say) is missing from its state's listing and
// count. On a table of a million records a page of 50 takes 0.2-1.3 ms
// with any filter but an owner and a state together, 9-26 ms for an
// owner of 10,000 records with 1% of them in the state; the worker path
// pays the new indexes on accepts and outcomes only (figures in
// docs/benchmarks-scale.md, "Listing").
//
// CountStates counts in one statement, in one snapshot (and plans one more
// for a large queue). A queue of at most 10,000 records is counted exactly. In a larger one pending and running are
// exact, counted through records_live (a cost that follows the backlog);
// failed and canceled are exact, counted through records_erred (a cost
// that follows the failed and canceled records retained); succeeded is
// PostgreSQL's estimate, the planner's row estimate from the table's
// statistics as of its last ANALYZE, scaled to the table's current size.
// A GROUP BY state of every record took 0.7 s at a million; this, 38 ms
// with 30,000 records not succeeded.
//
// PurgeFinished deletes one batch per statement, like Purge: at most limit
// final records last changed before the given time, found through
// records_expires_at oldest expiry first, skipping rows other
// transactions hold, with a tombstone each when asked. The last batch of a
// purge, the one that finds fewer than limit, reads the index entries of
// every final record of the queue.
//
// Requeue locks the record, calls fn, writes the record and makes the
// queue hold a due entry for it in one transaction. A request canceled
// before a Worker dequeued it still has its entry: Requeue makes that
// entry due again instead of adding a second, so the request is delivered
// once. Finding it reads the queue's jobs (they have no index by id, which
// every accept and claim would pay for), linear in the queue's depth.
//
// Migration 0005 runs, as every migration does, in Migrate's transaction,
// where CREATE INDEX CONCURRENTLY is not allowed: its plain CREATE INDEX
// statements hold a SHARE lock on the records table while they build,
// during which reads go on and writes wait; about 10 s at a million
// records on a 2-core VM. The migration's file tells how to build the
// indexes beforehand, CONCURRENTLY, so that Migrate finds them built.
//
// # Statistics
//
// QueueStats (asyncreq.QueueStater) counts the queue's jobs exactly in one
// statement, from the jobs_due index, linear in the jobs due and delayed:
// about 0.2 s for a million pending jobs on a 2-core VM (see
// docs/stats.md). It does not count records by final state; CountStates
// does (see Listing and operator actions).
package postgres
