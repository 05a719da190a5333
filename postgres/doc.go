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
// # Durability
//
// Records, and the jobs that Accept, AcceptTx and Enqueue create, commit
// with the server's synchronous_commit setting (on by default). Changes
// to a lease alone (claim, Extend, Ack, Nack) commit with
// synchronous_commit off: a database crash may lose the last few of them,
// which only makes a job be delivered again, a case the Worker handles
// through the record's lease token.
//
// Every change to a record commits durably, the Worker's claim of a record
// (pending to running with a new LeaseToken and Attempts) included. A claim
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
// Watch (asyncreq.Watcher) is cross-process: a Backend that changes a record
// sends a NOTIFY on the schema's channel once the change has committed, and
// every Backend on the schema, in any process, closes its watches of that
// record when it arrives on its LISTEN connection. If that connection is
// lost, every watch is closed when it is back, since a change may have been
// missed; a NOTIFY that fails is logged, and other processes miss its
// change. With Options.DisableListen there is no LISTEN connection, and
// Watch sees only the changes made through its own Backend; Handlers and
// Workers take a watch as a hint and read the record on their own schedule
// too (a long poll at least every 500ms and at its deadline, a worker at
// every heartbeat), so another process's change then reaches them within
// that time instead of at once.
//
// # Retention
//
// Purge deletes expired final records in bounded batches, skipping rows
// other transactions hold, and leaves a tombstone per record so that its
// id answers 410 Gone until the tombstone runs out. Indexes keep status
// lookups (primary key), dequeues and purges fast with millions of rows.
//
// # Statistics
//
// QueueStats (asyncreq.QueueStater) counts the queue's jobs exactly in one
// statement, from the jobs_due index, linear in the jobs due and delayed:
// about 0.2 s for a million pending jobs on a 2-core VM (see
// docs/stats.md). It does not count records by final state.
package postgres
