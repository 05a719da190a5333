package nats

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/nats-io/nats.go/jetstream"
)

// The operator capabilities a Backend has. It is no asyncreq.Requeuer: a
// key-value write and a stream publish cannot be one atomic step (see
// Operator capabilities in the package documentation).
var (
	_ asyncreq.Lister         = (*Backend)(nil)
	_ asyncreq.FinishedPurger = (*Backend)(nil)
)

// eachRecord calls fn with every record of the bucket (tombstones left
// out) in one streamed pass: a key-value watch of the current values of
// the "r." keys, which reads every record once. The records carry the
// bodies kept inline; those kept as blobs are not read.
//
// With Replicas above 1 the watch's consumer may read from a replica
// that is behind the stream leader, and end its pass before the writes
// the leader acknowledged. So the pass first writes the key "l.sync" (a
// write goes through the leader, after every write it acknowledged) and
// watches it too, and it ends only once that write came through; a
// record written again while it waits is seen again, so the records are
// kept by key, latest revision first, and handed to fn at the end.
func (b *Backend) eachRecord(ctx context.Context, fn func(*asyncreq.Record)) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, lagging := b.kv.(*leaderKV)
	keys := []string{prefixRecord + ">"}
	var syncRev uint64
	if lagging {
		rev, err := b.kv.Put(ctx, keySync, []byte{'S'})
		if err != nil {
			return ctxErr(ctx, fmt.Errorf("nats: list records: %w", err))
		}
		syncRev = rev
		keys = append(keys, keySync)
	}
	w, err := b.kv.WatchFiltered(wctx, keys, jetstream.IgnoreDeletes())
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("nats: list records: %w", err))
	}
	defer func() { _ = w.Stop() }()
	latest := make(map[string]*stored)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return ctx.Err()
			case e == nil && !lagging:
				return ctx.Err() // all current values are in
			case e == nil:
				continue // the initial values are in: wait for the sync write
			case e.Key() == keySync:
				if e.Revision() < syncRev {
					continue
				}
				// Every write the leader acknowledged before it is in.
				for _, s := range latest {
					fn(s.rec)
				}
				return ctx.Err()
			}
			s, err := decode(e)
			if err != nil {
				return err
			}
			if s.rec == nil {
				delete(latest, e.Key())
				continue
			}
			if !lagging {
				fn(s.rec)
				continue
			}
			if old, ok := latest[e.Key()]; !ok || old.rev < s.rev {
				latest[e.Key()] = s
			}
		}
	}
}

// newer reports whether a comes before b in a listing: created later, or
// at the same time with a greater id.
func newer(a, b *asyncreq.Record) bool {
	return asyncreq.ListCursor{CreatedAt: a.CreatedAt, ID: a.ID}.After(b.CreatedAt, b.ID)
}

// oldestFirst is a heap of records whose top is the one a listing reaches
// last: it keeps the newest n of a stream of records.
type oldestFirst []*asyncreq.Record

func (h oldestFirst) Len() int           { return len(h) }
func (h oldestFirst) Less(i, j int) bool { return newer(h[j], h[i]) }
func (h oldestFirst) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *oldestFirst) Push(x any)        { *h = append(*h, x.(*asyncreq.Record)) }
func (h *oldestFirst) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}

// List returns a page of records, newest first (see asyncreq.Lister). A
// key-value bucket lists keys in no useful order, so every page reads
// every record of the bucket in one streamed pass (its inline bodies
// included) and keeps the page's records: O(n) in the records held, about
// as long as a pass of Purge, whatever the page size or the filter. It
// suits an operator's occasional look, not a dashboard polled every
// second on a large bucket.
func (b *Backend) List(ctx context.Context, q asyncreq.ListQuery) (asyncreq.ListPage, error) {
	if err := b.check(ctx); err != nil {
		return asyncreq.ListPage{}, err
	}
	cur, err := asyncreq.ParseListCursor(q.Cursor)
	if err != nil {
		return asyncreq.ListPage{}, fmt.Errorf("nats: list: %w", err)
	}
	if q.State != "" && !q.State.Valid() {
		return asyncreq.ListPage{}, nil
	}
	limit := q.PageLimit()
	// The page and one more record, to know whether a next page holds
	// anything.
	h := make(oldestFirst, 0, limit+1)
	held := make(map[string]bool, limit+1) // the ids in h
	err = b.eachRecord(ctx, func(rec *asyncreq.Record) {
		if (q.State != "" && rec.State != q.State) || (q.Owner != "" && rec.Owner != q.Owner) {
			return
		}
		if !cur.IsZero() && !cur.After(rec.CreatedAt, rec.ID) {
			return
		}
		if held[rec.ID] {
			// Written again during the pass: the later value replaces
			// the earlier.
			i := slices.IndexFunc(h, func(r *asyncreq.Record) bool { return r.ID == rec.ID })
			h[i] = rec
			heap.Fix(&h, i)
			return
		}
		if h.Len() == limit+1 {
			if !newer(rec, h[0]) {
				return
			}
			delete(held, heap.Pop(&h).(*asyncreq.Record).ID)
		}
		heap.Push(&h, rec)
		held[rec.ID] = true
	})
	if err != nil {
		return asyncreq.ListPage{}, err
	}
	var page asyncreq.ListPage
	more := h.Len() > limit
	if more {
		heap.Pop(&h)
	}
	page.Records = make([]*asyncreq.Record, h.Len())
	for i := len(page.Records) - 1; i >= 0; i-- {
		rec := heap.Pop(&h).(*asyncreq.Record)
		rec.Body = nil
		if rec.Result != nil {
			rec.Result.Body = nil
		}
		page.Records[i] = rec
	}
	if more {
		last := page.Records[len(page.Records)-1]
		page.Next = asyncreq.ListCursor{CreatedAt: last.CreatedAt, ID: last.ID}.String()
	}
	return page, nil
}

// CountStates counts the records by state (see asyncreq.Lister) in one
// streamed pass over every record, as List does: O(n), exact.
func (b *Backend) CountStates(ctx context.Context) (asyncreq.StateCounts, error) {
	if err := b.check(ctx); err != nil {
		return asyncreq.StateCounts{}, err
	}
	var c asyncreq.StateCounts
	err := b.eachRecord(ctx, func(rec *asyncreq.Record) { c.Add(rec.State, 1) })
	if err != nil {
		return asyncreq.StateCounts{}, err
	}
	return c, nil
}

// PurgeFinished deletes up to limit final records last changed before the
// given time (see asyncreq.FinishedPurger). It finds them through the
// expiry markers every final record has, in one streamed pass over the
// markers (as Purge), and reads each marked record: O(final records), plus
// a compare-and-set delete per record deleted. A record is deleted as
// Delete deletes it.
func (b *Backend) PurgeFinished(ctx context.Context, before time.Time, limit int, tombstone bool) (int, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	ids, err := b.listKeys(ctx, prefixExpiry, 0)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if n >= limit {
			break
		}
		done, err := b.purgeFinishedOne(ctx, id, before, tombstone)
		if err != nil {
			return n, err
		}
		if done {
			n++
		}
	}
	return n, nil
}

// purgeFinishedOne deletes the record id if it is final and last changed
// before the given time, and reports whether it did.
func (b *Backend) purgeFinishedOne(ctx context.Context, id string, before time.Time, tombstone bool) (bool, error) {
	for range maxCASRetries {
		s, err := b.load(ctx, id)
		if errors.Is(err, asyncreq.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if s.rec == nil || !s.rec.State.Final() || !s.rec.UpdatedAt.Before(before) {
			return false, nil
		}
		err = b.remove(ctx, s, tombstone)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return false, ctxErr(ctx, fmt.Errorf("nats: purge finished %s: %w", id, err))
		}
		return true, nil
	}
	return false, fmt.Errorf("nats: purge finished %s: too much contention", id)
}
