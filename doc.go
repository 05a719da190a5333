// Package asyncreq implements the asynchronous request-reply pattern for
// net/http: a client submits a slow operation, gets 202 Accepted at once
// with a status URL, polls it, and follows a 303 See Other to the result
// when the work is done. A background Worker does the work.
//
// The first sections below are for a service that uses the package; the
// last one, "Writing a backend", is for the author of a Store or a Queue.
//
// # Overview
//
// Three concrete types do the work, over a [Backend] that the backend
// packages provide:
//
//   - [Handler], made by [NewHandler], is an http.Handler that serves the
//     whole wire contract (submit, status, result, cancel) under whatever
//     prefix it is mounted at;
//   - [Worker], made by [NewWorker], takes requests off the Backend's
//     queue, runs a [Processor] on them with leases, heartbeats, retries,
//     timeouts and panic recovery, and records their outcome;
//   - [Async], made by [NewAsync], makes any existing http.Handler
//     asynchronous: the handler runs later on the recorded request, and its
//     response is replayed at the result URL as if the call had been
//     synchronous;
//   - [Endpoint], made by [NewEndpoint], is the common case in one value:
//     a Handler and the Worker running its Processor over one backend
//     ([Async] is the Endpoint of a wrapped http.Handler).
//
// A service starts a request from its own code with [Handler.Submit] (or
// [Handler.SubmitVia], inside its own database transaction) through the
// same accept path as a POST. [JSONProcessor] makes a typed function a
// Processor whose input is decoded and validated the same way at submit
// and when it runs.
//
// The flow of one request:
//
//	client ── POST /jobs ─────────► Handler: Store + Queue hold it ── 202, Location, Retry-After
//	Worker ◄── Queue lease ── Store: pending → running (attempt n, lease token)
//	           Processor.Process ── progress ──► Store; heartbeats extend the lease
//	           success → succeeded + result; error → retry with backoff, or failed
//	client ── GET /jobs/{id}/status ──► 200 + Retry-After while it runs | 303 → /jobs/{id}
//	client ── GET /jobs/{id} ─────────► 200 result | 404 not yet
//
// # Using it
//
// A service needs a Backend, a Handler to mount and a Worker to start:
//
//	b, err := sqlite.Open(ctx, "jobs.db", nil) // or memory, postgres, redis, nats
//	h, err := asyncreq.NewHandler(b, &asyncreq.HandlerOptions{MaxBodyBytes: 1 << 20})
//	w, err := asyncreq.NewWorker(b, processor, &asyncreq.WorkerOptions{Concurrency: 8})
//	mux.Handle("/jobs/", http.StripPrefix("/jobs", h))
//	err = w.Start(ctx) // ctx from signal.NotifyContext: its end stops w gracefully
//
// The memory package is the in-process backend; the sqlite, postgres,
// redis and nats modules are durable ones, each a Backend by itself. A
// Queue that keeps no records (the rabbitmq module) is paired with any
// Store by [Pair].
//
// The API of a service, by what it is for:
//
//   - serving the contract: [NewHandler], [HandlerOptions], [Handler];
//   - running the work: [NewWorker], [WorkerOptions], [Worker.Start],
//     [Worker.Stop], and the [Processor] with its [Request] and [Result];
//   - wrapping an http.Handler: [NewAsync], [AsyncOptions],
//     [HandlerProcessor], [OwnerFromContext];
//   - inside a processor: [ReportProgress], [Permanent], [RetryAfter],
//     [Problem], and the causes [ErrCanceled], [ErrTimeout], [ErrShutdown];
//   - for clients of the contract (see also the client package):
//     [StatusDocument], [State], [Progress], [ValidID].
//
// # The HTTP contract
//
//	POST   B               202 + Location: B/{id}/status + Retry-After + status document
//	                       (413 over the body limit, 503 when the backend cannot accept,
//	                       Idempotency-Key: same request same answer, any difference 422,
//	                       racing 409; Prefer: wait=N answers with the 2xx result if it
//	                       succeeded in time, 303 to the status URL if it failed)
//	GET    B/{id}/status   200 + Retry-After while pending or running; 303 + Location when
//	                       succeeded; 200 with error when failed or canceled; 404; 410 Gone
//	                       (to the record's owner only); Cache-Control: no-store;
//	                       for generic pollers (AcceptedWhilePending): 202 while not
//	                       finished, then the result or the failure's own status
//	GET    B/{id}          200 with the result, ETag, 304 on If-None-Match; 404 before it is
//	                       done; the failure's problem document when it failed; private
//	                       when the record has an owner; no Set-Cookie unless asked
//	DELETE B/{id}          202 while stopping pending or running work; 204 when a finished
//	                       record was deleted
//
// Every error answer is an RFC 9457 problem document. Ids carry 128 random
// bits. An optional owner function hides records from other owners.
//
// # Writing a processor
//
// A [Processor] has one method, like http.Handler, and [ProcessorFunc]
// adapts a function. Return a [*Result] for success. Return an error made
// with [Permanent] to fail for good with a chosen HTTP status (for example
// 422 for input that can never work), one made with [RetryAfter] to be
// tried again after a delay, or any other error to be retried with
// exponential backoff until the attempts run out. Call [ReportProgress]
// to show progress on the status document. Watch ctx: it ends when the
// client cancels, the per-request timeout passes, or the worker shuts
// down, and [context.Cause] says which ([ErrCanceled], [ErrTimeout],
// [ErrShutdown]).
//
// A request may be processed more than once (a worker can crash after the
// work but before recording it), but its outcome is recorded exactly once:
// every write of an attempt carries its lease token, and a stale attempt's
// writes are refused with [ErrLeaseLost].
//
// # Shutdown
//
// [Worker.Stop] stops fetching, lets running work finish until its
// context ends, then cancels what still runs with the cause [ErrShutdown]
// and hands those requests back to the queue without spending an attempt.
// The end of the context given to [Worker.Start] begins the same graceful
// stop, bounded by [WorkerOptions.StopTimeout]. Stop is idempotent and
// safe before Start. The package installs no signal handlers and never
// exits the process: start the worker with a signal.NotifyContext, or
// call Stop from your own shutdown path, after http.Server.Shutdown.
//
// # Errors
//
// Fixed conditions are sentinels ([ErrNotFound], [ErrGone],
// [ErrDuplicate], [ErrLeaseLost], ...) compared with errors.Is; failures
// that carry data are types ([*PermanentError], [*RetryAfterError],
// [*GoneError], [*Problem]) found with errors.As. Context errors are returned unwrapped.
// No Go error text reaches an HTTP client: the handler logs it through the
// *slog.Logger in its options and answers a problem document.
//
// # Writing a backend
//
// A backend implements [Store] (five methods) and [Queue] (five methods)
// over its engine: storage and delivery primitives only. Validation,
// retries, leases' fencing, ids and the HTTP semantics live in the
// Handler and the Worker, so no backend repeats them. A type that is both
// is a [Backend]; a Store alone or a Queue alone is made one with [Pair].
// The backend author's API:
//
//   - the interfaces: [Store], [Queue], [Backend], and the [Record] and
//     [Lease] they carry ([Record.Clone] and [Record.MarshalBinary] help
//     to keep a record without sharing memory);
//   - the errors to map native ones onto: [ErrNotFound], [ErrGone] (as a
//     [*GoneError]: a tombstone keeps its record's owner), [ErrDuplicate],
//     [ErrLeaseLost], [ErrClosed], and ctx.Err() unwrapped;
//   - the optional interfaces, each detected by type assertion with a
//     written fallback: [Accepter] (record and enqueue in one atomic
//     step), [Completer] (an outcome and its Ack in one step), [Claimer]
//     (leases and the claims of their records in one step), [Watcher]
//     (change notification for long polls and cancels),
//     [UnenqueuedLister] (recovery of interrupted accepts),
//     [BatchDequeuer] and [QueueStater] (counts for metrics and
//     dashboards, which the Handler and Worker do not call), and the
//     operator's [Lister], [FinishedPurger] and [Requeuer] (listing,
//     purging by age and an atomic retry, for the admin package and
//     [RetryRequest]);
//   - the lifecycle a Store keeps without judging it: [State] holds the
//     table of which state follows which, and each change is a method of
//     [*Record] ([Record.Claim], [Record.Succeed], [Record.RequestCancel],
//     ...) that the Handler and the Worker pass to [Store.Update];
//   - [NewID] and [ValidID] for the form of ids.
//
// A backend proves itself with the asyncreqtest conformance kit: its test
// file calls asyncreqtest.TestBackend with a factory of fresh Backends. The
// kit checks the Store and Queue contracts, drives every transition of a
// record through the Store, and runs the HTTP contract end to end. When
// several processes may share the backend's data, the test file also calls
// asyncreqtest.TestTwoInstances with a factory of two instances on the same
// data, so the handler runs on one and the workers on the other.
package asyncreq
