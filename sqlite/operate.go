package sqlite

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"

	"github.com/asyncreq/asyncreq"
	msqlite "modernc.org/sqlite"
)

var (
	_ asyncreq.Lister         = (*Backend)(nil)
	_ asyncreq.FinishedPurger = (*Backend)(nil)
	_ asyncreq.Requeuer       = (*Backend)(nil)
)

// List implements asyncreq.Lister. A page is one query on the read pool
// that reads the limit's records (and one more, to know whether a next
// page exists) off an index ordered newest first, from the cursor on: one
// index for each combination of the state and owner filters (see
// migrations/0004_list.sql), so that its cost does not grow with the
// records retained, nor with those the filters leave out.
//
// The cursor holds CreatedAt in Unix nanoseconds, as the created_at column
// does, so a listing continues exactly where its page ended.
func (b *Backend) List(ctx context.Context, q asyncreq.ListQuery) (asyncreq.ListPage, error) {
	cur, err := asyncreq.ParseListCursor(q.Cursor)
	if err != nil {
		return asyncreq.ListPage{}, err
	}
	if err := b.enter(ctx); err != nil {
		return asyncreq.ListPage{}, err
	}
	defer b.exit()
	limit := q.PageLimit()
	args := []any{b.queue}
	if q.State != "" {
		args = append(args, string(q.State))
	}
	if q.Owner != "" {
		args = append(args, q.Owner)
	}
	if !cur.IsZero() {
		args = append(args, cur.CreatedAt.UnixNano(), cur.ID)
	}
	args = append(args, limit+1)
	st, err := b.eng.readStmt(ctx, b.listSQL(q.State != "", q.Owner != "", !cur.IsZero()))
	if err != nil {
		return asyncreq.ListPage{}, readErr(ctx, "list", err)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return asyncreq.ListPage{}, readErr(ctx, "list", err)
	}
	defer rows.Close()
	var (
		page   asyncreq.ListPage
		lastAt int64
		lastID string
	)
	for rows.Next() {
		var (
			at int64
			id string
			e  encoded
		)
		if err := rows.Scan(&at, &id, &e.data); err != nil {
			return asyncreq.ListPage{}, readErr(ctx, "list", err)
		}
		if len(page.Records) == limit {
			page.Next = asyncreq.ListCursor{CreatedAt: time.Unix(0, lastAt).UTC(), ID: lastID}.String()
			break
		}
		rec, err := decodeRecord(e)
		if err != nil {
			return asyncreq.ListPage{}, err
		}
		page.Records = append(page.Records, rec)
		lastAt, lastID = at, id
	}
	if err := rows.Err(); err != nil {
		return asyncreq.ListPage{}, readErr(ctx, "list", err)
	}
	return page, nil
}

// listSQL returns the statement of a listing with the given filters.
func (b *Backend) listSQL(state, owner, after bool) string {
	switch {
	case state && owner && after:
		return b.sql.listOwnerStateAfter
	case state && owner:
		return b.sql.listOwnerState
	case state && after:
		return b.sql.listStateAfter
	case state:
		return b.sql.listState
	case owner && after:
		return b.sql.listOwnerAfter
	case owner:
		return b.sql.listOwner
	case after:
		return b.sql.listAllAfter
	default:
		return b.sql.listAll
	}
}

// CountStates implements asyncreq.Lister. It reads the counts the writer
// keeps in the table <TablePrefix>state_counts, a row for each state:
// O(1), exact as of the last commit. (The writer adds up the changes of a
// transaction's writes and updates those rows once per commit.)
func (b *Backend) CountStates(ctx context.Context) (asyncreq.StateCounts, error) {
	if err := b.enter(ctx); err != nil {
		return asyncreq.StateCounts{}, err
	}
	defer b.exit()
	st, err := b.eng.readStmt(ctx, b.sql.countStates)
	if err != nil {
		return asyncreq.StateCounts{}, readErr(ctx, "count states", err)
	}
	rows, err := st.QueryContext(ctx, b.queue)
	if err != nil {
		return asyncreq.StateCounts{}, readErr(ctx, "count states", err)
	}
	defer rows.Close()
	var c asyncreq.StateCounts
	for rows.Next() {
		var (
			state string
			n     int64
		)
		if err := rows.Scan(&state, &n); err != nil {
			return asyncreq.StateCounts{}, readErr(ctx, "count states", err)
		}
		c.Add(asyncreq.State(state), n)
	}
	if err := rows.Err(); err != nil {
		return asyncreq.StateCounts{}, readErr(ctx, "count states", err)
	}
	return c, nil
}

// PurgeFinished implements asyncreq.FinishedPurger. Like Purge, it deletes
// in transactions of at most purgeChunk records, which the writer runs as
// background work between the writes of requests, so that accepts wait for
// at most one of them; each finds its records through the index of the
// final records by (queue, updated_at). A tombstone it keeps lasts the
// record's TombstoneTTL from now, as Delete's does.
func (b *Backend) PurgeFinished(ctx context.Context, before time.Time, limit int, tombstone bool) (int, error) {
	if err := b.enter(ctx); err != nil {
		return 0, err
	}
	defer b.exit()
	total := 0
	for total < limit {
		k := min(purgeChunk, limit-total)
		n, err := b.purgeFinishedChunk(ctx, before.UnixNano(), k, tombstone)
		total += n
		if err != nil || n < k {
			return total, err
		}
	}
	return total, nil
}

// purgeFinishedChunk deletes, in one background transaction, up to k final
// records last changed before beforeN, and returns how many.
func (b *Backend) purgeFinishedChunk(ctx context.Context, beforeN int64, k int, tombstone bool) (int, error) {
	var purged []string
	purge := func(t *wtx) error {
		purged = purged[:0]
		rows, err := t.query(b.sql.purgeFinished, b.queue, beforeN, k)
		if err != nil {
			return err
		}
		type tomb struct {
			id, owner string
			ttl       int64
		}
		var tombs []tomb
		for rows.Next() {
			var (
				tb    tomb
				state string
			)
			if err := rows.Scan(&tb.id, &tb.ttl, &tb.owner, &state); err != nil {
				_ = rows.Close()
				return err
			}
			t.count(b.prefix, b.queue, state, -1)
			purged = append(purged, tb.id)
			if tombstone && tb.ttl > 0 {
				tombs = append(tombs, tb)
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		now := b.now().UnixNano()
		for _, tb := range tombs {
			if _, err := t.exec(b.sql.putTombstone, b.queue, tb.id, now+tb.ttl, tb.owner); err != nil {
				return err
			}
		}
		return nil
	}
	after := func() {
		for _, id := range purged {
			b.changed(id)
		}
	}
	if err := b.eng.doIdle(ctx, purge, after); err != nil {
		for _, id := range purged {
			b.forget(id)
		}
		return 0, writeErr("purge finished", err)
	}
	return len(purged), nil
}

// Requeue implements asyncreq.Requeuer: the Update and the queue entry are
// written in one transaction, as Accept writes a new request, and the
// record is stored with Enqueued set. A canceled record may still have the
// entry it had while pending, if no Worker dequeued it before the cancel:
// Requeue keeps such an entry, not held by a lease, rather than add a
// second, so that the request does not run twice. Looking for it reads the
// queue's entries (no index has their ids, so that an enqueue stays an
// append), which Requeue does for a canceled record only.
func (b *Backend) Requeue(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	if fn == nil {
		return nil, fmt.Errorf("sqlite: requeue function is nil")
	}
	var canceled bool
	rec, err := b.update(ctx, id, func(r *asyncreq.Record) error {
		canceled = r.State == asyncreq.StateCanceled
		if err := fn(r); err != nil {
			return err
		}
		r.Enqueued = true
		return nil
	}, func(t *wtx, _ *asyncreq.Record) error {
		now := b.now().UnixNano()
		if canceled {
			var waiting bool
			if err := t.queryRow(b.sql.waitingEntry, b.queue, id, now).Scan(&waiting); err != nil {
				return err
			}
			if waiting {
				return nil
			}
		}
		_, err := t.exec(b.sql.enqueue, b.queue, id, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	b.wake.broadcast()
	return rec, nil
}

// updatedAtFunc is the SQL function asyncreq_updated_at(data), with which
// migration 0004 fills the updated_at column of the records stored before
// it from their JSON.
func updatedAtFunc(_ *msqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	var data []byte
	switch v := args[0].(type) {
	case string:
		data = []byte(v)
	case []byte:
		data = v
	default:
		return nil, fmt.Errorf("asyncreq_updated_at: data is %T, not JSON", v)
	}
	var rec struct {
		UpdatedAt time.Time `json:"updated_at"`
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("asyncreq_updated_at: %w", err)
	}
	return rec.UpdatedAt.UnixNano(), nil
}

func init() {
	msqlite.MustRegisterDeterministicScalarFunction("asyncreq_updated_at", 1, updatedAtFunc)
}
