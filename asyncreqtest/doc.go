// Package asyncreqtest is the conformance kit of asyncreq backends: test
// suites that any asyncreq.Store, any asyncreq.Queue, and the HTTP contract
// served by asyncreq.Handler and asyncreq.Worker over any backend must
// pass.
//
// Every backend in this repository runs it, against the real server in
// CI; a backend written elsewhere should run it too.
//
// # Using the kit
//
// A backend's test file is a call or two, each handing the kit a factory
// that makes a fresh, isolated instance for every case (its own database
// schema, key prefix, stream or queue name) and registers its cleanup
// with t.Cleanup:
//
//	package mybackend_test
//
//	import (
//		"os"
//		"testing"
//		"time"
//
//		"github.com/asyncreq/asyncreq"
//		"github.com/asyncreq/asyncreq/asyncreqtest"
//		"example.com/mybackend"
//	)
//
//	func TestConformance(t *testing.T) {
//		url := os.Getenv("MYBACKEND_TEST_URL")
//		if url == "" {
//			t.Skip("set MYBACKEND_TEST_URL to run the conformance kit against a server")
//		}
//		asyncreqtest.TestBackend(t, func(t *testing.T) asyncreq.Backend {
//			b, err := mybackend.Open(t.Context(), url, &mybackend.Options{Prefix: asyncreq.NewID()})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { b.Close() })
//			return b
//		}, &asyncreqtest.Options{LeaseTTL: time.Second})
//	}
//
// TestBackend runs TestStore, TestQueue and TestHandler as the subtests
// Store, Queue and Handler. A backend that is only a Store or only a Queue
// calls TestStore or TestQueue alone; a Queue that is paired with another
// backend's Store also calls TestHandler with the asyncreq.Pair of them.
//
// # Two instances
//
// A backend that several processes share (a database file, a server) also
// calls TestTwoInstances, with a factory that opens two instances on the
// same fresh data, each with its own connections, as an API process and a
// worker process would:
//
//	func TestTwoInstances(t *testing.T) {
//		asyncreqtest.TestTwoInstances(t, func(t *testing.T) (one, two asyncreq.Backend) {
//			prefix := asyncreq.NewID()
//			open := func() asyncreq.Backend {
//				b, err := mybackend.New(t.Context(), url, &mybackend.Options{Prefix: prefix})
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(func() { b.Close() })
//				return b
//			}
//			return open(), open()
//		}, nil)
//	}
//
// Its cases run the handler on instance one and the workers on instance
// two, so that nothing reaches the other side but through the backend: a
// Watcher that sees only its own process's changes is then blind to the
// other instance's, as it is in production. A Queue paired in its tests
// with an in-memory Store gives each instance its own InstanceView of one
// Store, which watches that way.
//
// # What is checked
//
// Each case is a subtest named after the contract it checks, grouped by
// method or capability, so that one case runs alone with, for example,
//
//	go test -race -run 'TestConformance/Queue/Lease/ExpiryRedeliversAndFencesOldLease' ./mybackend
//
// TestStore checks that every field of a Record round-trips through
// Create, Get and Update; that unknown ids, duplicates and tombstones map
// onto asyncreq.ErrNotFound, asyncreq.ErrDuplicate and asyncreq.ErrGone;
// that concurrent Creates with one idempotency key have exactly one winner
// and concurrent Updates lose nothing; that an Update whose function fails
// stores nothing and returns that error; that Delete frees the
// idempotency key; that Purge removes only final records whose ExpiresAt
// passed and keeps their tombstones for TombstoneTTL; that no record a
// Store returns or was given shares memory with what it keeps; that a
// canceled context gives context.Canceled and changes nothing; that a
// 1 MiB body and a 1 MiB result round-trip; that every state transition
// of a record (Claim, SetProgress, Succeed, Fail, Retry, HandBack, Cancel,
// RequestCancel, MarkEnqueued, made with Update as the Handler and the
// Worker make them) is stored field for field, and that one that refuses
// stores nothing; and, when implemented, the Watcher, UnenqueuedLister and
// Accepter contracts.
//
// TestQueue checks delivery of every id with Delivery 1; that Dequeue
// waits for an Enqueue and returns within 500ms of it, and returns the
// context's error when its context ends; delays of Enqueue and Nack;
// that Ack removes for good; that a settled lease, or one that ran out
// and was redelivered (with Delivery 2), is asyncreq.ErrLeaseLost to Ack,
// Nack and Extend; that Extend keeps a lease past its first ttl; that
// concurrent producers and consumers deliver and ack each of 1000 ids
// exactly once; and, when implemented, the BatchDequeuer contract.
//
// TestHandler mounts an asyncreq.Handler under /jobs of an httptest.Server
// with http.StripPrefix, runs an asyncreq.Worker with test processors, and
// checks the HTTP contract end to end: 202 with Location and Retry-After,
// 200 while running, 303 to the result, the result with its ETag and 304,
// failures as problem documents, Prefer: wait and respond-async, long
// polls, idempotency keys (repeated, with another body, concurrent),
// owners, DELETE of pending, running and finished requests, 404, 405 and
// 410 answers, and a worker that dies mid-request: its request is
// delivered again when the lease runs out, runs as attempt 2, and the
// dead worker's late outcome is fenced off.
//
// TestTwoInstances checks, with the handler and the workers on two
// instances, the outcome of a request run on the other instance (303, the
// result, a permanent failure), a Prefer: wait submit and a long poll
// answered soon after the other instance finished the request, DELETE of
// a pending request and of one running on the other instance (its
// processor's context is canceled), and an idempotency key repeated on
// either instance.
//
// # Time, precision and limits
//
// The kit runs against real servers, so it uses real time with short
// durations; the whole kit takes some 15 to 30 seconds per backend.
// Options.LeaseTTL (default 1s) is the lease the Queue cases ask for and
// the Worker's LeaseDuration; the cases about lease expiry wait a few
// times that long. A Queue whose leases do not run out by time sets
// Options.NoLeaseExpiry to the reason, and those cases are skipped with it.
// A Queue whose lease length is fixed by its engine is configured to
// Options.LeaseTTL.
//
// Times in records are compared with time.Time.Equal after truncation to
// microseconds (the kit's times have a sub-microsecond part below 500ns,
// so a Store may round or truncate, as SQL databases store microseconds),
// in any location. Durations must round-trip to the millisecond. An empty
// Header or Body may come back as nil.
//
// A Store that expires records by itself (a key TTL) may return 0 from
// Purge: the Purge case judges what Get answers after ExpiresAt, polling
// for a few seconds, not what Purge counts.
//
// Capabilities are detected by type assertion on the instance the factory
// returns; the cases of one it lacks are skipped with a reason.
//
// # Watchdog
//
// Every case runs under a watchdog. A case that runs longer than 30s plus
// ten times Options.LeaseTTL fails and has its context canceled; one that
// still has not returned 10s later is stuck in a call that ignores its
// context, and the kit writes every goroutine's stack to standard error
// and panics, so that a hung backend fails CI with a reason instead of
// hanging it until the test binary's timeout.
//
// The kit is built on testing and github.com/stretchr/testify; it starts
// goroutines only inside a case and waits for them before the case ends,
// so a backend's tests may use go.uber.org/goleak.
package asyncreqtest
