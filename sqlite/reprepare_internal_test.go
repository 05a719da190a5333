package sqlite

import (
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// handles is where SQLite's API writes the handles it makes for
// TestStatementsNotPreparedAgain: a package variable, which stays where it
// is, where a variable on a goroutine's stack may move during the call.
var handles struct{ db, stmt uintptr }

// TestStatementsNotPreparedAgain runs every statement of the queries three
// times, with new parameters, on a connection of SQLite's own API, and checks that
// SQLite did not prepare it again for the second run. SQLite recompiles a
// statement whose plan may depend on a parameter it was given, at every
// run with a new value: a bare ?3 as a LIMIT did that (the claim of queue
// entries then spent most of its time parsing and planning itself again).
func TestStatementsNotPreparedAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stmts.db")
	b, err := Open(t.Context(), path, nil)
	require.NoError(t, err)
	require.NoError(t, b.Close()) // the schema is what is needed

	tls := libc.NewTLS()
	defer tls.Close()
	cpath, err := libc.CString(path)
	require.NoError(t, err)
	defer libc.Xfree(tls, cpath)
	require.Zero(t, lib.Xsqlite3_open_v2(tls, cpath, uintptr(unsafe.Pointer(&handles.db)), lib.SQLITE_OPEN_READWRITE, 0))
	db := handles.db
	defer lib.Xsqlite3_close(tls, db)

	n := 0
	for _, s := range statements(newQueries(defaultTablePrefix)) {
		n++
		q, name := s.sql, s.name
		csql, err := libc.CString(q)
		require.NoError(t, err)
		rc := lib.Xsqlite3_prepare_v2(tls, db, csql, -1, uintptr(unsafe.Pointer(&handles.stmt)), 0)
		st := handles.stmt
		libc.Xfree(tls, csql)
		require.Zero(t, rc, "prepare %s", name)
		for run := range 3 {
			for p := int32(1); p <= lib.Xsqlite3_bind_parameter_count(tls, st); p++ {
				lib.Xsqlite3_bind_int64(tls, st, p, int64(10+run))
			}
			for lib.Xsqlite3_step(tls, st) == lib.SQLITE_ROW {
			}
			lib.Xsqlite3_reset(tls, st)
		}
		again := lib.Xsqlite3_stmt_status(tls, st, lib.SQLITE_STMTSTATUS_REPREPARE, 0)
		lib.Xsqlite3_finalize(tls, st)
		require.Zero(t, again, "%s was prepared again at %d of its 3 runs:\n%s", name, again, q)
	}
	require.Greater(t, n, 30, "statements run")
}
