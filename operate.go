package asyncreq

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// This file holds what an operator does to requests that are not theirs:
// list them, count them, retry, cancel, delete and purge them. The Handler
// never calls any of it; the admin package and a program's own tools do.

// ListQuery selects the records a Lister lists.
type ListQuery struct {
	// State keeps only the records in this state; "" keeps every state.
	State State
	// Owner keeps only the records of this owner; "" keeps every owner.
	Owner string
	// Cursor continues a listing where the page that returned it as
	// ListPage.Next ended; "" starts at the newest record.
	Cursor string
	// Limit is the most records a page holds: DefaultListLimit when 0 or
	// less, MaxListLimit when larger than that.
	Limit int
}

// The page sizes of a listing.
const (
	DefaultListLimit = 50
	MaxListLimit     = 1000
)

// PageLimit returns q.Limit within 1..MaxListLimit, DefaultListLimit for 0.
func (q ListQuery) PageLimit() int {
	switch {
	case q.Limit <= 0:
		return DefaultListLimit
	case q.Limit > MaxListLimit:
		return MaxListLimit
	default:
		return q.Limit
	}
}

// ListPage is one page of a listing.
type ListPage struct {
	// Records are the records of the page, newest first: by CreatedAt,
	// then by ID, both descending. They are summaries: Body and
	// Result.Body are nil (Get returns them).
	Records []*Record
	// Next is the cursor of the next page, or "" when this is the last.
	Next string
}

// StateCounts counts a Store's records by state.
type StateCounts struct {
	Pending, Running, Succeeded, Failed, Canceled int64
}

// Total is the sum of the counts.
func (c StateCounts) Total() int64 {
	return c.Pending + c.Running + c.Succeeded + c.Failed + c.Canceled
}

// Add adds n to the count of state s, and reports false for a state that
// is not one of the five.
func (c *StateCounts) Add(s State, n int64) bool {
	switch s {
	case StatePending:
		c.Pending += n
	case StateRunning:
		c.Running += n
	case StateSucceeded:
		c.Succeeded += n
	case StateFailed:
		c.Failed += n
	case StateCanceled:
		c.Canceled += n
	default:
		return false
	}
	return true
}

// Lister is implemented by a Store that can list and count its records,
// for operators: the admin package's pages, or a program's own tools.
//
// List and CountStates may be called concurrently with every other method;
// what they return belongs to the caller. A listing is not a snapshot:
// records created, changed or deleted while it pages may be seen in their
// old state or new, or not at all, but a record that exists throughout
// and keeps its state is listed exactly once.
type Lister interface {
	// List returns the page of records that q selects, newest first. It
	// returns an error wrapping ErrBadCursor for a q.Cursor it did not
	// make, and an empty page for a state no record can be in.
	List(ctx context.Context, q ListQuery) (ListPage, error)

	// CountStates counts the records by state. A backend that counts
	// from engine estimates says so in its package doc.
	CountStates(ctx context.Context) (StateCounts, error)
}

// FinishedPurger is implemented by a Store that can delete finished
// records by age, at an operator's request: it need not wait for their
// retention to end (Store.Purge does that).
type FinishedPurger interface {
	// PurgeFinished deletes up to limit records in a final state last
	// changed before the given time, keeping a tombstone (with the
	// record's Owner, until the record's TombstoneTTL from now) for each
	// when tombstone is true, and returns how many it deleted. The
	// caller repeats it until it deletes fewer than limit.
	PurgeFinished(ctx context.Context, before time.Time, limit int, tombstone bool) (int, error)
}

// Requeuer is implemented by a Backend that can change a record and
// enqueue it in one atomic step, as Accepter does for a new one.
// RetryRequest uses it to put a failed request back on the Queue; without
// it, it updates the record, enqueues it and marks it enqueued, and a
// Worker's sweep (UnenqueuedLister) enqueues a record whose retry was
// interrupted between the two.
type Requeuer interface {
	// Requeue is Update followed by Enqueue(id, 0), in one step: if fn
	// returns an error, nothing changes and Requeue returns it unwrapped;
	// otherwise the record fn left (with Enqueued set) is stored and the
	// id enqueued, or neither. A Queue that may hold an entry for the id
	// already (a pending request canceled before a Worker dequeued it)
	// may keep that entry rather than add a second.
	Requeue(ctx context.Context, id string, fn func(*Record) error) (*Record, error)
}

// ErrBadCursor means a listing cursor was not made by the Lister given it.
var ErrBadCursor = errors.New("asyncreq: malformed listing cursor")

// ListCursor is the position a listing continues from: the CreatedAt and
// ID of the last record of a page. Backends encode it with String and
// decode it with ParseListCursor, so that every backend's cursor has one
// form; to a client it is opaque.
type ListCursor struct {
	CreatedAt time.Time
	ID        string
}

// String encodes c as a URL-safe string.
func (c ListCursor) String() string {
	raw := strconv.FormatInt(c.CreatedAt.UnixNano(), 10) + "." + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// After reports whether a record created at createdAt with the given id
// comes after the cursor in a listing, newest first: it is older, or as
// old with a smaller id.
func (c ListCursor) After(createdAt time.Time, id string) bool {
	if !createdAt.Equal(c.CreatedAt) {
		return createdAt.Before(c.CreatedAt)
	}
	return id < c.ID
}

// ParseListCursor decodes a cursor String made. An empty s is the zero
// ListCursor, the start of a listing. A malformed one is an error wrapping
// ErrBadCursor.
func ParseListCursor(s string) (ListCursor, error) {
	if s == "" {
		return ListCursor{}, nil
	}
	bad := fmt.Errorf("%w: %q", ErrBadCursor, s)
	if len(s) > 128 {
		return ListCursor{}, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return ListCursor{}, bad
	}
	ns, id, ok := strings.Cut(string(raw), ".")
	if !ok || !ValidID(id) {
		return ListCursor{}, bad
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return ListCursor{}, bad
	}
	return ListCursor{CreatedAt: time.Unix(0, n).UTC(), ID: id}, nil
}

// IsZero reports whether c is the start of a listing.
func (c ListCursor) IsZero() bool { return c.ID == "" }

// Parts returns the Store and the Queue of b: those Pair was given for a
// Backend it made, b itself as both otherwise. An operator's tool asks
// the Store for the capabilities of this file (Lister, FinishedPurger),
// which Pair does not pass on.
func Parts(b Backend) (Store, Queue) {
	store, queue, _ := split(b)
	return store, queue
}

// ErrNotSupported means a backend lacks the capability an operation
// needs; the error wrapping it names the capability.
var ErrNotSupported = errors.New("asyncreq: not supported by this backend")

// RetryRequest puts a failed or canceled request back to pending, with its
// attempts counted from zero again and its error, result and callback
// delivery cleared, and enqueues it, so that a Worker runs it as if it
// were new. (Resetting the attempts is the choice that makes a retry of a
// request that ran out of attempts run at all.) It returns the record as
// stored, ErrNotFound or ErrGone as Store.Get does, and an error wrapping
// ErrNotRetryable for a request that is pending, running or succeeded.
//
// With a Requeuer the record changes and is enqueued in one step.
// Otherwise RetryRequest stores the change with Enqueued false, enqueues
// the id and marks it enqueued; a Worker's sweep enqueues a record whose
// retry stopped in between, when the Store is an UnenqueuedLister.
func RetryRequest(ctx context.Context, b Backend, id string) (*Record, error) {
	now := time.Now()
	requeue := func(r *Record) error { return r.Requeue(now) }
	store, queue := Parts(b)
	if rq, ok := b.(Requeuer); ok {
		rec, err := rq.Requeue(ctx, id, func(r *Record) error {
			if err := requeue(r); err != nil {
				return err
			}
			r.Enqueued = true
			return nil
		})
		return checkRecord(rec, err)
	}
	rec, err := store.Update(ctx, id, requeue)
	if err != nil {
		return nil, err
	}
	if err := queue.Enqueue(ctx, id, 0); err != nil {
		return nil, fmt.Errorf("asyncreq: retry of %s stored, not enqueued: %w", id, err)
	}
	marked, err := store.Update(ctx, id, func(r *Record) error {
		if r.Enqueued || r.State != StatePending {
			return errUnchanged
		}
		return r.MarkEnqueued()
	})
	switch {
	case errors.Is(err, errUnchanged):
		return rec, nil
	case err != nil:
		return nil, fmt.Errorf("asyncreq: retry of %s enqueued, not marked: %w", id, err)
	}
	return checkRecord(marked, err)
}

// errUnchanged makes an Update that has nothing to change store nothing.
var errUnchanged = errors.New("asyncreq: unchanged")

// ErrNotRetryable means a request cannot be retried: it is not failed or
// canceled.
var ErrNotRetryable = errors.New("asyncreq: only a failed or canceled request can be retried")

// CancelRequest cancels a request whatever its owner: a pending one
// becomes canceled at once, a running one is asked to stop (its Worker
// records it canceled). It returns the record as stored, ErrNotFound or
// ErrGone as Store.Get does, and ErrFinished for a final request.
func CancelRequest(ctx context.Context, b Backend, id string) (*Record, error) {
	store, _ := Parts(b)
	now := time.Now()
	return checkRecord(store.Update(ctx, id, func(r *Record) error { return r.RequestCancel(r.Owner, now) }))
}

// DeleteRequest deletes a request in any state, keeping a tombstone with
// its owner for its TombstoneTTL, so that its owner is answered 410 Gone.
// A Worker running it loses its lease when it next writes, and a queue
// entry left for it is dropped when dequeued. It returns ErrNotFound when
// there is no such record.
func DeleteRequest(ctx context.Context, b Backend, id string) error {
	store, _ := Parts(b)
	return store.Delete(ctx, id, true)
}

// PurgeFinished deletes every record of b in a final state last changed
// before the given time, in batches of limit (1000 when limit is 0 or
// less), keeping tombstones, and returns how many it deleted. It returns an error wrapping ErrNotSupported when b's Store
// is no FinishedPurger.
func PurgeFinished(ctx context.Context, b Backend, before time.Time, limit int) (int, error) {
	store, _ := Parts(b)
	p, ok := store.(FinishedPurger)
	if !ok {
		return 0, fmt.Errorf("%w: %T is no asyncreq.FinishedPurger", ErrNotSupported, store)
	}
	if limit <= 0 {
		limit = 1000
	}
	total := 0
	for {
		n, err := p.PurgeFinished(ctx, before, limit, true)
		total += n
		if err != nil || n < limit {
			return total, err
		}
	}
}

// List lists the records of b (see Lister). It returns an error wrapping
// ErrNotSupported when b's Store is no Lister.
func List(ctx context.Context, b Backend, q ListQuery) (ListPage, error) {
	store, _ := Parts(b)
	l, ok := store.(Lister)
	if !ok {
		return ListPage{}, fmt.Errorf("%w: %T is no asyncreq.Lister", ErrNotSupported, store)
	}
	return l.List(ctx, q)
}

// CountStates counts the records of b by state (see Lister). It returns an
// error wrapping ErrNotSupported when b's Store is no Lister.
func CountStates(ctx context.Context, b Backend) (StateCounts, error) {
	store, _ := Parts(b)
	l, ok := store.(Lister)
	if !ok {
		return StateCounts{}, fmt.Errorf("%w: %T is no asyncreq.Lister", ErrNotSupported, store)
	}
	return l.CountStates(ctx)
}
