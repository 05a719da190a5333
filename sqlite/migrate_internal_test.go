package sqlite

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// databaseAt creates the database at path at schema version v, as this
// package's migrations up to v leave it, and runs fill in the same
// transaction, to store what a database of that version held.
func databaseAt(t *testing.T, path string, v int, fill func(*wtx) error) {
	t.Helper()
	ctx := t.Context()
	ms, err := loadMigrations()
	require.NoError(t, err)
	eng, err := acquireEngine(ctx, path, engineConfig{synchronous: "FULL", busyTimeout: time.Second, readConns: 1, maxBatch: 8})
	require.NoError(t, err)
	require.NoError(t, eng.do(ctx, func(tx *wtx) error {
		if err := tx.execScript(`CREATE TABLE asyncreq_schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT '')`); err != nil {
			return err
		}
		for _, m := range ms {
			if m.version > v {
				break
			}
			if err := tx.execScript(strings.ReplaceAll(m.sql, "{{prefix}}", "asyncreq_")); err != nil {
				return err
			}
			if _, err := tx.exec(`INSERT INTO asyncreq_schema_version (version) VALUES (?1)`, m.version); err != nil {
				return err
			}
		}
		return fill(tx)
	}, nil))
	require.NoError(t, releaseEngine(eng))
}
