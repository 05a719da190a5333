package asyncreq

import (
	"context"
	"time"
)

// Lease is one delivery of a request id by a Queue. While the lease is held
// no other Dequeue returns that id; when it runs out without Ack or Nack the
// id is delivered again.
type Lease struct {
	// ID is the request id.
	ID string
	// Delivery counts the deliveries of this queue entry, starting at 1.
	// The Store's Attempts, not Delivery, limits retries, but a Worker
	// relies on a redelivery counting 2 or more: it takes a running
	// request over (its attempt's lease ran out) only from a redelivered
	// entry, and drops an entry delivered for the first time while the
	// request runs as a second entry of the id.
	Delivery int
	// Handle is the backend's own reference to the delivery (a message, a
	// stream entry id, a delivery tag). Callers must not touch it.
	Handle any
}

// Queue says what to work on next. It carries only request ids; the Store
// holds the requests.
//
// All methods may be called concurrently. Methods return ctx.Err()
// unwrapped when ctx ends first. Delivery is at least once: an id may be
// delivered again after a lease runs out, and workers cope with that
// through the Store's lease token. A Lease that Dequeue returns belongs to
// the caller, who passes it back to Extend, Ack or Nack; the backend does
// not change it after returning it.
type Queue interface {
	// Enqueue adds id, to be delivered after delay (0 for now). When Enqueue
	// returns nil the entry is durable to the degree the backend promises.
	Enqueue(ctx context.Context, id string, delay time.Duration) error

	// Dequeue waits until an id is due and returns a lease on it held for
	// ttl, or returns ctx.Err() when ctx ends first. A backend whose lease
	// length is fixed by its engine (a consumer's ack wait) documents that
	// and may ignore ttl.
	Dequeue(ctx context.Context, ttl time.Duration) (*Lease, error)

	// Extend renews the lease for ttl from now. It returns ErrLeaseLost if
	// the lease already ran out and the id may have been delivered again,
	// or if it was settled.
	Extend(ctx context.Context, l *Lease, ttl time.Duration) error

	// Ack settles the lease: the entry is removed for good. It returns
	// ErrLeaseLost if the lease ran out or was already settled.
	Ack(ctx context.Context, l *Lease) error

	// Nack settles the lease and returns the entry, to be delivered again
	// after delay. It returns ErrLeaseLost if the lease ran out or was
	// already settled.
	Nack(ctx context.Context, l *Lease, delay time.Duration) error
}

// BatchDequeuer is implemented by a Queue that can hand out several leases
// in one call. A Worker with free capacity for more than one request uses
// it; the fallback is one Dequeue per request. DequeueBatch may be called
// concurrently with every Queue method; the slice and the leases it
// returns belong to the caller, as Dequeue's lease does.
type BatchDequeuer interface {
	// DequeueBatch waits like Dequeue until at least one id is due, then
	// returns leases on up to max of the ids that are due.
	DequeueBatch(ctx context.Context, max int, ttl time.Duration) ([]*Lease, error)
}

// Claimer is implemented by a Backend that can lease due queue entries and
// claim their records in one atomic step. A Worker whose Backend implements
// it (and is not made by Pair) uses it in place of DequeueBatch followed by
// a Store.Update per lease: a request starts one write (in a database, one
// commit, and the wait for it) sooner.
type Claimer interface {
	// DequeueClaim waits like Dequeue until at least one id is due, then
	// takes leases on up to max of the ids that are due, as DequeueBatch
	// does, and, in the same atomic step, does for each lease l what
	// Store.Update(ctx, l.ID, func(r *Record) error { return claim(l, r) })
	// does. It returns one Claim per lease, in the order of the leases. A
	// lease whose update fails (its record is missing, claim returned an
	// error) is returned all the same, with the error Update would have
	// returned and its record left as it was. When the step itself fails,
	// no lease is taken and DequeueClaim returns only the error. claim is
	// called while the step holds the backend's write lock (one
	// transaction, say): it must be quick and must not call the Backend.
	// A lease is held for ttl from the end of the claims, as far as the
	// backend can: claims of large records may take a good part of ttl.
	// The Worker extends a lease a third of ttl after its first claim
	// began.
	DequeueClaim(ctx context.Context, max int, ttl time.Duration, claim func(*Lease, *Record) error) ([]Claim, error)
}

// Claim is one lease that Claimer.DequeueClaim took, with what the claim
// of its record came to.
type Claim struct {
	Lease *Lease
	// Record is the record as stored after the claim, when Err is nil.
	Record *Record
	// Err is what Store.Update would have returned for the claim.
	Err error
}

// Completer is implemented by a Backend that can write a request's outcome
// and remove its queue entry in one atomic step. A Worker whose Backend
// implements it (and is not made by Pair) uses it in place of Store.Update
// followed by Queue.Ack when it records an outcome, saving a round trip
// (and, in a database, a commit) per request.
type Completer interface {
	// Complete does what Store.Update(ctx, l.ID, fn) does and, when the
	// record it stored is final, also settles l as Queue.Ack(ctx, l)
	// would, in the same atomic step: either both happen or neither.
	// It returns what Update would return. When the record is stored but
	// l no longer holds its lease (it ran out, and the id may have been
	// delivered again), the record stays written and Complete returns it
	// without error: the other delivery finds the record final and is
	// settled by its own worker. When the stored record is not final, l
	// is left as it is, for the caller to settle.
	Complete(ctx context.Context, l *Lease, fn func(*Record) error) (*Record, error)
}
