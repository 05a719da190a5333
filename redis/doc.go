// Package redis is an asyncreq backend on Redis (6.2 or later; tested on
// 7.0) through go-redis v9: one Backend value is the Store, the Queue, the
// Accepter, the Watcher, the UnenqueuedLister, the BatchDequeuer and the
// Completer, so a handler accepts a request in one atomic step and a worker
// records an outcome and acks its lease in another; for operators it is also
// an asyncreq.Lister, an asyncreq.FinishedPurger and an asyncreq.Requeuer.
//
//	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
//	backend, err := redis.New(ctx, client, &redis.Options{Prefix: "myapp:", Queue: "reports"})
//	...
//	handler, err := asyncreq.NewHandler(backend, nil)
//	worker, err := asyncreq.NewWorker(backend, processor, nil)
//
// Its names follow the convention of every asyncreq backend module: the
// type that is both Store and Queue is Backend, and since the caller hands
// in a client it owns, the constructor is New(ctx, client, opts), where
// ctx bounds New's one round trip (it creates the queue's stream and
// consumer group, so a wrong address or password fails there) and nil
// opts means the defaults. The Backend's Close leaves the client open;
// close the client after it.
//
// # Keys
//
// Every key starts with Options.Prefix and carries the hash tag {Queue}:
//
//	<prefix>{<queue>}:r:<id>         record (hash: d, b, r, v, k, t, x, i)
//	<prefix>{<queue>}:t:<id>         tombstone ("o:" + the record's owner)
//	<prefix>{<queue>}:k:<n>:<owner>:<key>  idempotency key -> id
//	<prefix>{<queue>}:q              stream of entries (id, n)
//	<prefix>{<queue>}:d              delayed entries (sorted set by due time)
//	<prefix>{<queue>}:u              unenqueued records (sorted set by creation)
//	<prefix>{<queue>}:w:<id>         pub/sub channel of a record's changes
//	<prefix>{<queue>}:ls:<state>     listing index of a state (sorted set)
//	<prefix>{<queue>}:lo:<n>:<owner>:<state>  listing index of an owner's records in a state
//	<prefix>{<queue>}:lf             final records (sorted set by UpdatedAt)
//	<prefix>{<queue>}:le:<state>     final records that expire (sorted set by expiry)
//
// Because all keys of a queue share one hash tag, every Lua script touches
// one slot, and the backend runs on Redis Cluster; the price is that one
// queue, its records included, lives on one shard. Spread load over shards
// with several queues (several Backends with different Queue names).
//
// # Records
//
// A record is a hash: its fields as JSON, and its body and result body as
// raw bytes in fields of their own, so that a state change does not send a
// large body again. Create and Accept are one Lua script: the record, its
// idempotency key (SET NX semantics, scoped by owner) and, for Accept, the
// stream entry are written together or not at all. Concurrent Creates and
// Accepts share that script call (group commit): calls made while one is
// on the wire are written together by the next call, each record in turn
// with its own outcome, as if the calls had been made one after the other,
// so both Redis and the client pay one round trip per batch. A lone call
// is written at once: batching adds no wait. Update reads the
// record, calls fn, and stores the result with a Lua compare-and-set on a
// version field, calling fn again after a conflict. When a record becomes
// final with an ExpiresAt, the script gives the record and its idempotency
// key that expiry and writes a tombstone that expires TombstoneTTL later,
// so Redis purges by itself; Purge only removes the listing-index entries
// such a record left (see Listing).
//
// # Queue
//
// The queue is a stream with a consumer group. A lease is the entry's place
// in the group's pending entries list: it runs out when the entry has been
// idle there for the lease's ttl, and a Dequeue then reclaims it with
// XAUTOCLAIM (at most every 250ms per Backend). Extend resets the idle time
// with XCLAIM to the same consumer; Extend, Ack and Nack first check, in the
// same script, that the entry is still pending for the lease's consumer
// with an unchanged delivery count and has not been idle for the lease's
// length, and return asyncreq.ErrLeaseLost otherwise. Ack removes the entry
// (XACK and XDEL), so the stream holds only work not yet done; Complete
// does the same, with the same checks, in the script that stores a final
// outcome (a lease that no longer holds is left, and the outcome stored).
// Nack with a delay, and Enqueue with one, put the entry in a sorted set
// scored by the Redis server's clock; a Dequeue moves due entries to the
// stream.
//
// Dequeue blocks in XREADGROUP, so an idle worker picks a new request up at
// once. The block is bounded by Options.MaxBlock (default 1s), by the time
// until the next delayed entry is due and by the context's deadline, so
// that due entries and run-out leases are noticed. On a *goredis.Client,
// canceling the context of a blocked Dequeue sends CLIENT UNBLOCK for its
// connection, so it returns at once (this needs a second connection in the
// client's pool); other clients return within the block time, unless
// Options.BlockingClient names a *goredis.Client for the blocking reads (as
// when the Backend runs on go-redis's AutoPipeliner over that client).
//
// Since the reclaim threshold is the ttl of the Dequeue that reclaims,
// all workers of one queue should use the same lease length.
//
// # Watching
//
// Every script that changes an existing record also PUBLISHes to the
// record's channel, so Watch needs no keyspace notifications. Creating a
// record publishes nothing: ids are new, so nobody watches a record before
// it exists (the handler and the worker watch records they created or
// read), which is how the other backends behave too. A Backend keeps one
// pub/sub connection, subscribes to a record's channel while someone
// watches it, and returns from Watch once Redis has confirmed the
// subscription. If the pub/sub connection fails, every watch is released
// as if its record had changed.
//
// Watch is cross-process: the PUBLISH reaches every Backend subscribed to
// the record's channel, in any process, so a worker process's outcome
// ends a long poll in an API process at once, and a client's cancel
// reaches the worker running the request at once.
//
// # Polling clients
//
// A Get is answered without a round trip from the record as this Backend
// last read, accepted or wrote it, for up to Options.PollCacheAge (500ms
// by default), unless a change of it was announced since: the message
// that every change publishes names its writer, and a Backend subscribes
// to all of its queue's channels with one PSUBSCRIBE, made by its first
// Get, and drops a record when another writer's message names it. Nothing
// is cached before Redis has confirmed that subscription or while its
// connection is down. A lost message would delay what a poll sees by
// PollCacheAge at most; a delivered one, by the time it took to arrive.
//
// # Durability
//
// A 202 from a handler on this backend is as durable as the Redis server's
// persistence: with appendonly yes and appendfsync always, an acknowledged
// accept survives a crash of the server; with appendfsync everysec (the
// usual setting) up to about a second of accepts can be lost; without AOF
// (RDB snapshots only, or none) everything since the last snapshot can be.
// A replica does not change this unless writes are made to wait for it
// (WAIT). The backend does not check the server's settings.
//
// # Listing
//
// The operator capabilities (asyncreq.Lister, asyncreq.FinishedPurger,
// asyncreq.Requeuer) rest on sorted sets that the scripts writing a record
// keep in the same atomic step: Create, Accept, Update and Delete add,
// move and remove a record's entries, so an index never disagrees with
// the records. A record is in the index of its state and in that of its
// owner and state, both scored 0 and ordered by member (CreatedAt in
// nanoseconds as 16 hex digits, then the id), and a final record also in
// an index by UpdatedAt and, if it expires, in one by expiry. The cost:
//
//   - List: one pipelined ZREVRANGEBYLEX per selected index (one with
//     ListQuery.State, five without, merged in the client), O(log n +
//     page) each, then one pipelined HGET of the page's records without
//     their bodies: two round trips, whatever the number of records;
//   - CountStates: one script of ZCARDs and ZCOUNTs, O(log n), exact;
//   - PurgeFinished: O(log n) per record deleted, in script calls that look
//     at no more than 1000 entries each;
//   - Requeue: Update with an XADD in the same script;
//   - each write: up to four ZADD or ZREM (O(log n)) in the script it
//     already runs: one ZADD for an accept, two ZADD and two ZREM more for
//     a request's claim and outcome (for a request with an owner, one
//     ZADD more for the accept and one ZADD and ZREM more for each change
//     of state). Measured on a shared 2-vCPU machine (the server's
//     script time, medians of three runs), that took a lone accept from
//     22 to 40 µs, an accept among 32 concurrent ones from 13 to 20 µs,
//     and a request's whole run (accept, claim, outcome, ack) from 74 to
//     120 µs;
//   - memory: a record's entries (two for an unfinished record, four for
//     a final one, one fewer each without an owner) and its field i took
//     about 630 bytes per record at a million records (2,065 in all).
//
// docs/benchmarks-scale.md has the figures: a page of 50 took 1 to 4 ms
// at a million records, as at ten thousand.
//
// Redis expires a final record by itself at its ExpiresAt, which leaves
// its entries behind: CountStates does not count them and List skips
// them, and Purge, which a Worker calls every PurgeInterval, removes them
// in script calls of PurgeBatch entries.
//
// Records written by a version of this package without the indexes are in
// none of them, so they are not listed, counted or purged by
// PurgeFinished until they change (a Worker's claim of a pending one
// indexes it) or Reindex adds them: call it once after upgrading.
//
// # Statistics
//
// QueueStats (asyncreq.QueueStater) is one read-only script of O(log n)
// commands (XLEN, the XPENDING summary, ZCOUNT), about 0.1 ms whatever the
// backlog. A lease that ran out counts as running until a Dequeue
// reclaims it. It does not count records by final state.
package redis
