package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/asyncreq/asyncreq/reccache"
)

// encoded is a record as it is stored: its fields as JSON, and its two
// bodies apart, as BLOBs (NULL for a nil body).
type encoded struct {
	data       []byte
	body       []byte
	resultBody []byte
}

// encodeRecord turns rec into its stored form.
func encodeRecord(rec *asyncreq.Record) (encoded, error) {
	var resultBody []byte
	if rec.Result != nil {
		resultBody = rec.Result.Body
	}
	data, err := rec.WithoutBodies().MarshalBinary()
	if err != nil {
		return encoded{}, fmt.Errorf("sqlite: encode record %s: %w", rec.ID, err)
	}
	return encoded{data: data, body: rec.Body, resultBody: resultBody}, nil
}

// decodeRecord reverses encodeRecord. The record takes the slices it is
// given.
func decodeRecord(e encoded) (*asyncreq.Record, error) {
	rec := new(asyncreq.Record)
	if err := rec.UnmarshalBinary(e.data); err != nil {
		return nil, fmt.Errorf("sqlite: decode record: %w", err)
	}
	rec.Body = e.body
	if rec.Result != nil {
		rec.Result.Body = e.resultBody
	}
	return rec, nil
}

// blob returns what to bind for b: NULL for nil, so that a nil body reads
// back as nil and an empty one as empty.
func blob(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// scanBlob copies a BLOB column into a slice of its own, keeping NULL as nil
// and an empty BLOB as empty.
type scanBlob struct{ b *[]byte }

func (s scanBlob) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*s.b = nil
	case []byte:
		*s.b = append(make([]byte, 0, len(v)), v...)
	case string:
		*s.b = append(make([]byte, 0, len(v)), v...)
	default:
		return fmt.Errorf("sqlite: unexpected %T in a BLOB column", v)
	}
	return nil
}

// nullTime is a time as stored: Unix nanoseconds, NULL for the zero time.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// recordKey names a record in the engine's watch set.
func (b *Backend) recordKey(id string) string {
	return b.prefix + "\x00" + b.queue + "\x00" + id
}

// readErr maps an error of a read on the read pool.
func readErr(ctx context.Context, what string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("sqlite: %s: %w", what, err)
}

// writeErr maps an error of a write done by the writer. Errors the write's
// logic chose (sentinels, an update function's error) pass unchanged.
func writeErr(what string, err error) error {
	if err == nil || !isDBError(err) {
		return err
	}
	return fmt.Errorf("sqlite: %s: %w", what, err)
}

func checkRecord(rec *asyncreq.Record) error {
	if rec == nil {
		return errors.New("sqlite: record is nil")
	}
	if rec.ID == "" {
		return errors.New("sqlite: record has no ID")
	}
	return nil
}

// Create implements asyncreq.Store.
func (b *Backend) Create(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	return b.insert(ctx, rec, false)
}

// Accept implements asyncreq.Accepter: it records rec with Enqueued set and
// enqueues its id, due now, in one transaction. It returns once that
// transaction is committed (see Options.Synchronous for how durable that
// is). A record with the same Owner and IdempotencyKey makes it store
// nothing and return a copy of that record with asyncreq.ErrDuplicate.
func (b *Backend) Accept(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	return b.insert(ctx, rec, true)
}

func (b *Backend) insert(ctx context.Context, rec *asyncreq.Record, enqueue bool) (*asyncreq.Record, error) {
	if err := checkRecord(rec); err != nil {
		return nil, err
	}
	if err := b.enter(ctx); err != nil {
		return nil, err
	}
	defer b.exit()
	if enqueue && !rec.Enqueued {
		c := *rec
		c.Enqueued = true
		rec = &c
	}
	enc, err := encodeRecord(rec)
	if err != nil {
		return nil, err
	}
	var dup *asyncreq.Record
	var mark *reccache.PollMark
	insert := func(t *wtx) error {
		mark = b.beginWrite(rec.ID)
		if rec.IdempotencyKey != "" {
			var e encoded
			err := t.queryRow(b.sql.getByIdemKey, b.queue, rec.Owner, rec.IdempotencyKey).
				Scan(&e.data, scanBlob{&e.body}, scanBlob{&e.resultBody})
			switch {
			case err == nil:
				if dup, err = decodeRecord(e); err != nil {
					return err
				}
				return asyncreq.ErrDuplicate
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		// No index makes the id unique (see idKey): look first.
		var exists bool
		if err := t.queryRow(b.sql.recordExists, b.queue, rec.ID, idKey(rec.ID)).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return errIDExists
		}
		if _, err := t.exec(b.sql.insertRecord, b.queue, rec.ID, rec.Owner, nullString(rec.IdempotencyKey),
			string(rec.State), boolInt(rec.Enqueued), rec.CreatedAt.UnixNano(), nullTime(rec.ExpiresAt),
			int64(rec.TombstoneTTL), enc.data, blob(enc.body), blob(enc.resultBody), idKey(rec.ID),
			rec.UpdatedAt.UnixNano()); err != nil {
			return err
		}
		t.count(b.prefix, b.queue, string(rec.State), 1)
		if enqueue {
			if _, err := t.exec(b.sql.enqueue, b.queue, rec.ID, b.now().UnixNano()); err != nil {
				return err
			}
		}
		return nil
	}
	after := func() {
		b.wrote(rec.ID, mark, rec)
		if enqueue {
			b.wake.broadcast()
		}
	}
	if err := b.eng.do(ctx, insert, after); err != nil {
		b.forget(rec.ID)
		if errors.Is(err, asyncreq.ErrDuplicate) {
			return dup, asyncreq.ErrDuplicate
		}
		return nil, writeErr("insert record "+rec.ID, err)
	}
	return nil, nil
}

// Get implements asyncreq.Store.
func (b *Backend) Get(ctx context.Context, id string) (*asyncreq.Record, error) {
	if err := b.enter(ctx); err != nil {
		return nil, err
	}
	defer b.exit()
	now := time.Now()
	if rec, ok := b.cached(ctx, id, now); ok {
		return rec, nil
	}
	mark := b.polls.Begin(id, now)
	rec, err := b.read(ctx, id)
	switch {
	case mark == nil: // the cache is off
	case err != nil:
		b.polls.Changed(id)
	default:
		b.polls.Read(id, mark, rec.Clone())
	}
	return rec, err
}

// read reads the record of id from the file.
func (b *Backend) read(ctx context.Context, id string) (*asyncreq.Record, error) {
	st, err := b.eng.readStmt(ctx, b.sql.getRecord)
	if err != nil {
		return nil, readErr(ctx, "get", err)
	}
	b.eng.reads.Add(1)
	var e encoded
	err = st.QueryRowContext(ctx, b.queue, id, idKey(id)).Scan(&e.data, scanBlob{&e.body}, scanBlob{&e.resultBody})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, b.missing(ctx, id)
	}
	if err != nil {
		return nil, readErr(ctx, "get "+id, err)
	}
	return decodeRecord(e)
}

// missing tells ErrGone from ErrNotFound for an id that has no record, by
// its tombstone.
func (b *Backend) missing(ctx context.Context, id string) error {
	st, err := b.eng.readStmt(ctx, b.sql.getTombstone)
	if err != nil {
		return readErr(ctx, "get", err)
	}
	var until int64
	var owner sql.NullString
	err = st.QueryRowContext(ctx, b.queue, id).Scan(&until, &owner)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return readErr(ctx, "get "+id, err)
	}
	return b.tombstoneErr(err, until, owner)
}

// missingTx is missing inside a write.
func (b *Backend) missingTx(t *wtx, id string) error {
	var until int64
	var owner sql.NullString
	err := t.queryRow(b.sql.getTombstone, b.queue, id).Scan(&until, &owner)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	return b.tombstoneErr(err, until, owner)
}

// tombstoneErr is what a read of a tombstone (its error, end and owner)
// answers: a *asyncreq.GoneError while it lasts, ErrNotFound when there
// is none or it ran out. A tombstone written before tombstones kept their
// owner (NULL) is a plain ErrGone.
func (b *Backend) tombstoneErr(err error, until int64, owner sql.NullString) error {
	switch {
	case err != nil, until <= b.now().UnixNano():
		return asyncreq.ErrNotFound
	case !owner.Valid:
		return asyncreq.ErrGone
	}
	return &asyncreq.GoneError{Owner: owner.String}
}

// errChangedIdentity is returned by Update when fn changed a field that
// identifies the record. Nothing is stored.
var errChangedIdentity = errors.New("sqlite: update changed the record's ID, Owner or IdempotencyKey")

// Update implements asyncreq.Store. fn runs on the writer goroutine, inside
// the transaction, so no other write interleaves; it must be quick and must
// not call the Backend. A panic in fn is raised again in the caller of
// Update, and nothing is stored. (Reading and running fn beside the writer
// and storing optimistically measured slower on two cores: the extra read
// costs more than the writer time it saves.)
func (b *Backend) Update(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	return b.update(ctx, id, fn, nil)
}

// Complete implements asyncreq.Completer: Update and, when the record is
// final, Ack of l in the same transaction. A lease that no longer holds
// leaves its entry as it is.
func (b *Backend) Complete(ctx context.Context, l *asyncreq.Lease, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	h, err := handleOf(l)
	if err != nil {
		return nil, err
	}
	return b.update(ctx, l.ID, fn, func(t *wtx, rec *asyncreq.Record) error {
		if !rec.State.Final() {
			return nil
		}
		_, err := t.exec(b.sql.ack, b.queue, h.seq, h.token, b.now().UnixNano())
		return err
	})
}

// update runs an Update; then, in the same transaction, also when it is
// not nil, with the stored record.
func (b *Backend) update(ctx context.Context, id string, fn func(*asyncreq.Record) error,
	then func(*wtx, *asyncreq.Record) error) (*asyncreq.Record, error) {
	if fn == nil {
		return nil, errors.New("sqlite: update function is nil")
	}
	if err := b.enter(ctx); err != nil {
		return nil, err
	}
	defer b.exit()
	var out *asyncreq.Record
	var fnErr error
	var mark *reccache.PollMark
	update := func(t *wtx) error {
		var err error
		out, fnErr, err = b.updateTx(t, id, fn, then)
		// Noted after updateTx, which may take the record from the cache,
		// and before the commit.
		mark = b.beginWrite(id)
		return err
	}
	after := func() { b.wrote(id, mark, out) }
	if err := b.eng.do(ctx, update, after); err != nil {
		b.forget(id)
		if fnErr != nil && err == fnErr {
			return nil, err
		}
		return nil, writeErr("update "+id, err)
	}
	return out, nil
}

// updateTx is the update of the record id in the writer's transaction t:
// read, fn, write, then then. It returns the record stored, or fn's error
// as both fnErr and err (nothing is written then), or the error of a
// missing record or of the database.
func (b *Backend) updateTx(t *wtx, id string, fn func(*asyncreq.Record) error,
	then func(*wtx, *asyncreq.Record) error) (out *asyncreq.Record, fnErr, err error) {
	rec, origBody, err := b.stored(t, id)
	if err != nil {
		return nil, nil, err
	}
	owner, key, state := rec.Owner, rec.IdempotencyKey, rec.State
	if err := fn(rec); err != nil {
		return nil, err, err
	}
	if rec.ID != id || rec.Owner != owner || rec.IdempotencyKey != key {
		return nil, nil, errChangedIdentity
	}
	enc, err := encodeRecord(rec)
	if err != nil {
		return nil, nil, err
	}
	if bytes.Equal(origBody, rec.Body) && (origBody == nil) == (rec.Body == nil) {
		_, err = t.exec(b.sql.updateRecord, b.queue, id, string(rec.State), boolInt(rec.Enqueued),
			nullTime(rec.ExpiresAt), int64(rec.TombstoneTTL), enc.data, blob(enc.resultBody), idKey(id),
			rec.UpdatedAt.UnixNano())
	} else {
		_, err = t.exec(b.sql.updateRecordAll, b.queue, id, string(rec.State), boolInt(rec.Enqueued),
			nullTime(rec.ExpiresAt), int64(rec.TombstoneTTL), enc.data, blob(enc.resultBody), blob(enc.body), idKey(id),
			rec.UpdatedAt.UnixNano())
	}
	if err != nil {
		return nil, nil, err
	}
	if rec.State != state {
		t.count(b.prefix, b.queue, string(state), -1)
		t.count(b.prefix, b.queue, string(rec.State), 1)
	}
	if then != nil {
		if err := then(t, rec); err != nil {
			return nil, nil, err
		}
	}
	return rec, nil, nil
}

// stored returns the record of id as the writer's transaction t sees it,
// to change, and its request body as stored, not to change. The record is
// the one in this Backend's poll cache if nothing in flight may have
// changed it: every write of this process goes through the writer, which
// tells the caches of it once committed, and this transaction began with
// a check that no other process wrote since the last (see polls.go).
func (b *Backend) stored(t *wtx, id string) (*asyncreq.Record, []byte, error) {
	if b.eng.polls.has {
		if rec, ok := b.polls.Settled(id, time.Now()); ok {
			return rec.Clone(), rec.Body, nil
		}
	}
	b.eng.wreads.Add(1)
	var e encoded
	err := t.queryRow(b.sql.getRecord, b.queue, id, idKey(id)).Scan(&e.data, scanBlob{&e.body}, scanBlob{&e.resultBody})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, b.missingTx(t, id)
	}
	if err != nil {
		return nil, nil, err
	}
	rec, err := decodeRecord(e)
	if err != nil {
		return nil, nil, err
	}
	return rec, bytes.Clone(e.body), nil
}

// Delete implements asyncreq.Store. It leaves the request's queue entry, if
// any, alone: a worker that gets it finds no record and acknowledges it.
func (b *Backend) Delete(ctx context.Context, id string, tombstone bool) error {
	if err := b.enter(ctx); err != nil {
		return err
	}
	defer b.exit()
	del := func(t *wtx) error {
		var ttl int64
		var owner, state string
		err := t.queryRow(b.sql.deleteRecord, b.queue, id, idKey(id)).Scan(&ttl, &owner, &state)
		if errors.Is(err, sql.ErrNoRows) {
			return asyncreq.ErrNotFound
		}
		if err != nil {
			return err
		}
		t.count(b.prefix, b.queue, state, -1)
		if tombstone && ttl > 0 {
			if _, err := t.exec(b.sql.putTombstone, b.queue, id, b.now().UnixNano()+ttl, owner); err != nil {
				return err
			}
		}
		return nil
	}
	after := func() { b.changed(id) }
	err := b.eng.do(ctx, del, after)
	if err != nil {
		b.forget(id)
	}
	return writeErr("delete "+id, err)
}

// purgeChunk is the most records (and run-out tombstones) one transaction
// of a Purge deletes.
const purgeChunk = 64

// Purge implements asyncreq.Store. It deletes in transactions of at most
// purgeChunk records (and as many run-out tombstones) each, which the
// writer runs as background work: the writes of requests waiting for it
// mostly go first (see engine.doIdle), and never wait for more than one
// such transaction. So a purge of
// many expired records slows accepts down little, however large limit is.
func (b *Backend) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	if err := b.enter(ctx); err != nil {
		return 0, err
	}
	defer b.exit()
	total, tombs := 0, 0
	recordsLeft, tombsLeft := limit > 0, limit > 0
	for recordsLeft || tombsLeft {
		k, kt := 0, 0
		if recordsLeft {
			k = min(purgeChunk, limit-total)
		}
		if tombsLeft {
			kt = min(purgeChunk, limit-tombs)
		}
		n, t, err := b.purgeChunk(ctx, now.UnixNano(), k, kt)
		total += n
		tombs += t
		if err != nil {
			return total, err
		}
		recordsLeft = recordsLeft && n == k && total < limit
		tombsLeft = tombsLeft && t == kt && tombs < limit
	}
	return total, nil
}

// purgeChunk deletes, in one background transaction, up to k records
// expired at nowN, keeping their tombstones, and up to kt tombstones run
// out at nowN; it returns how many of each.
func (b *Backend) purgeChunk(ctx context.Context, nowN int64, k, kt int) (int, int, error) {
	var (
		purged []string
		tombs  int64
	)
	purge := func(t *wtx) error {
		purged, tombs = purged[:0], 0
		if k > 0 {
			if err := b.purgeRecords(t, nowN, k, &purged); err != nil {
				return err
			}
		}
		if kt == 0 {
			return nil
		}
		res, err := t.exec(b.sql.purgeTombstones, b.queue, nowN, kt)
		if err != nil {
			return err
		}
		tombs, err = res.RowsAffected()
		return err
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
		return 0, 0, writeErr("purge", err)
	}
	return len(purged), int(tombs), nil
}

// purgeRecords deletes up to k records expired at nowN, adds their ids to
// purged and keeps a tombstone (with its owner) of each whose tombstone has
// not run out.
func (b *Backend) purgeRecords(t *wtx, nowN int64, k int, purged *[]string) error {
	rows, err := t.query(b.sql.purgeRecords, b.queue, nowN, k)
	if err != nil {
		return err
	}
	type tomb struct {
		id, owner string
		until     int64
	}
	var tombs []tomb
	for rows.Next() {
		var (
			tb    tomb
			state string
		)
		if err := rows.Scan(&tb.id, &tb.until, &tb.owner, &state); err != nil {
			_ = rows.Close()
			return err
		}
		t.count(b.prefix, b.queue, state, -1)
		*purged = append(*purged, tb.id)
		if tb.until > nowN {
			tombs = append(tombs, tb)
		}
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, tb := range tombs {
		if _, err := t.exec(b.sql.putTombstone, b.queue, tb.id, tb.until, tb.owner); err != nil {
			return err
		}
	}
	return nil
}

// ListUnenqueued implements asyncreq.UnenqueuedLister. Records made by
// Accept are enqueued in the same transaction and never listed.
func (b *Backend) ListUnenqueued(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if err := b.enter(ctx); err != nil {
		return nil, err
	}
	defer b.exit()
	if limit <= 0 {
		return nil, nil
	}
	st, err := b.eng.readStmt(ctx, b.sql.listUnenqueued)
	if err != nil {
		return nil, readErr(ctx, "list unenqueued", err)
	}
	rows, err := st.QueryContext(ctx, b.queue, before.UnixNano(), limit)
	if err != nil {
		return nil, readErr(ctx, "list unenqueued", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, readErr(ctx, "list unenqueued", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, readErr(ctx, "list unenqueued", err)
	}
	return ids, nil
}

// Watch implements asyncreq.Watcher. It sees the changes made through any
// Backend on the same file in this process; changes made by other
// processes are not seen (Handlers and Workers read the record on their
// own schedule as well; see the package doc).
func (b *Backend) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	if err := b.enter(ctx); err != nil {
		return nil, err
	}
	defer b.exit()
	ws := &b.eng.watches
	w := ws.add(b.recordKey(id), b)
	ws.setStop(w, context.AfterFunc(ctx, func() { ws.release(w) }))
	return w.ch, nil
}
