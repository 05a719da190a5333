package client

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/asyncreq/asyncreq"
)

// Tracker errors.
var (
	// ErrTrackerStarted is returned by Tracker.Start when called twice.
	ErrTrackerStarted = errors.New("client: tracker already started")
	// ErrTrackerStopped is returned by Tracker.Track and Tracker.Start after
	// Stop.
	ErrTrackerStopped = errors.New("client: tracker stopped")
)

// errTrackerStop is the cancellation cause of a tracker's context on Stop.
var errTrackerStop = errors.New("client: tracker stopping")

// Delivery is the outcome of one tracked operation.
type Delivery struct {
	// Key is the key Track returned for the operation.
	Key string
	// Operation is the finished operation.
	Operation *Operation
	// Result is the result of a request that succeeded, or nil.
	Result *Response
	// Err is why there is no result: an *OperationError for a request that
	// failed or was canceled, a *ResponseError (404 or 410 among them) for
	// a status or result the server would not give, a *TokenError for a
	// stored token that could not be resumed.
	Err error
}

// TrackerOptions configures a Tracker. Nil means defaults.
type TrackerOptions struct {
	// Store keeps the pending operations. Default NewMemoryTrackerStore().
	Store TrackerStore
	// Concurrency is how many polls run at once. Default 4.
	Concurrency int
	// OnDone, if set, receives each delivery, called from the tracker's
	// goroutines (up to Concurrency at once). If nil, deliveries are sent
	// on the channel Results returns. Default nil.
	OnDone func(Delivery)
	// Logger receives the errors the tracker handles itself (transient poll
	// errors, store errors). Default: discard.
	Logger *slog.Logger
}

// Tracker polls many operations in the background and delivers each
// outcome once. It keeps the resume token of every pending operation in its
// TrackerStore until the outcome has been delivered (OnDone returned, or the
// channel receive happened), so that a Tracker started later with the same
// store picks up what was left: no operation is forgotten, and none is
// delivered twice unless the process stops between a delivery and the
// store's Delete of it (then it is delivered again after the restart, with
// the same Key, so a consumer can tell).
//
// Transient errors (network, 408, 429, 5xx) are retried with backoff for
// as long as the tracker runs; other errors are delivered.
type Tracker struct {
	c           *Client
	store       TrackerStore
	concurrency int
	onDone      func(Delivery)
	results     chan Delivery
	log         *slog.Logger

	mu      sync.Mutex
	started bool
	stopped bool
	ops     map[string]*Operation
	due     dueHeap
	wake    chan struct{}
	cancel  context.CancelCauseFunc
	done    chan struct{}
}

// NewTracker returns a Tracker that polls with c. Call Start to begin.
func NewTracker(c *Client, opts *TrackerOptions) (*Tracker, error) {
	if c == nil {
		return nil, errors.New("client: NewTracker: nil Client")
	}
	var o TrackerOptions
	if opts != nil {
		o = *opts
	}
	if o.Concurrency < 0 {
		return nil, errors.New("client: TrackerOptions.Concurrency is negative")
	}
	if o.Concurrency == 0 {
		o.Concurrency = 4
	}
	if o.Store == nil {
		o.Store = NewMemoryTrackerStore()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	t := &Tracker{
		c:           c,
		store:       o.Store,
		concurrency: o.Concurrency,
		onDone:      o.OnDone,
		log:         o.Logger,
		ops:         make(map[string]*Operation),
		wake:        make(chan struct{}, 1),
	}
	if t.onDone == nil {
		t.results = make(chan Delivery)
	}
	return t, nil
}

// Results returns the channel deliveries are sent on when
// TrackerOptions.OnDone is nil, or nil when it is set. The channel is never
// closed; stop receiving after Stop returns.
func (t *Tracker) Results() <-chan Delivery { return t.results }

// Track adds op to the tracked operations and returns the key its delivery
// will carry: its id, else its status URL. It records op in the store
// before it returns, so it is tracked even if the process stops next.
// Tracking an operation already tracked under the same key does nothing.
// An operation that finished on submit without a result URL is tracked in
// memory only and delivered at once. Track may be called before Start;
// such operations are polled from Start on.
func (t *Tracker) Track(ctx context.Context, op *Operation) (string, error) {
	if op == nil {
		return "", errors.New("client: Track: nil Operation")
	}
	key := op.ID()
	if key == "" {
		key = op.StatusURL()
	}
	if key == "" {
		key = op.ResultURL()
	}
	token, err := op.ResumeToken()
	switch {
	case errors.Is(err, ErrNotResumable):
		key = "inline:" + asyncreq.NewID()
		token = ""
	case err != nil:
		return "", err
	}

	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return "", ErrTrackerStopped
	}
	_, dup := t.ops[key]
	t.mu.Unlock()
	if dup {
		return key, nil
	}
	if token != "" {
		if err := t.store.Put(ctx, TrackedOperation{Key: key, Token: token}); err != nil {
			return "", fmt.Errorf("client: recording tracked operation: %w", err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.ops[key]; dup {
		return key, nil
	}
	t.ops[key] = op
	t.scheduleLocked(key, time.Now())
	return key, nil
}

// Pending returns how many operations are tracked and not yet delivered.
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ops)
}

// Start loads the operations the store holds and starts polling. The
// tracker runs until Stop is called or ctx ends. Stored tokens that cannot
// be resumed are delivered with a *TokenError. Start returns
// ErrTrackerStarted if called twice and ErrTrackerStopped after Stop.
func (t *Tracker) Start(ctx context.Context) error {
	t.mu.Lock()
	switch {
	case t.stopped:
		t.mu.Unlock()
		return ErrTrackerStopped
	case t.started:
		t.mu.Unlock()
		return ErrTrackerStarted
	}
	t.started = true
	t.mu.Unlock()

	stored, err := t.store.List(ctx)
	if err != nil {
		t.mu.Lock()
		t.started = false
		t.mu.Unlock()
		return fmt.Errorf("client: loading tracked operations: %w", err)
	}
	var bad []Delivery
	t.mu.Lock()
	for _, s := range stored {
		if _, ok := t.ops[s.Key]; ok {
			continue
		}
		op, err := t.c.Resume(s.Token)
		if err != nil {
			bad = append(bad, Delivery{Key: s.Key, Err: err})
			continue
		}
		t.ops[s.Key] = op
		t.scheduleLocked(s.Key, time.Now())
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	t.cancel = cancel
	t.done = make(chan struct{})
	t.mu.Unlock()

	work := make(chan string)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.schedule(runCtx, work)
	}()
	for range t.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-runCtx.Done():
					return
				case key := <-work:
					t.step(runCtx, key)
				}
			}
		}()
	}
	if len(bad) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, d := range bad {
				if runCtx.Err() != nil {
					return
				}
				t.finish(runCtx, d.Key, d)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(t.done)
	}()
	return nil
}

// Stop stops polling and waits for the tracker's goroutines to end, or for
// ctx to end (then it returns ctx.Err()). Operations not yet delivered stay
// in the store for the next Tracker. Stop is idempotent and safe before
// Start; a stopped tracker cannot be started again.
func (t *Tracker) Stop(ctx context.Context) error {
	t.mu.Lock()
	t.stopped = true
	cancel, done := t.cancel, t.done
	t.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel(errTrackerStop)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// scheduleLocked makes key due at the given time and wakes the scheduler.
func (t *Tracker) scheduleLocked(key string, at time.Time) {
	heap.Push(&t.due, dueItem{at: at, key: key})
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// schedule hands due operations to the workers until ctx ends.
func (t *Tracker) schedule(ctx context.Context, work chan<- string) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		t.mu.Lock()
		var next time.Duration = -1
		var key string
		if len(t.due) > 0 {
			if wait := time.Until(t.due[0].at); wait > 0 {
				next = wait
			} else {
				key = heap.Pop(&t.due).(dueItem).key
			}
		}
		t.mu.Unlock()

		if key != "" {
			select {
			case work <- key:
				continue
			case <-ctx.Done():
				return
			}
		}
		var tc <-chan time.Time
		if next >= 0 {
			timer.Reset(next)
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		case <-tc:
		}
		timer.Stop()
	}
}

// step advances the operation with the given key by one poll, and delivers
// it or schedules its next poll.
func (t *Tracker) step(ctx context.Context, key string) {
	t.mu.Lock()
	op := t.ops[key]
	t.mu.Unlock()
	if op == nil {
		return
	}
	var err error
	if !op.Done() {
		_, err = op.Poll(ctx)
	}
	if err == nil && op.Done() {
		var res *Response
		res, err = op.Result(ctx)
		if err == nil || !isNetworkError(err) {
			t.finish(ctx, key, Delivery{Key: key, Operation: op, Result: res, Err: err})
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	var wait time.Duration
	switch {
	case err == nil:
		wait = op.nextDelay()
	case transient(err):
		t.log.LogAttrs(ctx, slog.LevelWarn, "polling tracked operation", slog.String("key", key), slog.Any("error", err))
		wait = op.errorDelay(err)
	default:
		t.finish(ctx, key, Delivery{Key: key, Operation: op, Err: err})
		return
	}
	t.mu.Lock()
	t.scheduleLocked(key, time.Now().Add(wait))
	t.mu.Unlock()
}

// finish delivers d and forgets its operation. If the tracker stops before
// the delivery is taken, the operation stays in the store.
func (t *Tracker) finish(ctx context.Context, key string, d Delivery) {
	if !t.deliver(ctx, d) {
		return
	}
	t.mu.Lock()
	delete(t.ops, key)
	t.mu.Unlock()
	if err := t.store.Delete(context.WithoutCancel(ctx), key); err != nil {
		t.log.LogAttrs(ctx, slog.LevelError, "forgetting delivered operation", slog.String("key", key), slog.Any("error", err))
	}
}

// deliver hands d to OnDone or the channel. It reports false if ctx ended
// first.
func (t *Tracker) deliver(ctx context.Context, d Delivery) bool {
	if t.onDone != nil {
		if ctx.Err() != nil {
			return false
		}
		t.onDone(d)
		return true
	}
	select {
	case t.results <- d:
		return true
	case <-ctx.Done():
		return false
	}
}

// dueItem is an operation due for a poll at a time.
type dueItem struct {
	at  time.Time
	key string
}

// dueHeap orders due items by time; it implements heap.Interface.
type dueHeap []dueItem

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
