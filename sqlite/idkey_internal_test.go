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

// TestMigrateKeysRecordsByTime: a record stored at schema version 5, keyed
// by the hash of its id alone, is found by id after migration 6, which
// keys it by its time.
func TestMigrateKeysRecordsByTime(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "v5.db")
	ms, err := loadMigrations()
	require.NoError(t, err)
	eng, err := acquireEngine(ctx, path, engineConfig{synchronous: "FULL", busyTimeout: time.Second, readConns: 1, maxBatch: 8})
	require.NoError(t, err)
	rec := expiredRecord(time.Now())
	require.NoError(t, eng.do(ctx, func(tx *wtx) error {
		if err := tx.execScript(`CREATE TABLE asyncreq_schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT '')`); err != nil {
			return err
		}
		for _, m := range ms {
			if m.version > 5 {
				break
			}
			if err := tx.execScript(strings.ReplaceAll(m.sql, "{{prefix}}", "asyncreq_")); err != nil {
				return err
			}
			if _, err := tx.exec(`INSERT INTO asyncreq_schema_version (version) VALUES (?1)`, m.version); err != nil {
				return err
			}
		}
		enc, err := encodeRecord(rec)
		if err != nil {
			return err
		}
		_, err = tx.exec(`INSERT INTO asyncreq_records
			(queue, id, owner, idem_key, state, enqueued, created_at, expires_at, tombstone_ttl, data, body, result_body, id_key, updated_at)
			VALUES (?1, ?2, '', NULL, 'succeeded', 1, 0, ?3, 0, ?4, ?5, ?6, ?7, 0)`,
			defaultQueue, rec.ID, rec.ExpiresAt.UnixNano(), enc.data, enc.body, enc.resultBody, int64(fnvSum(rec.ID)))
		return err
	}, nil))
	require.NoError(t, releaseEngine(eng))
	require.NotEqual(t, int64(fnvSum(rec.ID)), idKey(rec.ID), "an id made by NewID is keyed by its time")

	b, err := Open(ctx, path, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	got, err := b.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, rec.Body, got.Body)
	_, err = b.Create(ctx, rec)
	require.ErrorIs(t, err, errIDExists, "its id stays taken")
}
