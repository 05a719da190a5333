package sqlite

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// oeAbort is SQLite's code for the ABORT resolution of a broken constraint,
// as the P2 of the Halt and HaltIfNull opcodes that check constraints gives
// it (OE_Abort in sqliteInt.h).
const oeAbort = 2

// TestWritePrograms checks two things in the program SQLite compiles for
// each INSERT, UPDATE and DELETE of the queries, as EXPLAIN lists its
// opcodes:
//
//   - No constraint check of an INSERT or UPDATE resolves with ABORT. A
//     statement that may abort and may change more than one row makes
//     SQLite copy every page it writes into a statement journal, to undo
//     the statement alone (see queries); the claim and every update of a
//     record did. A constraint check is a Halt or HaltIfNull with an error
//     code in P1 and its resolution in P2.
//   - No write of one row builds a temporary table (OpenEphemeral) but the
//     one of its RETURNING. The WHERE of a partial index that named the
//     three final states did, twice in each update of a record and once in
//     its insert and its delete (see 0005_finished_not_in.sql).
func TestWritePrograms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "explain.db")
	b, err := Open(t.Context(), path, nil)
	require.NoError(t, err)
	require.NoError(t, b.Close()) // the schema is what is needed
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()

	writes := append(statements(newQueries(defaultTablePrefix)), statement{"addCountSQL", addCountSQL(defaultTablePrefix)})
	checked := 0
	for _, w := range writes {
		name, q := w.name, w.sql
		verb := strings.Fields(q)[0]
		if verb != "INSERT" && verb != "UPDATE" && verb != "DELETE" {
			continue
		}
		checked++
		// A DELETE checks no constraint. An upsert's DO UPDATE takes no
		// resolution of its own and aborts; it changes one row, which
		// SQLite does not journal.
		constraints := verb != "DELETE" && !strings.Contains(q, "ON CONFLICT")
		args := make([]any, maxParam(q)) // EXPLAIN runs nothing, but its statement takes them
		rows, err := db.QueryContext(t.Context(), "EXPLAIN "+q, args...)
		require.NoError(t, err, name)
		checks := 0
		// RETURNING keeps the rows it returns in a temporary table. A
		// statement with a subquery (a claim, a purge) changes many rows,
		// chosen first and kept in temporary tables: it is not counted.
		ephemeral, allowed := 0, strings.Count(q, "RETURNING")
		if strings.Contains(q, "SELECT") {
			ephemeral, allowed = -1, 0
		}
		for rows.Next() {
			var addr, p1, p2, p3, p5 int64
			var opcode string
			var p4, comment sql.NullString
			require.NoError(t, rows.Scan(&addr, &opcode, &p1, &p2, &p3, &p4, &p5, &comment))
			if opcode == "OpenEphemeral" && ephemeral >= 0 {
				ephemeral++
			}
			if constraints && (opcode == "Halt" || opcode == "HaltIfNull") && p1 != 0 {
				checks++
				require.NotEqual(t, int64(oeAbort), p2,
					"%s checks a constraint with ABORT at opcode %d (%s): it may copy its pages to a statement journal\n%s", name, addr, opcode, q)
			}
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
		require.LessOrEqual(t, ephemeral, allowed, "%s builds %d temporary tables\n%s", name, ephemeral, q)
		if constraints {
			require.Positive(t, checks, "%s checks no constraint: the test sees nothing of it", name)
		}
	}
	require.GreaterOrEqual(t, checked, 14, "writes checked")
}
