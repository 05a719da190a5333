package sqlite

import (
	"hash/fnv"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncreq/asyncreq"
)

// TestIDKeysAscendWithTime: the keys of ids made one after another ascend,
// so that new records' index entries go to the last page of
// records_id_key, not to a page at random.
func TestIDKeysAscendWithTime(t *testing.T) {
	prev := idKey(asyncreq.NewID())
	for i := range 20 {
		time.Sleep(2 * time.Millisecond)
		k := idKey(asyncreq.NewID())
		require.Greater(t, k, prev, "the key of id %d, made 2ms after the one before", i+1)
		prev = k
	}
	// The same id, the same key.
	id := asyncreq.NewID()
	require.Equal(t, idKey(id), idKey(id))
	// An id without a time is keyed by its hash.
	old := strings.Repeat("a", 26)
	require.Equal(t, int64(fnvSum(old)), idKey(old))
}

func fnvSum(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// TestMigrateKeysStoredRecords: a record stored before migration 0003
// (no key) or before 0006 (keyed by the hash of its id alone) is found by
// id after the migrations, its key now idKey's, and its id stays taken.
func TestMigrateKeysStoredRecords(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version int
		insert  string
	}{
		{"no key", 1, `INSERT INTO asyncreq_records
			(queue, id, owner, idem_key, state, enqueued, created_at, expires_at, tombstone_ttl, data, body, result_body)
			VALUES (?1, ?2, '', NULL, 'succeeded', 1, 0, ?3, 0, ?4, ?5, ?6)`},
		{"keyed by the hash", 5, `INSERT INTO asyncreq_records
			(queue, id, owner, idem_key, state, enqueued, created_at, expires_at, tombstone_ttl, data, body, result_body, id_key, updated_at)
			VALUES (?1, ?2, '', NULL, 'succeeded', 1, 0, ?3, 0, ?4, ?5, ?6, ?7, 0)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "old.db")
			rec := expiredRecord(time.Now())
			hashed := int64(fnvSum(rec.ID))
			require.NotEqual(t, hashed, idKey(rec.ID), "an id made by NewID is keyed by its time")
			databaseAt(t, path, tc.version, func(tx *wtx) error {
				enc, err := encodeRecord(rec)
				if err != nil {
					return err
				}
				args := []any{defaultQueue, rec.ID, rec.ExpiresAt.UnixNano(), enc.data, enc.body, enc.resultBody}
				if tc.version >= 3 {
					args = append(args, hashed)
				}
				_, err = tx.exec(tc.insert, args...)
				return err
			})

			b, err := Open(ctx, path, nil)
			require.NoError(t, err)
			defer func() { require.NoError(t, b.Close()) }()
			got, err := b.Get(ctx, rec.ID)
			require.NoError(t, err)
			require.Equal(t, rec.Body, got.Body)
			_, err = b.Update(ctx, rec.ID, func(r *asyncreq.Record) error { r.Attempts++; return nil })
			require.NoError(t, err)
			_, err = b.Create(ctx, rec)
			require.ErrorIs(t, err, errIDExists, "its id stays taken")
		})
	}
}
