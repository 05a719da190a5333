package memory

import (
	"context"
	"time"

	"github.com/asyncreq/asyncreq"
)

var (
	_ asyncreq.Lister         = (*Backend)(nil)
	_ asyncreq.FinishedPurger = (*Backend)(nil)
	_ asyncreq.Requeuer       = (*Backend)(nil)
)

// ownerState names the index of one owner's records in one state.
type ownerState struct {
	owner string
	state asyncreq.State
}

// indexes are the ordered indexes of a Backend's records that the operator
// capabilities read: by state and by owner and state, each ordered by
// (CreatedAt, ID), so that a page of any listing is read off one index or
// merged from five; and the final records by (UpdatedAt, ID), for
// PurgeFinished. Each record is in one to three of them: a record of no
// owner is in no index by owner.
type indexes struct {
	byState      map[asyncreq.State]*index
	byOwnerState map[ownerState]*index
	finished     index
}

func (x *indexes) init() {
	x.byState = make(map[asyncreq.State]*index)
	x.byOwnerState = make(map[ownerState]*index)
}

// add indexes rec.
func (x *indexes) add(rec *asyncreq.Record) {
	k := keyOf(rec.CreatedAt, rec.ID)
	s := x.byState[rec.State]
	if s == nil {
		s = &index{}
		x.byState[rec.State] = s
	}
	s.add(k)
	// A listing names an owner or reads byState: the records of no owner
	// need no index of their own.
	if rec.Owner != "" {
		os := ownerState{rec.Owner, rec.State}
		o := x.byOwnerState[os]
		if o == nil {
			o = &index{}
			x.byOwnerState[os] = o
		}
		o.add(k)
	}
	if rec.State.Final() {
		x.finished.add(keyOf(rec.UpdatedAt, rec.ID))
	}
}

// remove takes rec out of the indexes.
func (x *indexes) remove(rec *asyncreq.Record) {
	k := keyOf(rec.CreatedAt, rec.ID)
	if s := x.byState[rec.State]; s != nil {
		s.remove(k)
		// The five states' indexes stay; one for a state no Record
		// transition makes goes when it empties.
		if s.n == 0 && !known(rec.State) {
			delete(x.byState, rec.State)
		}
	}
	if rec.Owner != "" {
		os := ownerState{rec.Owner, rec.State}
		if o := x.byOwnerState[os]; o != nil {
			o.remove(k)
			if o.n == 0 {
				delete(x.byOwnerState, os)
			}
		}
	}
	if rec.State.Final() {
		x.finished.remove(keyOf(rec.UpdatedAt, rec.ID))
	}
}

// change moves rec in the indexes from where old had it, when a field they
// order or select by changed.
func (x *indexes) change(rec, old *asyncreq.Record) {
	if old.State == rec.State && old.Owner == rec.Owner && old.CreatedAt.Equal(rec.CreatedAt) &&
		(!rec.State.Final() || old.UpdatedAt.Equal(rec.UpdatedAt)) {
		return
	}
	x.remove(old)
	x.add(rec)
}

func known(s asyncreq.State) bool {
	var c asyncreq.StateCounts
	return c.Add(s, 1)
}

// List implements asyncreq.Lister. It reads the page off the index of the
// records in q.State of q.Owner, or merges it from the five indexes of
// the states when q.State is "": a page costs O(log n + limit) under the
// Backend's lock, whatever the number of records n and however few of
// them the filter keeps, plus copying the listed records without their
// bodies.
func (b *Backend) List(ctx context.Context, q asyncreq.ListQuery) (asyncreq.ListPage, error) {
	cur, err := asyncreq.ParseListCursor(q.Cursor)
	if err != nil {
		return asyncreq.ListPage{}, err
	}
	limit := q.PageLimit()
	if err := b.lock(ctx); err != nil {
		return asyncreq.ListPage{}, err
	}
	defer b.mu.Unlock()

	var from []*index
	for _, s := range b.states(q.State) {
		var x *index
		if q.Owner == "" {
			x = b.idx.byState[s]
		} else {
			x = b.idx.byOwnerState[ownerState{q.Owner, s}]
		}
		if x != nil && x.n > 0 {
			from = append(from, x)
		}
	}
	at := keyOf(cur.CreatedAt, cur.ID)
	walkers := make([]walker, len(from))
	for i, x := range from {
		walkers[i] = x.below(at, !cur.IsZero())
	}
	var page asyncreq.ListPage
	for len(page.Records) <= limit {
		best := -1
		var bk key
		for i := range walkers {
			if k, ok := walkers[i].peek(); ok && (best < 0 || k.cmp(bk) > 0) {
				best, bk = i, k
			}
		}
		if best < 0 {
			break
		}
		walkers[best].next()
		if len(page.Records) == limit {
			last := page.Records[limit-1]
			page.Next = asyncreq.ListCursor{CreatedAt: last.CreatedAt, ID: last.ID}.String()
			break
		}
		page.Records = append(page.Records, b.records[bk.id].WithoutBodies().Clone())
	}
	return page, nil
}

// states returns the states a listing of s reads: s, or all five for "".
func (b *Backend) states(s asyncreq.State) []asyncreq.State {
	if s != "" {
		return []asyncreq.State{s}
	}
	return []asyncreq.State{
		asyncreq.StatePending, asyncreq.StateRunning, asyncreq.StateSucceeded,
		asyncreq.StateFailed, asyncreq.StateCanceled,
	}
}

// CountStates implements asyncreq.Lister. It reads the sizes of the
// Backend's indexes: O(1), exact.
func (b *Backend) CountStates(ctx context.Context) (asyncreq.StateCounts, error) {
	if err := b.lock(ctx); err != nil {
		return asyncreq.StateCounts{}, err
	}
	defer b.mu.Unlock()
	var c asyncreq.StateCounts
	for s, x := range b.idx.byState {
		c.Add(s, int64(x.n))
	}
	return c, nil
}

// PurgeFinished implements asyncreq.FinishedPurger. It reads the final
// records in the order they last changed off an index, so that a call
// costs O(limit · (log n + 512)) under the Backend's lock, whatever the
// number of records n: a large purge in batches of a few thousand leaves
// the lock to other calls between batches.
func (b *Backend) PurgeFinished(ctx context.Context, before time.Time, limit int, tombstone bool) (int, error) {
	if err := b.lock(ctx); err != nil {
		return 0, err
	}
	defer b.mu.Unlock()
	end := before.UnixNano()
	var ids []string
	b.idx.finished.ascend(func(k key) bool {
		if len(ids) >= limit || k.ns >= end {
			return false
		}
		ids = append(ids, k.id)
		return true
	})
	now := b.now()
	for _, id := range ids {
		rec := b.records[id]
		b.remove(rec)
		if tombstone && rec.TombstoneTTL > 0 {
			b.tomb(rec, now.Add(rec.TombstoneTTL))
		}
	}
	return len(ids), nil
}

// Requeue implements asyncreq.Requeuer: Update and Enqueue(id, 0) under
// one hold of the Backend's lock. The record is stored with Enqueued set.
// When the queue holds an entry for the id that no Dequeue has taken yet
// (a pending request canceled before it ran), Requeue keeps that entry
// rather than adding a second, so that the request does not run twice.
func (b *Backend) Requeue(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	if err := b.lock(ctx); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	rec, err := b.update(id, func(r *asyncreq.Record) error {
		if err := fn(r); err != nil {
			return err
		}
		r.Enqueued = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	if b.waiting[id] == 0 {
		b.push(&entry{id: id}, 0)
	}
	return rec, nil
}
