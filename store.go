package asyncreq

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Record is everything a Store keeps about one request. The handler creates
// it, the worker moves it through its states, and the Store only keeps it:
// all the rules about which change is allowed live in this package, in the
// transitions of a Record (Claim, Succeed, RequestCancel, ...; see State
// for the table) that the Handler and the Worker pass to Store.Update.
type Record struct {
	// ID is the request's identifier (see NewID).
	ID string `json:"id"`
	// Owner is the owner the handler's Owner function assigned, or "".
	Owner string `json:"owner,omitempty"`
	// IdempotencyKey is the client's Idempotency-Key, or "". Owner and
	// IdempotencyKey together are unique among the records of a Store.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// BodyHash is the fingerprint of the submitted request that tells an
	// idempotent repeat from another request with the same key: the hex
	// SHA-256 of its method, path and query, Content-Type, kept headers
	// (less those that change with every attempt, such as Traceparent and
	// X-Forwarded-For) and body, each field length-prefixed. (It keeps
	// its name from when it hashed the body alone; a record written then
	// is still compared by its body.) Stores keep it as an opaque string.
	BodyHash string `json:"body_hash,omitempty"`

	// State is where the request stands.
	State State `json:"state"`
	// Enqueued reports whether the Queue is known to hold the request.
	// A record of a Backend that is no Accepter (see Pair) is created with
	// Enqueued false and set once the Queue has it; a record that stays unenqueued
	// is found by the worker (see UnenqueuedLister) and enqueued then.
	Enqueued bool `json:"enqueued,omitempty"`

	// Method, URL, Header, ContentType and Body are the submitted request.
	Method      string      `json:"method,omitempty"`
	URL         string      `json:"url,omitempty"`
	Header      http.Header `json:"header,omitempty"`
	ContentType string      `json:"content_type,omitempty"`
	Body        []byte      `json:"body,omitempty"`

	// Attempts is the number of attempts started so far.
	Attempts int `json:"attempts,omitempty"`
	// LeaseToken fences the current attempt: only the worker holding this
	// token may record progress or an outcome. Empty when not running.
	LeaseToken string `json:"lease_token,omitempty"`
	// CancelRequested is set when a client cancels a running request; the
	// worker running it cancels its processor and records StateCanceled.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// Progress is the processor's last reported progress, or nil.
	Progress *Progress `json:"progress,omitempty"`
	// Result is the outcome of a succeeded request.
	Result *Result `json:"result,omitempty"`
	// Error is the failure of a failed or canceled request, or the last
	// attempt's failure of a request waiting to be retried.
	Error *Problem `json:"error,omitempty"`

	// CreatedAt and UpdatedAt are when the record was created and last
	// changed.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Retention is how long the record is kept once final.
	Retention time.Duration `json:"retention,omitempty"`
	// TombstoneTTL is how long a marker of the record is kept after it is
	// purged, so that its id answers 410 Gone instead of 404.
	TombstoneTTL time.Duration `json:"tombstone_ttl,omitempty"`
	// ExpiresAt is when a final record may be purged; zero while not final.
	ExpiresAt time.Time `json:"expires_at,omitzero"`

	// Callback is the completion callback the submit asked for, and how
	// its delivery stands, or nil (see CallbackHeader).
	Callback *Callback `json:"callback,omitempty"`
}

// WithoutBodies returns a shallow copy of r without its request body and
// its result's body, sharing every other field with r: a record as a Lister
// lists it, or the part a backend that stores the bodies apart encodes.
// Clone the copy to keep it.
func (r *Record) WithoutBodies() *Record {
	if r == nil {
		return nil
	}
	c := *r
	c.Body = nil
	if r.Result != nil {
		res := *r.Result
		res.Body = nil
		c.Result = &res
	}
	return &c
}

// Clone returns a deep copy of r. Stores use it so that no caller shares
// memory with what they keep.
func (r *Record) Clone() *Record {
	if r == nil {
		return nil
	}
	c := *r
	c.Header = r.Header.Clone()
	c.Body = cloneBytes(r.Body)
	if r.Progress != nil {
		p := *r.Progress
		c.Progress = &p
	}
	if r.Result != nil {
		res := *r.Result
		res.Header = r.Result.Header.Clone()
		res.Body = cloneBytes(r.Result.Body)
		c.Result = &res
	}
	if r.Error != nil {
		e := *r.Error
		c.Error = &e
	}
	if r.Callback != nil {
		cb := *r.Callback
		c.Callback = &cb
	}
	return &c
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// MarshalBinary encodes r for backends that keep a record as one value.
// The encoding is JSON, byte for byte what json.Marshal gives, written
// without reflection; UnmarshalBinary reverses it.
func (r *Record) MarshalBinary() ([]byte, error) {
	if r == nil {
		return json.Marshal(r)
	}
	size := 640 + len(r.Body)*4/3
	if r.Result != nil {
		size += len(r.Result.Body) * 4 / 3
	}
	if b, ok := appendRecordJSON(make([]byte, 0, size), r); ok {
		return b, nil
	}
	return json.Marshal(r)
}

// UnmarshalBinary decodes what MarshalBinary encoded, or any JSON that
// json.Unmarshal decodes into a Record, into r, replacing what r held.
func (r *Record) UnmarshalBinary(data []byte) error {
	if r == nil {
		return json.Unmarshal(data, r)
	}
	if decodeRecordJSON(data, r) {
		return nil
	}
	*r = Record{}
	return json.Unmarshal(data, r)
}

// Store keeps the records. It is the truth about every request.
//
// All methods may be called concurrently. A Store never hands out memory it
// keeps: records passed in are copied, and records returned belong to the
// caller. Methods return ctx.Err() unwrapped when ctx ends first, and map
// their native errors onto this package's sentinels, as the asyncreqtest
// conformance kit checks.
type Store interface {
	// Create records rec, which has a new ID. If rec.IdempotencyKey is not
	// empty and a record with the same Owner and IdempotencyKey exists,
	// Create stores nothing and returns a copy of that record together with
	// ErrDuplicate. Otherwise it returns (nil, nil) or an error.
	Create(ctx context.Context, rec *Record) (*Record, error)

	// Get returns the record with the given id, ErrNotFound if there is
	// none, or ErrGone if it was purged or deleted and its tombstone lasts.
	// ErrGone is returned as a *GoneError naming the record's Owner, which
	// the tombstone keeps: without it a Handler with owners cannot tell
	// whom it may answer 410, and answers 404 to all.
	Get(ctx context.Context, id string) (*Record, error)

	// Update atomically reads the record with the given id, calls fn with a
	// copy of it, and stores what fn left in the copy, unless fn returns an
	// error, in which case nothing is stored and Update returns that error
	// unwrapped. No other Create, Update or Delete of that record
	// interleaves. fn may be called more than once (a backend may retry
	// after a conflict), so it must depend only on its argument. fn must not
	// change ID, Owner or IdempotencyKey. Update returns the stored record,
	// or ErrNotFound / ErrGone as Get does.
	Update(ctx context.Context, id string, fn func(*Record) error) (*Record, error)

	// Delete removes the record with the given id and its idempotency key.
	// If tombstone is true, a tombstone that keeps the record's Owner is
	// kept for the record's TombstoneTTL so that Get answers ErrGone.
	// Delete returns ErrNotFound if there is no such record.
	Delete(ctx context.Context, id string, tombstone bool) error

	// Purge deletes up to limit records in a final state whose ExpiresAt is
	// not after now, keeping a tombstone (with the record's Owner) for each
	// until ExpiresAt plus its TombstoneTTL, and drops tombstones that have run out. It returns how
	// many records it deleted. A Store whose engine expires keys by itself
	// may do nothing and return 0.
	Purge(ctx context.Context, now time.Time, limit int) (int, error)
}

// Accepter is implemented by a Backend that can record and enqueue a
// request in one atomic step. A Handler whose Backend implements it (and
// is not made by Pair) calls Accept instead of Store.Create followed by
// Queue.Enqueue and Store.Update to mark the record enqueued.
//
// Accept has Create's duplicate semantics. The record it stores has
// Enqueued set. Like every Store method it may be called concurrently,
// copies rec, and returns a record that belongs to the caller.
type Accepter interface {
	Accept(ctx context.Context, rec *Record) (*Record, error)
}

// UnenqueuedLister is implemented by a Store that can list the records
// created with Enqueued false. A Worker uses it to enqueue requests whose
// accept was interrupted between Store.Create and Queue.Enqueue (a crash,
// a Queue outage together with a failed rollback), so that none stays
// pending forever.
//
// Without it, a Store paired with a separate Queue (see Pair) relies on
// the handler's rollback alone. Backends implementing Accepter for their
// own Queue need not implement it.
//
// ListUnenqueued may be called concurrently with every other method; the
// slice it returns belongs to the caller.
type UnenqueuedLister interface {
	// ListUnenqueued returns the ids of up to limit records that have
	// Enqueued false, are not final, and were created before the given time.
	ListUnenqueued(ctx context.Context, before time.Time, limit int) ([]string, error)
}

// Watcher is implemented by a Store that can tell when a record changes.
// Handlers use it to answer long polls (Prefer: wait) as soon as the record
// changes, and workers to notice a client's cancel at once.
//
// A watch is a hint, never the only source of truth: a Watcher may miss
// changes, typically those made by other processes, and the Handler and
// the Worker read the record on their own schedule whether or not they
// hold a watch. A long poll reads it every 20ms at first, twice as long
// each time up to every 500ms, and once more at its deadline; a worker
// reads it at every heartbeat (WorkerOptions.LeaseDuration/3). A Watcher
// that misses a change only makes it be noticed that much later.
//
// Whether the backends in this repository see other processes' changes:
//
//   - memory: a Backend lives in one process and sees every change;
//   - sqlite: no; Watch sees the changes made in its own process only;
//   - postgres: yes, by LISTEN/NOTIFY, unless Options.DisableListen is
//     set, when it sees its own Store's changes only;
//   - redis: yes, by PUBLISH from the scripts that change a record;
//   - nats: yes, by a key-value watch held by the server.
//
// Watch may be called concurrently, any number of times for one id. A
// watch holds resources until its context ends, so callers end the
// context of a watch they no longer need.
type Watcher interface {
	// Watch returns a channel that is closed at the next change of the
	// record with the given id after Watch was called (or when ctx ends,
	// after which the watch is released). Watch does not check that the
	// record exists.
	Watch(ctx context.Context, id string) (<-chan struct{}, error)
}

// watch watches the record id until stop is called or ctx ends. A Watcher
// releases a watch only when its context ends, so a caller that watches
// again after each change must stop the watch it replaces, or watches
// pile up for as long as ctx lasts.
func watch(ctx context.Context, w Watcher, id string) (changed <-chan struct{}, stop func(), err error) {
	wctx, cancel := context.WithCancel(ctx)
	ch, err := w.Watch(wctx, id)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return ch, cancel, nil
}
