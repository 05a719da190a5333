package nats

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/asyncreq/asyncreq"
	"github.com/nats-io/nats.go/jetstream"
)

// Key prefixes in the bucket (see the package documentation).
const (
	prefixRecord     = "r."
	prefixIdem       = "i."
	prefixUnenqueued = "u."
	prefixExpiry     = "x."
	prefixBlob       = "b."
	// keySync is the key a listing writes to know when a watch has caught
	// up with the stream leader (see eachRecord).
	keySync = "l.sync"
)

// The first byte of a value under "r.": a record or a tombstone.
const (
	kindRecord    = 'R'
	kindTombstone = 'T'
)

// maxCASRetries bounds the compare-and-set loops; each retry means another
// writer changed the key in between, so running out means heavy contention.
const maxCASRetries = 100

// validID reports whether id can be a key token: non-empty, at most 256
// bytes of letters, digits, '-', '_' and '='. Ids made by asyncreq.NewID
// always are.
func validID(id string) bool {
	if id == "" || len(id) > 256 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_' || c == '=') {
			return false
		}
	}
	return true
}

func idemKeyOf(owner, key string) string {
	h := sha256.New()
	h.Write([]byte(owner))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return prefixIdem + hex.EncodeToString(h.Sum(nil))
}

// idemValue is the value of an idempotency key.
type idemValue struct {
	ID        string    `json:"id"`
	BodyHash  string    `json:"body_hash,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// stored is a decoded "r." value: a record or a tombstone.
type stored struct {
	rec    *asyncreq.Record // nil for a tombstone
	body   *blobRef         // where rec.Body is kept, if not inline
	result *blobRef         // where rec.Result.Body is kept, if not inline
	until  time.Time        // tombstone end
	owner  *string          // the owner a tombstone keeps (nil: none kept)
	rev    uint64
}

// envelope is the JSON of a record value. A body larger than the inline
// limit is kept in chunks under "b." keys and referred to here, since a
// NATS message (and so a key's value) is limited to the server's
// max_payload.
type envelope struct {
	Rec    *asyncreq.Record `json:"r"`
	Body   *blobRef         `json:"b,omitempty"`
	Result *blobRef         `json:"rb,omitempty"`
}

// blobRef names the chunks of one body: "b.<id>.<tag>.<i>" for i in
// 0..Chunks-1. Blobs are written once, under a new tag, and never changed.
type blobRef struct {
	Tag    string `json:"tag"`
	Chunks int    `json:"chunks"`
	Size   int    `json:"size"`
}

func (r *blobRef) key(id string, i int) string {
	return prefixBlob + id + "." + r.Tag + "." + strconv.Itoa(i)
}

// encodeTombstone returns the value of a tombstone of a record of owner:
// its end, a newline and the owner. (A tombstone written before they kept
// the owner ends after the time.)
func encodeTombstone(until time.Time, owner string) []byte {
	v := append([]byte{kindTombstone}, until.UTC().Format(time.RFC3339Nano)...)
	return append(append(v, '\n'), owner...)
}

func decode(e jetstream.KeyValueEntry) (*stored, error) {
	v := e.Value()
	if len(v) == 0 {
		return nil, fmt.Errorf("nats: key %s: empty value", e.Key())
	}
	s := &stored{rev: e.Revision()}
	switch v[0] {
	case kindRecord:
		var env envelope
		if err := json.Unmarshal(v[1:], &env); err != nil || env.Rec == nil {
			return nil, fmt.Errorf("nats: key %s: decode record: %w", e.Key(), err)
		}
		s.rec, s.body, s.result = env.Rec, env.Body, env.Result
	case kindTombstone:
		until, owner, hasOwner := strings.Cut(string(v[1:]), "\n")
		t, err := time.Parse(time.RFC3339Nano, until)
		if err != nil {
			return nil, fmt.Errorf("nats: key %s: decode tombstone: %w", e.Key(), err)
		}
		s.until = t
		if hasOwner {
			s.owner = &owner
		}
	default:
		return nil, fmt.Errorf("nats: key %s: unknown value kind %q", e.Key(), v[0])
	}
	return s, nil
}

// encode returns the value that stores rec, writing its large bodies as
// blobs first. A body equal to the one old keeps in a blob reuses that
// blob. It returns the envelope written, whose refs the caller compares
// with old's to find blobs to delete.
func (b *Backend) encode(ctx context.Context, rec *asyncreq.Record, old *stored) ([]byte, *envelope, error) {
	env := &envelope{Rec: rec.Clone()}
	var oldBody, oldResult []byte
	if old != nil && old.rec != nil {
		oldBody = old.rec.Body
		if old.rec.Result != nil {
			oldResult = old.rec.Result.Body
		}
	}
	place := func(data, oldData []byte, oldRef *blobRef) (*blobRef, error) {
		if oldRef != nil && bytes.Equal(data, oldData) {
			return oldRef, nil
		}
		if len(data) <= b.inlineMax {
			return nil, nil
		}
		return b.writeBlob(ctx, rec.ID, data)
	}
	var err error
	var oldBodyRef, oldResultRef *blobRef
	if old != nil {
		oldBodyRef, oldResultRef = old.body, old.result
	}
	if env.Body, err = place(rec.Body, oldBody, oldBodyRef); err != nil {
		return nil, nil, err
	}
	if env.Body != nil {
		env.Rec.Body = nil
	}
	if rec.Result != nil {
		if env.Result, err = place(rec.Result.Body, oldResult, oldResultRef); err != nil {
			b.dropNewBlobs(ctx, rec.ID, env, old)
			return nil, nil, err
		}
		if env.Result != nil {
			env.Rec.Result.Body = nil
		}
	}
	data, err := json.Marshal(env)
	if err != nil {
		b.dropNewBlobs(ctx, rec.ID, env, old)
		return nil, nil, fmt.Errorf("nats: encode record %s: %w", rec.ID, err)
	}
	return append([]byte{kindRecord}, data...), env, nil
}

// writeBlob stores data in chunks under a new tag.
func (b *Backend) writeBlob(ctx context.Context, id string, data []byte) (*blobRef, error) {
	var tag [8]byte
	_, _ = rand.Read(tag[:])
	ref := &blobRef{Tag: hex.EncodeToString(tag[:]), Size: len(data)}
	ref.Chunks = (len(data) + b.chunkSize - 1) / b.chunkSize
	for i := 0; i < ref.Chunks; i++ {
		chunk := data[i*b.chunkSize : min((i+1)*b.chunkSize, len(data))]
		if _, err := b.kv.Put(ctx, ref.key(id, i), chunk); err != nil {
			b.deleteBlob(ctx, id, &blobRef{Tag: ref.Tag, Chunks: i})
			return nil, ctxErr(ctx, fmt.Errorf("nats: write body of %s: %w", id, err))
		}
	}
	return ref, nil
}

// readBlob reads the body ref names.
func (b *Backend) readBlob(ctx context.Context, id string, ref *blobRef) ([]byte, error) {
	data := make([]byte, 0, ref.Size)
	for i := 0; i < ref.Chunks; i++ {
		e, err := b.blobs.Get(ctx, ref.key(id, i))
		if err != nil {
			return nil, ctxErr(ctx, fmt.Errorf("nats: read body of %s: %w", id, err)) // ErrKeyNotFound: see loadRecord
		}
		data = append(data, e.Value()...)
	}
	if len(data) != ref.Size {
		return nil, fmt.Errorf("nats: read body of %s: %d bytes, want %d", id, len(data), ref.Size)
	}
	return data, nil
}

// deleteBlob removes the chunks of ref, best effort: the bucket TTL
// removes what is left.
func (b *Backend) deleteBlob(ctx context.Context, id string, ref *blobRef) {
	if ref == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	for i := 0; i < ref.Chunks; i++ {
		_ = b.kv.Delete(ctx, ref.key(id, i))
	}
}

// dropNewBlobs deletes the blobs of env that old does not refer to: those
// written for a value that was then not stored.
func (b *Backend) dropNewBlobs(ctx context.Context, id string, env *envelope, old *stored) {
	for _, ref := range []*blobRef{env.Body, env.Result} {
		if ref != nil && (old == nil || (ref != old.body && ref != old.result)) {
			b.deleteBlob(ctx, id, ref)
		}
	}
}

// dropOldBlobs deletes the blobs of old that env no longer refers to.
func (b *Backend) dropOldBlobs(ctx context.Context, id string, old *stored, env *envelope) {
	for _, ref := range []*blobRef{old.body, old.result} {
		if ref != nil && (env == nil || (ref != env.Body && ref != env.Result)) {
			b.deleteBlob(ctx, id, ref)
		}
	}
}

// fill reads the bodies of s.rec that are kept as blobs.
func (b *Backend) fill(ctx context.Context, id string, s *stored) error {
	if s.body != nil {
		data, err := b.readBlob(ctx, id, s.body)
		if err != nil {
			return err
		}
		s.rec.Body = data
	}
	if s.result != nil && s.rec.Result != nil {
		data, err := b.readBlob(ctx, id, s.result)
		if err != nil {
			return err
		}
		s.rec.Result.Body = data
	}
	return nil
}

// load reads the "r." key of id. It returns ErrNotFound for a missing key
// and an invalid id; a tombstone comes back as such.
func (b *Backend) load(ctx context.Context, id string) (*stored, error) {
	if !validID(id) {
		return nil, asyncreq.ErrNotFound
	}
	e, err := b.kv.Get(ctx, prefixRecord+id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil, asyncreq.ErrNotFound
		}
		return nil, ctxErr(ctx, fmt.Errorf("nats: get %s: %w", id, err))
	}
	return decode(e)
}

// loadRecord is load with tombstones mapped to ErrGone (while they last) or
// ErrNotFound, and with the bodies kept as blobs read if withBodies is true.
func (b *Backend) loadRecord(ctx context.Context, id string, withBodies bool) (*stored, error) {
	for range maxCASRetries {
		s, err := b.loadOnce(ctx, id, withBodies)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			// A blob went between reading the record and reading the
			// blob: the record was changed or deleted meanwhile.
			continue
		}
		return s, err
	}
	return nil, fmt.Errorf("nats: get %s: a body chunk stays missing", id)
}

func (b *Backend) loadOnce(ctx context.Context, id string, withBodies bool) (*stored, error) {
	s, err := b.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if s.rec == nil {
		switch {
		case !b.opts.Now().Before(s.until):
			return nil, asyncreq.ErrNotFound
		case s.owner == nil:
			return nil, asyncreq.ErrGone
		}
		return nil, &asyncreq.GoneError{Owner: *s.owner}
	}
	if withBodies {
		if err := b.fill(ctx, id, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Create implements asyncreq.Store. See the package documentation for the
// order of its writes and why a crash between them is harmless.
func (b *Backend) Create(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, errors.New("nats: create: nil record")
	}
	if !validID(rec.ID) {
		return nil, fmt.Errorf("nats: create: invalid record id %q", rec.ID)
	}
	var idemRev uint64
	if rec.IdempotencyKey != "" {
		dup, rev, err := b.claimIdem(ctx, rec)
		if err != nil {
			return dup, err
		}
		idemRev = rev
	}
	var env *envelope
	// undo removes what this Create wrote before it failed; it runs without
	// the caller's cancellation so that a canceled request leaves nothing.
	undo := func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if idemRev != 0 {
			_ = b.kv.Delete(uctx, idemKeyOf(rec.Owner, rec.IdempotencyKey), jetstream.LastRevision(idemRev))
		}
		if !rec.Enqueued {
			_ = b.kv.Delete(uctx, prefixUnenqueued+rec.ID)
		}
		if rec.State.Final() {
			_ = b.kv.Delete(uctx, prefixExpiry+rec.ID)
		}
		if env != nil {
			b.dropNewBlobs(uctx, rec.ID, env, nil)
		}
	}
	if !rec.Enqueued && !rec.State.Final() {
		if _, err := b.kv.Put(ctx, prefixUnenqueued+rec.ID, nil); err != nil {
			undo()
			return nil, ctxErr(ctx, fmt.Errorf("nats: create %s: marker: %w", rec.ID, err))
		}
	}
	if rec.State.Final() {
		if _, err := b.kv.Put(ctx, prefixExpiry+rec.ID, dueValue(rec.ExpiresAt)); err != nil {
			undo()
			return nil, ctxErr(ctx, fmt.Errorf("nats: create %s: marker: %w", rec.ID, err))
		}
	}
	data, env, err := b.encode(ctx, rec, nil)
	if err != nil {
		undo()
		return nil, err
	}
	if _, err := b.kv.Create(ctx, prefixRecord+rec.ID, data); err != nil {
		undo()
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("nats: create %s: a record with this id exists", rec.ID)
		}
		return nil, ctxErr(ctx, fmt.Errorf("nats: create %s: %w", rec.ID, err))
	}
	return nil, nil
}

// claimIdem creates the idempotency key of rec. It returns the revision of
// the key it wrote, or the existing record and ErrDuplicate.
func (b *Backend) claimIdem(ctx context.Context, rec *asyncreq.Record) (*asyncreq.Record, uint64, error) {
	key := idemKeyOf(rec.Owner, rec.IdempotencyKey)
	val, err := json.Marshal(idemValue{ID: rec.ID, BodyHash: rec.BodyHash, CreatedAt: rec.CreatedAt})
	if err != nil {
		return nil, 0, fmt.Errorf("nats: encode idempotency key: %w", err)
	}
	for range maxCASRetries {
		rev, err := b.kv.Create(ctx, key, val)
		if err == nil {
			return nil, rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, 0, ctxErr(ctx, fmt.Errorf("nats: create %s: idempotency key: %w", rec.ID, err))
		}
		e, err := b.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // removed in between: try again
		}
		if err != nil {
			return nil, 0, ctxErr(ctx, fmt.Errorf("nats: create %s: idempotency key: %w", rec.ID, err))
		}
		var iv idemValue
		if err := json.Unmarshal(e.Value(), &iv); err != nil {
			return nil, 0, fmt.Errorf("nats: create %s: decode idempotency key: %w", rec.ID, err)
		}
		s, err := b.load(ctx, iv.ID)
		if err != nil && !errors.Is(err, asyncreq.ErrNotFound) {
			return nil, 0, err
		}
		if s != nil && s.rec != nil && s.rec.Owner == rec.Owner && s.rec.IdempotencyKey == rec.IdempotencyKey {
			if err := b.fill(ctx, iv.ID, s); err != nil {
				if errors.Is(err, jetstream.ErrKeyNotFound) {
					continue // the record changed meanwhile
				}
				return nil, 0, err
			}
			return s.rec, 0, asyncreq.ErrDuplicate
		}
		// The key points at no live record: either its Create is still
		// running (it writes the key before the record), or that Create
		// crashed or failed to undo, or the record went and removing the key
		// failed.
		if s == nil && time.Since(e.Created()) < b.createGrace {
			return &asyncreq.Record{
				ID:             iv.ID,
				Owner:          rec.Owner,
				IdempotencyKey: rec.IdempotencyKey,
				BodyHash:       iv.BodyHash,
				State:          asyncreq.StatePending,
				CreatedAt:      iv.CreatedAt,
				UpdatedAt:      iv.CreatedAt,
			}, 0, asyncreq.ErrDuplicate
		}
		rev, err = b.kv.Update(ctx, key, val, e.Revision())
		if err == nil {
			return nil, rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, 0, ctxErr(ctx, fmt.Errorf("nats: create %s: idempotency key: %w", rec.ID, err))
		}
	}
	return nil, 0, fmt.Errorf("nats: create %s: idempotency key: too much contention", rec.ID)
}

// Get implements asyncreq.Store.
func (b *Backend) Get(ctx context.Context, id string) (*asyncreq.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	s, err := b.loadRecord(ctx, id, true)
	if err != nil {
		return nil, err
	}
	return s.rec, nil
}

// Update implements asyncreq.Store as a compare-and-set on the record's
// revision: fn runs again after a conflicting write.
func (b *Backend) Update(ctx context.Context, id string, fn func(*asyncreq.Record) error) (*asyncreq.Record, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	for range maxCASRetries {
		s, err := b.loadRecord(ctx, id, true)
		if err != nil {
			return nil, err
		}
		old := s.rec
		c := old.Clone()
		if err := fn(c); err != nil {
			return nil, err
		}
		if c.ID != old.ID || c.Owner != old.Owner || c.IdempotencyKey != old.IdempotencyKey {
			return nil, errors.New("nats: update changed the record's identity")
		}
		// The markers go first, so that no final record lacks its expiry
		// marker and no unenqueued one (a failed request put back to
		// pending by RetryRequest) its "u." marker; a marker left by a
		// write that then lost the race is harmless (Purge skips records
		// that are not final, ListUnenqueued drops markers of records that
		// need none).
		if c.State.Final() && !old.State.Final() {
			if _, err := b.kv.Put(ctx, prefixExpiry+id, dueValue(c.ExpiresAt)); err != nil {
				return nil, ctxErr(ctx, fmt.Errorf("nats: update %s: marker: %w", id, err))
			}
		}
		if !c.Enqueued && !c.State.Final() && (old.Enqueued || old.State.Final()) {
			if _, err := b.kv.Put(ctx, prefixUnenqueued+id, nil); err != nil {
				return nil, ctxErr(ctx, fmt.Errorf("nats: update %s: marker: %w", id, err))
			}
		}
		data, env, err := b.encode(ctx, c, s)
		if err != nil {
			return nil, err
		}
		_, err = b.kv.Update(ctx, prefixRecord+id, data, s.rev)
		if err != nil {
			b.dropNewBlobs(ctx, id, env, s)
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			}
			return nil, ctxErr(ctx, fmt.Errorf("nats: update %s: %w", id, err))
		}
		b.dropOldBlobs(ctx, id, s, env)
		if !old.Enqueued && !old.State.Final() && (c.Enqueued || c.State.Final()) {
			// Best effort: ListUnenqueued drops a marker whose record no
			// longer needs it.
			_ = b.kv.Delete(ctx, prefixUnenqueued+id)
		}
		return c, nil
	}
	return nil, fmt.Errorf("nats: update %s: too much contention", id)
}

// Delete implements asyncreq.Store.
func (b *Backend) Delete(ctx context.Context, id string, tombstone bool) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	for range maxCASRetries {
		s, err := b.loadRecord(ctx, id, false)
		if err != nil {
			return err
		}
		err = b.remove(ctx, s, tombstone)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return ctxErr(ctx, fmt.Errorf("nats: delete %s: %w", id, err))
		}
		return nil
	}
	return fmt.Errorf("nats: delete %s: too much contention", id)
}

// remove deletes the record s holds, at its revision, keeping a tombstone
// for its TombstoneTTL when tombstone is true, and then drops its
// idempotency key, markers and blobs. It returns
// jetstream.ErrKeyRevisionMismatch when the record changed since s was
// read.
func (b *Backend) remove(ctx context.Context, s *stored, tombstone bool) error {
	rec := s.rec
	keepTomb := tombstone && rec.TombstoneTTL > 0
	var err error
	if keepTomb {
		until := b.opts.Now().Add(rec.TombstoneTTL)
		if _, err := b.kv.Put(ctx, prefixExpiry+rec.ID, dueValue(until)); err != nil {
			return fmt.Errorf("marker: %w", err)
		}
		_, err = b.kv.Update(ctx, prefixRecord+rec.ID, encodeTombstone(until, rec.Owner), s.rev)
	} else {
		err = b.kv.Delete(ctx, prefixRecord+rec.ID, jetstream.LastRevision(s.rev))
	}
	if err != nil {
		return err
	}
	b.dropIndexes(ctx, s, !keepTomb)
	return nil
}

// dropIndexes removes the idempotency key and markers of a record that was
// just removed or replaced by a tombstone, and its blobs. Failures are left to the
// backstops: a stale idempotency key is replaced by the next Create with
// that key, stale markers are dropped by ListUnenqueued and Purge, and the
// bucket TTL removes anything left.
func (b *Backend) dropIndexes(ctx context.Context, s *stored, expiryMarker bool) {
	ctx = context.WithoutCancel(ctx)
	rec := s.rec
	b.dropOldBlobs(ctx, rec.ID, s, nil)
	if rec.IdempotencyKey != "" {
		key := idemKeyOf(rec.Owner, rec.IdempotencyKey)
		if e, err := b.kv.Get(ctx, key); err == nil {
			var iv idemValue
			if json.Unmarshal(e.Value(), &iv) == nil && iv.ID == rec.ID {
				_ = b.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
			}
		}
	}
	if !rec.Enqueued && !rec.State.Final() {
		_ = b.kv.Delete(ctx, prefixUnenqueued+rec.ID)
	}
	if expiryMarker && rec.State.Final() {
		_ = b.kv.Delete(ctx, prefixExpiry+rec.ID)
	}
}

// listKeys returns up to limit ids that have keys under prefix (0 for no
// limit).
func (b *Backend) listKeys(ctx context.Context, prefix string, limit int) ([]string, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lister, err := b.kv.ListKeysFiltered(lctx, prefix+">")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, ctxErr(ctx, fmt.Errorf("nats: list %s keys: %w", prefix, err))
	}
	defer func() { _ = lister.Stop() }()
	var ids []string
	seen := make(map[string]struct{})
	for key := range lister.Keys() {
		id := key[len(prefix):]
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		ids = append(ids, id)
		if limit > 0 && len(ids) >= limit {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return ids, nil
}

// dueValue is the value of an expiry marker: when Purge next has work for
// the record (its ExpiresAt, or its tombstone's end).
func dueValue(t time.Time) []byte {
	if t.IsZero() {
		return nil
	}
	return []byte(t.UTC().Format(time.RFC3339Nano))
}

// setDue rewrites the expiry marker of id with the right due time, best
// effort: a marker that is off only makes Purge look at its record early.
func (b *Backend) setDue(ctx context.Context, id string, due time.Time) {
	_, _ = b.kv.Put(context.WithoutCancel(ctx), prefixExpiry+id, dueValue(due))
}

// listDue reads every expiry marker in one pass (a key-value watch of
// their current values) and returns the ids of those due by now. A marker
// without a readable time counts as due.
func (b *Backend) listDue(ctx context.Context, now time.Time) ([]string, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := b.kv.Watch(wctx, prefixExpiry+">", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("nats: list expiry markers: %w", err))
	}
	defer func() { _ = w.Stop() }()
	var ids []string
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				// All current values are in (or the watch ended).
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				return ids, nil
			}
			due, err := time.Parse(time.RFC3339Nano, string(e.Value()))
			if err != nil || !due.After(now) {
				ids = append(ids, strings.TrimPrefix(e.Key(), prefixExpiry))
			}
		}
	}
}

// Purge implements asyncreq.Store: see the package documentation.
func (b *Backend) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	if err := b.check(ctx); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	ids, err := b.listDue(ctx, now)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if n >= limit {
			break
		}
		done, err := b.purgeOne(ctx, id, now)
		if err != nil {
			return n, err
		}
		if done {
			n++
		}
	}
	return n, nil
}

// purgeOne handles the expiry marker of id: it purges the record if it
// expired (reporting true), removes a tombstone that ran out, and drops a
// marker that has nothing to mark.
func (b *Backend) purgeOne(ctx context.Context, id string, now time.Time) (bool, error) {
	for range maxCASRetries {
		s, err := b.load(ctx, id)
		if errors.Is(err, asyncreq.ErrNotFound) {
			_ = b.kv.Delete(ctx, prefixExpiry+id)
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if s.rec == nil {
			if s.until.After(now) {
				b.setDue(ctx, id, s.until)
				return false, nil
			}
			err := b.kv.Delete(ctx, prefixRecord+id, jetstream.LastRevision(s.rev))
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			}
			if err != nil {
				return false, ctxErr(ctx, fmt.Errorf("nats: purge %s: %w", id, err))
			}
			_ = b.kv.Delete(ctx, prefixExpiry+id)
			return false, nil
		}
		rec := s.rec
		if !rec.State.Final() || rec.ExpiresAt.IsZero() {
			return false, nil // a marker written by an Update that lost its race
		}
		if rec.ExpiresAt.After(now) {
			b.setDue(ctx, id, rec.ExpiresAt)
			return false, nil
		}
		keepTomb := rec.TombstoneTTL > 0 && rec.ExpiresAt.Add(rec.TombstoneTTL).After(now)
		if keepTomb {
			_, err = b.kv.Update(ctx, prefixRecord+id, encodeTombstone(rec.ExpiresAt.Add(rec.TombstoneTTL), rec.Owner), s.rev)
		} else {
			err = b.kv.Delete(ctx, prefixRecord+id, jetstream.LastRevision(s.rev))
		}
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return false, ctxErr(ctx, fmt.Errorf("nats: purge %s: %w", id, err))
		}
		b.dropIndexes(ctx, s, !keepTomb)
		if keepTomb {
			b.setDue(ctx, id, rec.ExpiresAt.Add(rec.TombstoneTTL))
		}
		return true, nil
	}
	return false, fmt.Errorf("nats: purge %s: too much contention", id)
}

// ListUnenqueued implements asyncreq.UnenqueuedLister through the "u."
// markers. It drops markers whose record is enqueued, final or gone.
func (b *Backend) ListUnenqueued(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	ids, err := b.listKeys(ctx, prefixUnenqueued, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		if len(out) >= limit {
			break
		}
		s, err := b.load(ctx, id)
		if err != nil && !errors.Is(err, asyncreq.ErrNotFound) {
			return nil, err
		}
		if s != nil && s.rec != nil && !s.rec.Enqueued && !s.rec.State.Final() {
			if s.rec.CreatedAt.Before(before) {
				out = append(out, id)
			}
			continue
		}
		// Nothing to enqueue. A marker without a record may belong to a
		// Create still running (it writes the marker first), so only an old
		// one is dropped.
		if s == nil {
			e, err := b.kv.Get(ctx, prefixUnenqueued+id)
			if err != nil || !e.Created().Before(before) {
				continue
			}
			_ = b.kv.Delete(ctx, prefixUnenqueued+id, jetstream.LastRevision(e.Revision()))
			continue
		}
		_ = b.kv.Delete(ctx, prefixUnenqueued+id)
	}
	return out, nil
}

// Watch implements asyncreq.Watcher with a key-value watch on the record's
// key. Each Watch holds one server-side watch until the record changes, ctx
// ends or the Backend is closed; the channel is closed in all three cases.
func (b *Backend) Watch(ctx context.Context, id string) (<-chan struct{}, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	ch := make(chan struct{})
	if !validID(id) {
		// No record can have this id; the channel closes when ctx ends.
		if !b.track() {
			return nil, asyncreq.ErrClosed
		}
		go func() {
			defer b.wg.Done()
			defer close(ch)
			select {
			case <-ctx.Done():
			case <-b.done:
			}
		}()
		return ch, nil
	}
	wctx, cancel := context.WithCancel(ctx)
	w, err := b.kv.Watch(wctx, prefixRecord+id, jetstream.UpdatesOnly(), jetstream.MetaOnly())
	if err != nil {
		cancel()
		return nil, ctxErr(ctx, fmt.Errorf("nats: watch %s: %w", id, err))
	}
	if !b.track() {
		cancel()
		_ = w.Stop()
		return nil, asyncreq.ErrClosed
	}
	go func() {
		defer b.wg.Done()
		defer close(ch)
		defer cancel()
		defer func() { _ = w.Stop() }()
		select {
		case <-w.Updates():
		case <-wctx.Done():
		case <-b.done:
		}
	}()
	return ch, nil
}

// track registers a goroutine that Close waits for. It reports false, and
// registers nothing, if b is closed.
func (b *Backend) track() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	return true
}
