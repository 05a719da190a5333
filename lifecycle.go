package asyncreq

import (
	"errors"
	"fmt"
	"time"
)

// This file holds the lifecycle of a record: its states, and every
// change between them, each written once as a method of *Record that
// checks its own preconditions. The Handler and the Worker make every
// change through them, inside Store.Update (or Completer.Complete), so
// that a rule about which state may follow which lives here and nowhere
// else.

// State is the lifecycle state of a request.
//
// A request is created pending and ends in one of the three final states.
// Every change of a record is one method of *Record, and the Handler and
// the Worker make each one inside Store.Update (the Worker's outcomes
// inside Completer.Complete when the backend has it):
//
//	from       to         transition          triggered by
//	(none)     pending    Create or Accept    Handler: a submit
//	pending    pending    MarkEnqueued        Handler after Queue.Enqueue; Worker's sweep
//	pending    running    Claim               Worker: a lease on the record
//	running    running    Claim               Worker: a lease on a record whose attempt's lease ran out
//	pending    canceled   RequestCancel       Handler: DELETE by its owner
//	running    running    RequestCancel       Handler: DELETE by its owner (sets CancelRequested)
//	running    running    SetProgress         Worker: the processor's ReportProgress
//	running    succeeded  Succeed             Worker: the processor returned a result
//	running    failed     Fail                Worker: a permanent failure, or the last attempt failed
//	running    pending    Retry               Worker: an attempt failed and attempts remain
//	running    pending    HandBack            Worker: shutdown; the attempt is not spent
//	running    canceled   Cancel              Worker: the processor stopped for its client's cancel
//	running    canceled   Retry, HandBack     Worker: as above, when a cancel was requested meanwhile
//	running    canceled   Claim               Worker: a lease on a record whose cancel was requested
//	                                          after its attempt's lease ran out
//	pending,   failed     Claim               Worker: a lease on a record whose every attempt was
//	running                                   started and none recorded (its processor crashes the worker)
//	final      (none)     Store.Delete        Handler: DELETE by its owner (keeps a tombstone)
//	final      (none)     Store.Purge         Worker: the record's ExpiresAt passed (keeps a tombstone)
//
// A final record never changes state again. The Worker's changes of a
// running record are fenced by the lease token Claim wrote: they return
// ErrLeaseLost and change nothing when the record no longer carries the
// attempt's token (a newer attempt claimed it, or it left the running
// state). RequestCancel is fenced by the record's owner: to any other
// owner the record does not exist.
//
// Each transition changes only the record it is given, and returns an
// error to leave it unchanged, so it is passed to Store.Update as it is:
//
//	store.Update(ctx, id, func(r *asyncreq.Record) error { return r.Succeed(token, res, now) })
//
// Each depends only on its arguments, as Update's function must. Backends
// do not call them; the asyncreqtest kit does, to prove that a Store keeps
// every field each one writes.
type State string

// The states of a request. StatePending and StateRunning are not finished;
// the other three are final.
const (
	StatePending   State = "pending"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCanceled  State = "canceled"
)

// Final reports whether s is one of the final states (succeeded, failed,
// canceled).
func (s State) Final() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCanceled
}

// Valid reports whether s is one of the five known states.
func (s State) Valid() bool {
	switch s {
	case StatePending, StateRunning, StateSucceeded, StateFailed, StateCanceled:
		return true
	}
	return false
}

// heldBy reports whether token is the lease token of the attempt running
// r: the fence of every write of an attempt.
func (r *Record) heldBy(token string) bool {
	return r.State == StateRunning && token != "" && r.LeaseToken == token
}

// visibleTo reports whether owner may see r. To every other owner the
// record does not exist, so that nobody learns another owner's record
// exists.
func (r *Record) visibleTo(owner string) bool { return r.Owner == owner }

// needsEnqueue reports whether r is pending and not known to be in the
// Queue: what the Worker's sweep enqueues.
func (r *Record) needsEnqueue() bool { return r.State == StatePending && !r.Enqueued }

// finalize makes r final in state s at now: it is no attempt's any more,
// its progress (which belongs to a running request) is dropped, and it
// expires after its Retention.
func (r *Record) finalize(s State, now time.Time) {
	r.State = s
	r.LeaseToken = ""
	r.Progress = nil
	r.UpdatedAt = now
	r.ExpiresAt = now.Add(r.Retention)
	r.scheduleCallback(now)
}

// Claim starts an attempt on r under the lease token token (which must
// not be empty): r becomes running with one more attempt, no progress, and
// Enqueued set (it came from the Queue, so the sweep must not enqueue it
// again). Claim takes a running record over from an attempt whose lease
// ran out.
//
// Claim settles a record instead of running it when the run would be
// pointless: one whose cancel was requested becomes canceled, and one
// that already had maxAttempts attempts (each started, none recorded: the
// processor keeps killing its worker) becomes failed. The caller tells
// these apart by r.State. Claim returns ErrFinished for a final record.
func (r *Record) Claim(token string, maxAttempts int, now time.Time) error {
	switch {
	case r.State.Final():
		return ErrFinished
	case token == "":
		return errEmptyToken
	case r.CancelRequested:
		r.finalize(StateCanceled, now)
		r.Error = canceledProblem()
	case r.Attempts >= maxAttempts:
		r.finalize(StateFailed, now)
		r.Error = failedProblem("processing failed")
	default:
		r.State = StateRunning
		r.Attempts++
		r.LeaseToken = token
		r.Enqueued = true
		r.Progress = nil
		r.UpdatedAt = now
	}
	return nil
}

// errEmptyToken is Claim's answer to an empty lease token, which would
// fence nothing.
var errEmptyToken = errors.New("asyncreq: empty lease token")

// SetProgress records p as the progress of the attempt holding token. It
// returns ErrLeaseLost when r is not running under token.
func (r *Record) SetProgress(token string, p Progress, now time.Time) error {
	if !r.heldBy(token) {
		return ErrLeaseLost
	}
	r.Progress = &p
	r.UpdatedAt = now
	return nil
}

// Succeed records res as the result of the attempt holding token: r
// becomes succeeded, with no error. A nil res is stored as an empty 200
// answer. It returns ErrLeaseLost when r is not running under token.
func (r *Record) Succeed(token string, res *Result, now time.Time) error {
	if !r.heldBy(token) {
		return ErrLeaseLost
	}
	if res == nil {
		res = &Result{}
	}
	r.finalize(StateSucceeded, now)
	r.Result = res
	r.Error = nil
	return nil
}

// Fail records p as the failure of the attempt holding token: r becomes
// failed for good. A nil p is stored as a 500 problem. It returns
// ErrLeaseLost when r is not running under token.
func (r *Record) Fail(token string, p *Problem, now time.Time) error {
	if !r.heldBy(token) {
		return ErrLeaseLost
	}
	if p == nil {
		p = failedProblem("processing failed")
	}
	r.finalize(StateFailed, now)
	r.Error = p
	return nil
}

// Retry ends the failed attempt holding token and puts r back to pending
// for another attempt, with p as the failure shown meanwhile; the attempt
// stays counted. When the client asked to cancel r meanwhile, r becomes
// canceled instead. It returns ErrLeaseLost when r is not running under
// token.
func (r *Record) Retry(token string, p *Problem, now time.Time) error {
	if !r.heldBy(token) {
		return ErrLeaseLost
	}
	if r.CancelRequested {
		r.cancel(now)
		return nil
	}
	r.toPending(now)
	r.Error = p
	return nil
}

// HandBack ends the attempt holding token without spending it (the worker
// is stopping): r goes back to pending with one attempt less, keeping the
// failure of an earlier attempt. When the client asked to cancel r
// meanwhile, r becomes canceled instead. It returns ErrLeaseLost when r
// is not running under token.
func (r *Record) HandBack(token string, now time.Time) error {
	if !r.heldBy(token) {
		return ErrLeaseLost
	}
	if r.CancelRequested {
		r.cancel(now)
		return nil
	}
	r.toPending(now)
	r.Attempts = max(r.Attempts-1, 0)
	return nil
}

// toPending makes a running r pending again, no attempt's.
func (r *Record) toPending(now time.Time) {
	r.State = StatePending
	r.LeaseToken = ""
	r.Progress = nil
	r.UpdatedAt = now
}

// Cancel records that the attempt holding token stopped because its
// client canceled r: r becomes canceled. It returns ErrLeaseLost when r is
// not running under token.
func (r *Record) Cancel(token string, now time.Time) error {
	if !r.heldBy(token) {
		return ErrLeaseLost
	}
	r.cancel(now)
	return nil
}

// cancel makes r canceled at now.
func (r *Record) cancel(now time.Time) {
	r.finalize(StateCanceled, now)
	r.Error = canceledProblem()
}

// RequestCancel is a client's cancel of r by owner: a pending r becomes
// canceled at once; a running one gets CancelRequested, which tells the
// attempt running it to stop (the Worker then records it canceled). It
// returns ErrNotFound when owner may not see r (see the Handler's Owner
// option) and ErrFinished when r is final.
func (r *Record) RequestCancel(owner string, now time.Time) error {
	if !r.visibleTo(owner) {
		return ErrNotFound
	}
	switch r.State {
	case StatePending:
		r.cancel(now)
	case StateRunning:
		if !r.CancelRequested {
			r.CancelRequested = true
			r.UpdatedAt = now
		}
	default:
		return ErrFinished
	}
	return nil
}

// Requeue is an operator's retry of r (see RetryRequest): a failed or
// canceled r becomes pending again with no attempt counted, no error,
// result or progress, no cancel requested and Enqueued false; a callback
// it has is due again at its next outcome. It returns an error wrapping
// ErrNotRetryable when r is pending, running or succeeded.
func (r *Record) Requeue(now time.Time) error {
	if r.State != StateFailed && r.State != StateCanceled {
		return fmt.Errorf("%w: request %s is %s", ErrNotRetryable, r.ID, r.State)
	}
	r.State = StatePending
	r.Attempts = 0
	r.LeaseToken = ""
	r.CancelRequested = false
	r.Progress = nil
	r.Result = nil
	r.Error = nil
	r.ExpiresAt = time.Time{}
	r.Enqueued = false
	r.UpdatedAt = now
	if r.Callback != nil {
		r.Callback.State = CallbackWaiting
		r.Callback.Attempts = 0
		r.Callback.LastError = ""
		r.Callback.UpdatedAt = now
	}
	return nil
}

// MarkEnqueued records that the Queue holds r: a Handler that stored r
// before it enqueued it marks it so, and so does the Worker's sweep after
// it enqueued a record whose accept was interrupted. It changes nothing
// else, not even UpdatedAt.
func (r *Record) MarkEnqueued() error {
	r.Enqueued = true
	return nil
}

// errNoRecord is what the Handler and the Worker make of a Store that
// returned neither a record nor an error.
var errNoRecord = errors.New("asyncreq: store returned neither a record nor an error")

// checkRecord turns a Store's (nil, nil) answer into errNoRecord, so that
// a faulty backend gets an error and a log line, not a panic.
func checkRecord(rec *Record, err error) (*Record, error) {
	if err == nil && rec == nil {
		return nil, errNoRecord
	}
	return rec, err
}

// isMissing reports whether err says a record does not exist (any more).
func isMissing(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrGone)
}

// goneTo reports whether a Store's ErrGone may say to owner that the
// record existed: only a tombstone of owner's own record may. A tombstone
// whose owner the Store did not tell (ErrGone without a *GoneError) may
// say so only when there are no owners (owners is false).
func goneTo(err error, owner string, owners bool) bool {
	if ge := (*GoneError)(nil); errors.As(err, &ge) && ge != nil {
		return ge.Owner == owner
	}
	return !owners
}
