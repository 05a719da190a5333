// Package asyncreq implements the asynchronous request-reply pattern for
// net/http: a client submits a slow operation, gets 202 Accepted at once
// with a status URL, polls it, and follows a 303 See Other to the result
// when the work is done. A background Worker does the work.
//
// # Overview
//
// Three concrete types do the work, over two small interfaces that
// backends implement:
//
//   - [Handler], made by [NewHandler], is an http.Handler that serves the
//     whole wire contract (submit, status, result, cancel) under whatever
//     prefix it is mounted at;
//   - [Worker], made by [NewWorker], takes requests off the [Queue], runs a
//     [Processor] on them with leases, heartbeats, retries, timeouts and
//     panic recovery, and records their outcome in the [Store];
//   - [Async], made by [NewAsync], makes any existing http.Handler
//     asynchronous: the handler runs later on the recorded request, and its
//     response is replayed at the result URL as if the call had been
//     synchronous.
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
// The Store is the truth about a request; the Queue only says what to work
// on next. The memory package is the in-process backend; the sqlite,
// postgres, redis, nats and rabbitmq modules are durable ones.
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
//	                       (to the record's owner only); Cache-Control: no-store
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
// # Writing a backend
//
// A backend implements [Store] (five methods) and [Queue] (five methods),
// maps its native errors onto this package's sentinels (a tombstone keeps
// its record's owner and answers with a [*GoneError]), and proves itself
// with the asyncreqtest conformance kit: its test file calls
// asyncreqtest.TestBackend with a factory, and, when several processes may
// share the backend's data, asyncreqtest.TestTwoInstances with a factory of
// two instances on the same data. Capabilities beyond the minimum
// are optional interfaces detected by type assertion, each with a written
// fallback: [Accepter] (record and enqueue atomically), [Watcher] (change
// notification for long polls and cancels), [UnenqueuedLister] (recovery
// of interrupted accepts), [BatchDequeuer] and [Completer] (an outcome and
// its Ack in one step, for a backend that is both Store and Queue), and
// [QueueStater] (counts for metrics, which nothing here calls).
//
// # Shutdown
//
// [Worker.Stop] stops fetching, lets running work finish until its
// context ends, then cancels what still runs with the cause [ErrShutdown]
// and hands those requests back to the queue without spending an attempt.
// Stop is idempotent and safe before Start. The package installs no signal
// handlers and never exits the process: call Stop from your own shutdown
// path, after http.Server.Shutdown.
//
// # Errors
//
// Fixed conditions are sentinels ([ErrNotFound], [ErrGone],
// [ErrDuplicate], [ErrLeaseLost], ...) compared with errors.Is; failures
// that carry data are types ([*PermanentError], [*RetryAfterError],
// [*GoneError], [*Problem]) found with errors.As. Context errors are returned unwrapped.
// No Go error text reaches an HTTP client: the handler logs it through the
// *slog.Logger in its options and answers a problem document.
package asyncreq
