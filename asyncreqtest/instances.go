package asyncreqtest

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// TestTwoInstances checks the HTTP contract with the handler and the
// workers in different processes, as a deployment with API and worker
// processes on one database runs them: the handler on instance one, the
// workers on instance two.
//
// newInstances is called once per case and returns two instances on the
// same fresh, isolated data (one database file, schema, key prefix, stream
// or queue name), each with connections of its own, as two processes would
// open them, and registers their cleanup with t.Cleanup. Nothing one
// instance keeps in memory may reach the other except through the backend:
// in particular a Watcher that sees only its own process's changes sees
// none of the other instance's, and the handler and the worker must cope
// with that (a watch is a hint; see asyncreq.Watcher).
//
// The cases check that a request accepted on one instance runs on the
// other and its outcome reaches the first (status 303, the result, a
// permanent failure), that a Prefer: wait submit and a long poll answer
// soon after the other instance finishes the request, that DELETE cancels
// a pending request and the processor of a running one on the other
// instance, and that an idempotency key repeated on either instance names
// one request, processed once.
func TestTwoInstances(t *testing.T, newInstances func(t *testing.T) (one, two asyncreq.Backend), opts *Options) {
	t.Helper()
	k := &handlerKit{cfg: newConfig(t, opts), newInstances: func(t *testing.T) (asyncreq.Backend, asyncreq.Backend) {
		one, two := newInstances(t)
		require.False(t, sameValue(one, two), "asyncreqtest: TestTwoInstances needs two instances, not one twice")
		return one, two
	}}
	runGroups(t, k.cfg, []group{
		{"Submit", []testCase{
			{"AcceptedThenRunningThenSeeOtherThenResult", k.lifecycle},
			{"PermanentFailureIsFinalProblem", k.permanentFailure},
			{"PreferWaitAnswersWithResult", k.preferWait},
		}},
		{"Status", []testCase{
			{"LongPollReturnsOnChange", k.longPoll},
		}},
		{"Idempotency", []testCase{
			{"SameKeyOnEitherInstanceIsSameRequest", k.idempotentAcrossInstances},
		}},
		{"Delete", []testCase{
			{"PendingIsCanceledAndNeverRuns", k.deletePending},
			{"RunningCancelsProcessorContext", k.deleteRunning},
		}},
	})
}

// idempotentAcrossInstances repeats a submit with an idempotency key on a
// handler over each instance.
func (k *handlerKit) idempotentAcrossInstances(t *testing.T, ctx context.Context) {
	e := k.newEnv(t)
	var c calls
	e.startWorker(t, ctx, echo(&c), nil, nil)
	other := e.serve(t, e.two).URL + mount + "/"
	submitOther := func(body []byte, key string) response {
		return e.do(t, ctx, http.MethodPost, other, body, "Content-Type", "text/plain; charset=utf-8", "Idempotency-Key", key)
	}

	body := []byte("once on either instance")
	first := e.submit(t, ctx, body, "Idempotency-Key", "across-1")
	id := e.accepted(t, first)
	again := submitOther(body, "across-1")
	assert.Equal(t, id, e.accepted(t, again), "a repeat on the other instance is the same request")
	assert.Equal(t, first.Header.Get("Location"), again.Header.Get("Location"))
	problem(t, submitOther([]byte("another body"), "across-1"), http.StatusUnprocessableEntity)

	e.waitState(t, ctx, id, asyncreq.StateSucceeded, patience)
	late := submitOther(body, "across-1")
	assert.Equal(t, id, e.accepted(t, late), "a repeat on the other instance after the request finished is still the same request")
	byOther := e.accepted(t, submitOther(body, "across-2"))
	assert.NotEqual(t, id, byOther, "another key makes another request")
	assert.Equal(t, byOther, e.accepted(t, e.submit(t, ctx, body, "Idempotency-Key", "across-2")), "a key first used on the other instance names its request here")
	e.waitState(t, ctx, byOther, asyncreq.StateSucceeded, patience)
	n, total := c.of(id)
	assert.Equal(t, 1, n, "the request with a repeated key is processed once")
	assert.Equal(t, 2, total, "two keys, two requests processed")
}

// InstanceView returns a view of store for one instance of
// TestTwoInstances: it reaches the same records as store, but its Watch
// (it is an asyncreq.Watcher) sees only the changes made through the view,
// as the Watcher of a backend that sees only its own process's changes
// would. It offers none of store's other optional interfaces.
//
// A Queue-only backend, paired in its tests with an in-memory Store, runs
// TestTwoInstances with each instance's Queue beside its own view of one
// shared Store:
//
//	store := memory.New(nil)
//	one := asyncreq.Pair(asyncreqtest.InstanceView(store), q1)
//	two := asyncreq.Pair(asyncreqtest.InstanceView(store), q2)
func InstanceView(store asyncreq.Store) asyncreq.Store {
	return &instanceView{s: store, watches: make(map[string]map[chan struct{}]struct{})}
}

// instanceView is what InstanceView returns.
type instanceView struct {
	s       asyncreq.Store
	mu      sync.Mutex
	watches map[string]map[chan struct{}]struct{}
}

var _ asyncreq.Watcher = (*instanceView)(nil)

func (v *instanceView) Create(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	return v.s.Create(ctx, rec)
}

func (v *instanceView) Get(ctx context.Context, id string) (*asyncreq.Record, error) {
	return v.s.Get(ctx, id)
}

func (v *instanceView) Update(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	rec, err := v.s.Update(ctx, id, fn)
	if err == nil {
		v.changed(id)
	}
	return rec, err
}

func (v *instanceView) Delete(ctx context.Context, id string, tombstone bool) error {
	err := v.s.Delete(ctx, id, tombstone)
	if err == nil {
		v.changed(id)
	}
	return err
}

func (v *instanceView) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	return v.s.Purge(ctx, now, limit)
}

// Watch implements asyncreq.Watcher for the changes made through v.
func (v *instanceView) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan struct{})
	v.mu.Lock()
	set := v.watches[id]
	if set == nil {
		set = make(map[chan struct{}]struct{})
		v.watches[id] = set
	}
	set[ch] = struct{}{}
	v.mu.Unlock()
	context.AfterFunc(ctx, func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		if _, ok := v.watches[id][ch]; ok {
			delete(v.watches[id], ch)
			if len(v.watches[id]) == 0 {
				delete(v.watches, id)
			}
			close(ch)
		}
	})
	return ch, nil
}

// changed closes the watches of id made through v.
func (v *instanceView) changed(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for ch := range v.watches[id] {
		close(ch)
	}
	delete(v.watches, id)
}

// sameValue reports whether a and b are the same value, without panicking
// on values of types that are not comparable.
func sameValue(a, b any) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}
